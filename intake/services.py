"""One controlled path in: every door (web, C-STORE, STOW-RS) files each file through ``instance_receive``.

Each file is handled in its own transaction: it is either stored whole (raw
bytes in quarantine, rows, audit event, on-commit signal) or refused with a
reason and nothing left behind.
"""

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePath

from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max
from django.db.models.expressions import RawSQL
from django.utils import timezone

from audit.services import audit_record, audit_record_many
from trials.exceptions import SubmissionBlocked
from trials.keys import patient_id_hash, trial_key
from trials.models import Site, SiteQualification, Subject, Visit
from trials.permissions import Perm, ensure, has_perm
from trials.services import qualification_check_scan, qualification_submit, submission_gate

from . import signals
from .dicomfile import Header, UnreadableFile, inspect
from .exceptions import InvalidTransition, SubmissionRefused
from .models import GatewayPeer, ImagingStudy, Instance, Series, Submission

log = logging.getLogger(__name__)

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"


@dataclass(frozen=True)
class FileOutcome:
    file: str
    outcome: str
    reason: str = ""
    instance_id: int | None = None
    study_id: int | None = None


def uid_hash(*, trial, uid: str) -> str:
    """Keyed hash of an original DICOM UID: recognises the same object without keeping the UID."""
    return hashlib.sha256(trial_key(trial=trial, purpose="uid-hash") + uid.encode()).hexdigest()


# -- submissions --------------------------------------------------------------------------------------------

@transaction.atomic
def submission_open(*, actor, site: Site, channel: str, subject: Subject | None = None, visit: Visit | None = None,
                    procedure: str = "", qualification: SiteQualification | None = None,
                    declared_rescan: bool = False, calling_ae: str = "", remote_address: str | None = None
                    ) -> Submission:
    """Start a batch. The web portal declares subject, visit and procedure (or a qualification scan) and the
    upload gate applies; the gateway and STOW-RS leave them empty and each file is matched."""
    if actor is not None:
        ensure(user=actor, perm=Perm.SUBMIT_IMAGES, trial_id=site.trial_id, site_id=site.pk)
    if qualification is not None:
        if qualification.site_id != site.pk:
            raise SubmissionRefused("the qualification belongs to another site")
        if qualification.status not in (SiteQualification.Status.PENDING, SiteQualification.Status.SUBMITTED):
            raise SubmissionRefused(f"the qualification is {qualification.get_status_display().lower()}; "
                                    "request a new one to send another test scan")
    elif channel == Submission.Channel.WEB:
        if subject is None or visit is None or not procedure:
            raise SubmissionRefused("choose the subject, the visit and the procedure these scans belong to")
        if subject.site_id != site.pk:
            raise SubmissionRefused(f"subject {subject.code} is enrolled at another site")
        if visit.subject_id != subject.pk:
            raise SubmissionRefused(f"visit {visit.timepoint} belongs to another subject")
        if procedure not in visit.procedures:
            raise SubmissionRefused(f"{visit.label} does not call for {procedure}")
        submission_gate(user=actor, site=site, procedure=procedure)
    submission = Submission.objects.create(
        trial_id=site.trial_id, site=site, submitted_by=actor, channel=channel, subject=subject, visit=visit,
        procedure=procedure, qualification=qualification, declared_rescan=declared_rescan, calling_ae=calling_ae,
        remote_address=remote_address)
    audit_record(actor=actor, action="intake.submission_opened", target=submission, trial_id=site.trial_id,
                 site_id=site.pk, subject_id=subject.pk if subject else None,
                 subject_code=subject.code if subject else "",
                 details={"channel": channel, "calling_ae": calling_ae, "procedure": procedure,
                          "visit": visit.timepoint if visit else None, "declared_rescan": declared_rescan,
                          "qualification": qualification.pk if qualification else None})
    return submission


@transaction.atomic
def submission_close(*, submission: Submission) -> Submission:
    """Finish a batch: counts and per-file results are final; a phantom batch submits its qualification."""
    submission = Submission.objects.select_for_update().get(pk=submission.pk)
    if submission.finished_at is None:
        submission.finished_at = timezone.now()
        submission.save(update_fields=["finished_at"])
        audit_record(actor=submission.submitted_by, action="intake.submission_closed", target=submission,
                     trial_id=submission.trial_id, site_id=submission.site_id,
                     subject_id=submission.subject_id,
                     details={"accepted": submission.accepted, "duplicates": submission.duplicates,
                              "rejected": submission.rejected})
        qualification = submission.qualification
        if qualification is not None and submission.accepted and \
                qualification.status == SiteQualification.Status.PENDING:
            study = submission.instances.values_list("study_id", flat=True).first()
            qualification_submit(actor=submission.submitted_by, qualification=qualification,
                                 study_reference=f"Corelab study {study}")
    return submission


def file_refuse(*, submission: Submission, name: str, reason: str) -> FileOutcome:
    """Record a file refused before it could be filed (over the size limit, a bad archive member, ...)."""
    outcome = FileOutcome(name, REJECTED, reason)
    _record(submission, [outcome])
    return outcome


def _record(submission: Submission, outcomes: list[FileOutcome]) -> None:
    """Count the outcomes and append them to the submission's results, in SQL: no read-rewrite per file.

    Only a file's base name is kept: folder names written by a site's computer can carry a patient's name.
    """
    if not outcomes:
        return
    counters = {"accepted": 0, "duplicates": 0, "rejected": 0}
    for outcome in outcomes:
        counters[{ACCEPTED: "accepted", DUPLICATE: "duplicates", REJECTED: "rejected"}[outcome.outcome]] += 1
    entries = [{"file": PurePath(outcome.file.replace("\\", "/")).name[:255], "outcome": outcome.outcome,
                "reason": outcome.reason} for outcome in outcomes]
    Submission.objects.filter(pk=submission.pk).update(
        **{counter: F(counter) + count for counter, count in counters.items() if count},
        results=RawSQL("results || %s::jsonb", [json.dumps(entries)]))
    for counter, count in counters.items():
        setattr(submission, counter, getattr(submission, counter) + count)


# -- files --------------------------------------------------------------------------------------------------

def _sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def instance_receive(*, submission: Submission, path: Path, name: str) -> FileOutcome:
    """File one received file: refuse it with a reason, acknowledge a duplicate, or store it.

    ``path`` is a local file the caller owns and removes afterwards. Safe to call concurrently for files
    of the same study (study and instance rows are protected by unique constraints and row locks).
    """
    return instances_receive(submission=submission, files=[(path, name)])[0]


@dataclass
class _Incoming:
    path: Path
    name: str
    header: Header
    sha256: str
    size: int


def instances_receive(*, submission: Submission, files: list[tuple[Path, str]]) -> list[FileOutcome]:
    """File several files of one submission, in order; one outcome per file, as ``instance_receive`` gives.

    The files of one study are filed in one transaction, the study matched, locked and looked up once,
    their rows and audit events written in one statement each: the C-STORE gateway files its spool this
    way, a series at a time. A study whose transaction fails is retried (a concurrent association may
    have created the same study or instance a moment ago) and, failing again, raises; the studies filed
    before it stay filed, and the caller files the rest again.
    """
    outcomes: dict[int, FileOutcome] = {}
    studies: dict[str, list[tuple[int, _Incoming]]] = {}
    for index, (path, name) in enumerate(files):
        try:
            header = inspect(path)
        except UnreadableFile as exc:
            outcomes[index] = FileOutcome(name, REJECTED, str(exc))
            continue
        sha256, size = _sha256(path)
        studies.setdefault(header.study_uid, []).append((index, _Incoming(path, name, header, sha256, size)))
    if outcomes:
        _record(submission, [outcomes[index] for index in sorted(outcomes)])
    for items in studies.values():
        for attempt in range(3):
            filing = _Filing(submission)
            try:
                with transaction.atomic():
                    filed = filing.file_study(items)
                    _record(submission, list(filed.values()))
                break
            except Exception as exc:
                for key in filing.stored_keys:  # nothing half-stored: no object without its rows
                    storages["quarantine"].delete(key)
                if not isinstance(exc, IntegrityError) or attempt == 2:
                    raise
        outcomes.update(filed)
    return [outcomes[index] for index in range(len(files))]


class _Filing:
    """One transaction's filing of one study's files, with what it has looked up kept for the next file."""

    def __init__(self, submission: Submission):
        self.submission = submission
        self.trial = submission.trial
        self.stored_keys: list[str] = []  # removed again by the caller if the transaction does not commit
        self.matches: dict[tuple, object] = {}
        self.series: dict[tuple[int, str], Series] = {}
        self.held: dict[int, dict[str, tuple[int, str]]] = {}  # study pk -> sop hash -> (instance pk, sha256)
        self.new: list[tuple[Instance, _Incoming]] = []
        self.study: ImagingStudy | None = None  # the version files of the study being filed go into

    def file_study(self, items: list[tuple[int, _Incoming]]) -> dict[int, FileOutcome]:
        study_hash = uid_hash(trial=self.trial, uid=items[0][1].header.study_uid)
        # files of one study arriving over concurrent associations are filed one batch at a time, so the
        # study is created once; other studies are not held up (the lock is per study, until commit)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(study_hash[:15], 16)])
        self.study = (ImagingStudy.objects.select_for_update(of=("self",)).select_related("subject", "visit")
                 .filter(trial=self.trial, study_uid_hash=study_hash)
                 .exclude(status=ImagingStudy.Status.SUPERSEDED).order_by("-version").first())
        filed = [(index, incoming, self._file(incoming, study_hash=study_hash))
                 for index, incoming in items]
        self._create_instances()
        return {index: FileOutcome(incoming.name, ACCEPTED, "", result.pk, result.study_id)
                if isinstance(result, Instance) else result for index, incoming, result in filed}

    def _file(self, incoming: _Incoming, *, study_hash: str) -> "FileOutcome | Instance":
        submission, header, name = self.submission, incoming.header, incoming.name
        patient_hash = self._patient_hash(header.patient_id)
        key = (patient_hash, header.acquisition_date, header.modality, header.body_part)
        if key not in self.matches:
            self.matches[key] = _match(submission=submission, header=header, patient_hash=patient_hash)
        match = self.matches[key]
        if isinstance(match, str):
            return FileOutcome(name, REJECTED, match)
        subject, visit, procedure, unassigned_reason = match
        study = self.study
        sop_hash = uid_hash(trial=self.trial, uid=header.sop_instance_uid)
        if study is not None:
            if study.site_id != submission.site_id:
                return FileOutcome(name, REJECTED, "this study was already received from another site")
            if study.patient_id_hash != patient_hash:
                return FileOutcome(name, REJECTED, "the study spans two Patient IDs: one study must be one patient")
            existing = self._held(study).get(sop_hash)
            if existing is not None:
                if existing[1] == incoming.sha256:
                    return FileOutcome(name, DUPLICATE, "already received (same instance, same bytes)",
                                       existing[0], study.pk)
                if not submission.declared_rescan:
                    return FileOutcome(name, REJECTED, "an instance with this SOP Instance UID was already "
                                                       "received with different content; declare a rescan to "
                                                       "send a new version")
                study = None  # a declared rescan: the new bytes go into a new version
        if study is None:
            # gated per study, not per file: a study that has begun arriving is never cut in half
            refusal = _gate(submission=submission, procedure=procedure)
            if refusal:
                return FileOutcome(name, REJECTED, refusal)
            self._create_instances()  # the earlier version's files first: they are looked up by study
            study = _study_create(submission=submission, header=header, study_hash=study_hash,
                                  patient_hash=patient_hash, subject=subject, visit=visit, procedure=procedure,
                                  unassigned_reason=unassigned_reason)
            self.study = study
        series_hash = uid_hash(trial=self.trial, uid=header.series_uid)
        series = self.series.get((study.pk, series_hash))
        if series is None:
            series, _ = Series.objects.get_or_create(
                study=study, series_uid_hash=series_hash,
                defaults={"modality": header.modality, "series_number": header.series_number})
            self.series[(study.pk, series_hash)] = series
        stored = _store_raw(incoming.path, f"{self.trial.pk}/{submission.site_id}/{study.pk}/{series.pk}/{sop_hash}.dcm")
        self.stored_keys.append(stored)
        instance = Instance(
            study=study, series=series, submission=submission, sop_class_uid=header.sop_class_uid,
            sop_uid_hash=sop_hash, transfer_syntax_uid=header.transfer_syntax_uid, raw_key=stored,
            raw_sha256=incoming.sha256, raw_size=incoming.size)
        self.new.append((instance, incoming))
        self._held(study)[sop_hash] = (None, incoming.sha256)
        return instance

    def _patient_hash(self, patient_id: str) -> str:
        if not patient_id:
            return ""
        key = ("patient", patient_id)
        if key not in self.matches:
            self.matches[key] = patient_id_hash(trial=self.trial, patient_id=patient_id)
        return self.matches[key]

    def _held(self, study: ImagingStudy) -> dict[str, tuple[int, str]]:
        if study.pk not in self.held:
            self.held[study.pk] = {sop: (pk, sha) for pk, sop, sha in
                                   study.instances.values_list("pk", "sop_uid_hash", "raw_sha256")}
        return self.held[study.pk]

    def _create_instances(self) -> None:
        """Write the instances filed so far, one audit event each, and their signals for after commit."""
        if not self.new:
            return
        submission = self.submission
        created = Instance.objects.bulk_create([instance for instance, _ in self.new])
        by_study: dict[int, list[tuple[Instance, _Incoming]]] = {}
        for instance, incoming in zip(created, (incoming for _, incoming in self.new), strict=True):
            by_study.setdefault(instance.study_id, []).append((instance, incoming))
            self.held[instance.study_id][instance.sop_uid_hash] = (instance.pk, incoming.sha256)
        self.new = []
        for pairs in by_study.values():
            study = pairs[0][0].study
            audit_record_many(
                actor=submission.submitted_by, action="intake.instance_received", trial_id=self.trial.pk,
                site_id=submission.site_id, subject_id=study.subject_id,
                subject_code=study.subject.code if study.subject_id else "",
                entries=[(instance, {"channel": submission.channel, "submission": submission.pk, "study": study.pk,
                                     "sha256": incoming.sha256, "size": incoming.size,
                                     "sop_class": incoming.header.sop_class_uid,
                                     "transfer_syntax": incoming.header.transfer_syntax_uid})
                         for instance, incoming in pairs])
        sent = [(instance.pk, instance.series_id, instance.study_id) for instance in created]
        transaction.on_commit(lambda: [signals.instance_received.send(sender=Instance, instance_id=pk,
                                                                      series_id=series_id, study_id=study_id)
                                       for pk, series_id, study_id in sent])


def _store_raw(path: Path, key: str) -> str:
    """Put the received file in quarantine under ``key`` (or a free variant of it); returns the name used.

    On the local filesystem the object is a hard link to the received file, not a copy: the caller still
    owns and removes its own name, and nothing is written twice. Elsewhere (S3) it is uploaded.
    """
    storage = storages["quarantine"]
    if isinstance(storage, FileSystemStorage):
        name = storage.get_available_name(key)
        target = Path(storage.path(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
            return name
        except OSError:
            pass  # another filesystem, or links not allowed there: copy it
    with path.open("rb") as stream:
        return storage.save(key, File(stream, name=key))


def _gate(*, submission: Submission, procedure: str) -> str:
    """The upload gate for matched files that did not pass it when the batch opened; '' when open.

    The web portal is gated at submission_open; qualification scans are exempt. The gateway has no user,
    so only the site's qualification is checked; STOW-RS checks the sending user's training too.
    """
    if not procedure or submission.qualification_id or submission.channel == Submission.Channel.WEB:
        return ""
    try:
        if submission.submitted_by is not None:
            submission_gate(user=submission.submitted_by, site=submission.site, procedure=procedure)
        elif not SiteQualification.objects.filter(site=submission.site, procedure=procedure,
                                                  status=SiteQualification.Status.APPROVED).exists():
            return f"site {submission.site.number} is not qualified for {procedure}"
    except SubmissionBlocked as exc:
        return str(exc)
    return ""


def _match(*, submission: Submission, header: Header, patient_hash: str):
    """(subject, visit, procedure, unassigned reason) for the file, or a rejection reason."""
    trial = submission.trial
    matched = Subject.objects.filter(trial=trial, patient_id_hash=patient_hash).select_related("site").first() \
        if patient_hash else None
    if matched is not None and matched.site_id != submission.site_id:
        return f"the Patient ID belongs to a subject of another site ({matched.code} is not enrolled at this site)"
    if submission.qualification_id:
        return None, None, submission.qualification.procedure, ""
    if submission.subject_id:
        if matched is not None and matched.pk != submission.subject_id:
            return (f"the Patient ID is that of subject {matched.code}, not {submission.subject.code}: "
                    "check the patient before uploading")
        return submission.subject, submission.visit, submission.procedure, ""
    if matched is None:
        return None, None, "", "no enrolled subject matches the Patient ID"
    date = header.acquisition_date
    if date is None:
        return matched, None, "", "the file has no acquisition, series or study date"
    visits = [v for v in matched.visits.all() if v.window_start <= date <= v.window_end]
    if len(visits) != 1:
        why = "falls in no visit window" if not visits else "falls in more than one visit window"
        return matched, None, "", f"acquisition date {date:%Y-%m-%d} {why}"
    visit = visits[0]
    charter = visit.protocol_version.parsed_charter
    candidates = [code for code in visit.procedures
                  if header.modality in charter.procedure(code).modalities
                  and (not charter.procedure(code).body_parts or not header.body_part
                       or header.body_part in charter.procedure(code).body_parts)]
    if len(candidates) != 1:
        return matched, visit, "", (f"modality {header.modality or '?'} / body part {header.body_part or '?'} "
                                    f"matches {len(candidates)} procedures of {visit.label}")
    return matched, visit, candidates[0], ""


def _study_create(*, submission, header, study_hash, patient_hash, subject, visit, procedure,
                  unassigned_reason) -> ImagingStudy:
    trial = submission.trial
    status = ImagingStudy.Status.UNASSIGNED if unassigned_reason else ImagingStudy.Status.RECEIVED
    version, previous = 1, None
    if subject is not None and visit is not None and procedure:
        previous = (ImagingStudy.objects.filter(subject=subject, visit=visit, procedure=procedure)
                    .order_by("-version").first())
        version = previous.version + 1 if previous else 1
    same_uid = ImagingStudy.objects.filter(trial=trial, study_uid_hash=study_hash).aggregate(v=Max("version"))["v"]
    if same_uid and not previous:
        version = same_uid + 1
    study = ImagingStudy.objects.create(
        trial=trial, site=submission.site, subject=subject, visit=visit, procedure=procedure,
        qualification=submission.qualification, version=version, supersedes=previous, status=status,
        study_uid_hash=study_hash, patient_id_hash=patient_hash, acquisition_date=header.acquisition_date,
        modality=header.modality, unassigned_reason=unassigned_reason)
    audit_record(actor=submission.submitted_by, action="intake.study_created", target=study, trial_id=trial.pk,
                 site_id=submission.site_id, subject_id=subject.pk if subject else None,
                 subject_code=subject.code if subject else "",
                 details={"version": version, "supersedes": previous.pk if previous else None,
                          "visit": visit.timepoint if visit else None, "procedure": procedure,
                          "status": status, "unassigned_reason": unassigned_reason,
                          "acquisition_date": header.acquisition_date.isoformat() if header.acquisition_date
                          else None})
    if procedure and submission.qualification_id is None:
        qualification_check_scan(site=submission.site, procedure=procedure, identity=header.scanner_identity())
    return study


# -- the status machine -------------------------------------------------------------------------------------

S = ImagingStudy.Status
STUDY_TRANSITIONS: dict[str, set[str]] = {
    S.UNASSIGNED: {S.RECEIVED, S.REJECTED},
    S.RECEIVED: {S.DEIDENTIFYING, S.REJECTED},
    # more instances arriving re-opens de-identification (and later QC)
    S.DEIDENTIFYING: {S.DEIDENTIFIED, S.REJECTED},
    S.DEIDENTIFIED: {S.QC_PENDING, S.DEIDENTIFYING},
    S.QC_PENDING: {S.ACCEPTED, S.REJECTED, S.DEIDENTIFYING},
    S.ACCEPTED: {S.SUPERSEDED},
    S.REJECTED: {S.SUPERSEDED},
    S.SUPERSEDED: set(),
}
IS = Instance.Status
INSTANCE_TRANSITIONS: dict[str, set[str]] = {
    IS.RECEIVED: {IS.DEIDENTIFYING},
    IS.DEIDENTIFYING: {IS.DEIDENTIFIED, IS.FAILED},
    IS.FAILED: {IS.DEIDENTIFYING},
    IS.DEIDENTIFIED: set(),
}


@transaction.atomic
def study_transition(*, actor, study: ImagingStudy, to: str, reason: str = "", details: dict | None = None
                     ) -> ImagingStudy:
    """Move a study to its next status; an illegal move raises InvalidTransition. Audited."""
    study = ImagingStudy.objects.select_for_update().get(pk=study.pk)
    if to not in STUDY_TRANSITIONS[study.status]:
        raise InvalidTransition(f"study {study.pk} is {study.get_status_display().lower()}; it cannot become "
                                f"{ImagingStudy.Status(to).label.lower()}")
    before = study.status
    study.status, study.status_changed_at = to, timezone.now()
    study._change_reason = reason
    study.save(update_fields=["status", "status_changed_at"])
    audit_record(actor=actor, action="intake.study_status_changed", target=study, trial_id=study.trial_id,
                 site_id=study.site_id, subject_id=study.subject_id, reason=reason,
                 details={"from": before, "to": to, **(details or {})})
    transaction.on_commit(lambda: signals.study_status_changed.send(
        sender=ImagingStudy, study_id=study.pk, before=before, after=to))
    return study


@transaction.atomic
def instance_transition(*, actor, instance: Instance, to: str, details: dict | None = None) -> Instance:
    """Move an instance to its next status; an illegal move raises InvalidTransition. Audited."""
    instance = Instance.objects.select_for_update().select_related("study").get(pk=instance.pk)
    if to not in INSTANCE_TRANSITIONS[instance.status]:
        raise InvalidTransition(f"instance {instance.pk} is {instance.get_status_display().lower()}; it cannot "
                                f"become {Instance.Status(to).label.lower()}")
    before = instance.status
    instance.status, instance.status_changed_at = to, timezone.now()
    instance.save(update_fields=["status", "status_changed_at"])
    audit_record(actor=actor, action="intake.instance_status_changed", target=instance,
                 trial_id=instance.study.trial_id, site_id=instance.study.site_id,
                 subject_id=instance.study.subject_id, details={"from": before, "to": to, **(details or {})})
    return instance


# -- the unassigned inbox -----------------------------------------------------------------------------------

@transaction.atomic
def study_assign(*, actor, study: ImagingStudy, subject: Subject, visit: Visit, procedure: str) -> ImagingStudy:
    """The site's coordinator attaches an unassigned study to its subject, visit and procedure."""
    study = ImagingStudy.objects.select_for_update().get(pk=study.pk)
    _ensure_inbox_actor(actor=actor, study=study)
    if study.status != ImagingStudy.Status.UNASSIGNED:
        raise InvalidTransition(f"study {study.pk} is not in the unassigned inbox")
    if subject.site_id != study.site_id or visit.subject_id != subject.pk:
        raise SubmissionRefused("choose a subject of this site and one of that subject's visits")
    if procedure not in visit.procedures:
        raise SubmissionRefused(f"{visit.label} does not call for {procedure}")
    if study.patient_id_hash and subject.patient_id_hash != study.patient_id_hash:
        raise SubmissionRefused(f"the study's Patient ID is not {subject.code}'s")
    previous = (ImagingStudy.objects.filter(subject=subject, visit=visit, procedure=procedure)
                .order_by("-version").first())
    study.subject, study.visit, study.procedure = subject, visit, procedure
    study.version = previous.version + 1 if previous else 1
    study.supersedes = previous
    study.unassigned_reason = ""
    study.save(update_fields=["subject", "visit", "procedure", "version", "supersedes", "unassigned_reason"])
    audit_record(actor=actor, action="intake.study_assigned", target=study, trial_id=study.trial_id,
                 site_id=study.site_id, subject_id=subject.pk, subject_code=subject.code,
                 details={"visit": visit.timepoint, "procedure": procedure, "version": study.version})
    study_transition(actor=actor, study=study, to=ImagingStudy.Status.RECEIVED, reason="assigned from the inbox")
    for instance_id, series_id in study.instances.values_list("pk", "series_id"):
        transaction.on_commit(lambda pk=instance_id, series=series_id: signals.instance_received.send(
            sender=Instance, instance_id=pk, series_id=series, study_id=study.pk))
    return study


@transaction.atomic
def study_reject_unassigned(*, actor, study: ImagingStudy, reason: str) -> ImagingStudy:
    """The coordinator refuses an unassigned study (wrong patient, not a trial scan); kept on record."""
    _ensure_inbox_actor(actor=actor, study=study)
    if not reason.strip():
        raise SubmissionRefused("say why the study is rejected")
    if study.status != ImagingStudy.Status.UNASSIGNED:
        raise InvalidTransition(f"study {study.pk} is not in the unassigned inbox")
    return study_transition(actor=actor, study=study, to=ImagingStudy.Status.REJECTED, reason=reason.strip())


def _ensure_inbox_actor(*, actor, study: ImagingStudy) -> None:
    """The site's coordinators, or the trial's managers, work a site's inbox."""
    if has_perm(user=actor, perm=Perm.SUBMIT_IMAGES, trial_id=study.trial_id, site_id=study.site_id):
        return
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=study.trial_id)


# -- DICOM senders ------------------------------------------------------------------------------------------
# (this section's own imports sit here, so edits to the top of the file and to this section do not collide)

import ipaddress  # noqa: E402

from audit.services import history_save  # noqa: E402


@transaction.atomic
def gateway_peer_register(*, actor, site: Site, ae_title: str, source_address: str | None = None) -> GatewayPeer:
    """Allow a site's PACS or modality to push to the gateway under its calling AE title (trial managers)."""
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=site.trial_id)
    ae_title = _peer_ae_title(ae_title)
    source_address = _peer_address(source_address)
    peer = GatewayPeer(site=site, ae_title=ae_title, source_address=source_address)
    _peer_save(peer)
    audit_record(actor=actor, action="intake.gateway_peer_registered", target=peer, trial_id=site.trial_id,
                 site_id=site.pk, details={"ae_title": ae_title, "source_address": source_address})
    return peer


_KEEP = object()  # "leave the source address as it is" (None clears it)


@transaction.atomic
def gateway_peer_update(*, actor, peer: GatewayPeer, reason: str, ae_title: str | None = None,
                        source_address=_KEEP) -> GatewayPeer:
    """Correct a sender's calling AE title and/or source address (trial managers), with a reason.

    ``source_address=None`` (or "") removes the address restriction; leaving it out keeps it. The change
    applies to the next association: the gateway looks the peer up when one is requested.
    """
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=peer.site.trial_id)
    reason = _peer_reason(reason)
    peer = GatewayPeer.objects.select_for_update().select_related("site").get(pk=peer.pk)
    wanted = {}
    if ae_title is not None:
        wanted["ae_title"] = _peer_ae_title(ae_title)
    if source_address is not _KEEP:
        wanted["source_address"] = _peer_address(source_address)
    changes = {field: value for field, value in wanted.items() if getattr(peer, field) != value}
    if not changes:
        raise SubmissionRefused("nothing to change: give a new AE title or source address")
    before = {field: getattr(peer, field) for field in changes}
    for field, value in changes.items():
        setattr(peer, field, value)
    _peer_save(peer, reason=reason, update_fields=list(changes))
    audit_record(actor=actor, action="intake.gateway_peer_updated", target=peer, trial_id=peer.site.trial_id,
                 site_id=peer.site_id, reason=reason, details={"before": before, "after": changes})
    return peer


@transaction.atomic
def gateway_peer_set_active(*, actor, peer: GatewayPeer, active: bool, reason: str) -> GatewayPeer:
    """Deactivate a sender (the gateway refuses its next association) or reactivate it (trial managers).

    Kept, never deleted: submissions name the calling AE title they came from.
    """
    ensure(user=actor, perm=Perm.MANAGE_TRIAL, trial_id=peer.site.trial_id)
    reason = _peer_reason(reason)
    peer = GatewayPeer.objects.select_for_update().select_related("site").get(pk=peer.pk)
    if peer.active == active:
        raise InvalidTransition(f"{peer.ae_title} is already {'active' if active else 'inactive'}")
    peer.active = active
    _peer_save(peer, reason=reason, update_fields=["active"])
    audit_record(actor=actor, action="intake.gateway_peer_activated" if active else "intake.gateway_peer_deactivated",
                 target=peer, trial_id=peer.site.trial_id, site_id=peer.site_id, reason=reason,
                 details={"ae_title": peer.ae_title, "source_address": peer.source_address})
    return peer


def _peer_ae_title(value: str) -> str:
    """A calling AE title as DICOM allows it (PS3.5 AE: 16 characters of the default repertoire, no
    backslash or control characters); surrounding spaces are not significant, so they go."""
    value = (value or "").strip()
    if not value or len(value) > 16 or "\\" in value or not all(" " <= ch <= "~" for ch in value):
        raise SubmissionRefused("an AE title has 1 to 16 characters (letters, digits, spaces or punctuation) "
                                "and no backslash")
    return value


def _peer_address(value) -> str | None:
    """An IPv4 or IPv6 address written as the gateway compares it (IPv4-mapped IPv6 as IPv4), or None."""
    value = (str(value) if value is not None else "").strip()
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise SubmissionRefused(f"{value} is not an IPv4 or IPv6 address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def _peer_reason(reason: str) -> str:
    if not (reason or "").strip():
        raise SubmissionRefused("say why the sender changes (kept in its history)")
    return reason.strip()


def _peer_save(peer: GatewayPeer, *, reason: str = "", update_fields: list[str] | None = None) -> None:
    """Save with the reason on the history record; a taken AE title is refused, also when two managers race."""
    holder = GatewayPeer.objects.filter(ae_title=peer.ae_title).exclude(pk=peer.pk).first()
    if holder is not None:
        # titles stay taken by inactive senders too: the gateway's records name senders by AE title
        raise SubmissionRefused(f"AE title {peer.ae_title} is already registered"
                                + ("" if holder.active else " (inactive: reactivate or rename that sender)"))
    try:
        with transaction.atomic():  # a savepoint: the unique index has the last word
            if reason:
                history_save(instance=peer, reason=reason, update_fields=update_fields)
            else:
                peer.save()
    except IntegrityError:
        raise SubmissionRefused(f"AE title {peer.ae_title} is already registered") from None
