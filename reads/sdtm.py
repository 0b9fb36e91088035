"""CDISC SDTM TU, TR and RS datasets of a trial's central review, as CSV and SAS XPORT v5 files.

Standards followed: SDTMIG v3.4 (domains TU Tumor/Lesion Identification, TR Tumor/Lesion Results, RS Disease
Response and Clin Classification), the CDISC RECIST 1.1 Disease Response Supplement, and CDISC Controlled
Terminology codelists TUTESTCD/TUTEST (C96784/C96783), TRTESTCD/TRTEST (C96779/C96778), RSTESTCD/RSTEST
(C96782/C96781), EVAL (C78735, "INDEPENDENT ASSESSOR"), MEDEVAL (C96777, "RADIOLOGIST 1/2", "ADJUDICATOR"),
METHOD (C85492, "CT SCAN", "MRI", "X-RAY", "ULTRASOUND") and NY (C66742) for --ACPTFL.

What the files hold, per subject (USUBJID = STUDYID + "-" + subject code; STUDYID is the protocol number):

- One evaluator per primary reader slot: slot A is TUEVALID "RADIOLOGIST 1", slot B "RADIOLOGIST 2", both
  TUEVAL "INDEPENDENT ASSESSOR"; each reader's current signed reads of live tasks (corrected and superseded
  versions are not exported). Lesion link ids carry the evaluator (``R1-T1``) so TU and TR link unambiguously.
- TU: TUTESTCD "TUMIDENT" at baseline, TUORRES "TARGET" or "NON-TARGET", TULOC the organ, TUMETHOD from the
  lesion's modality. New lesions are not identified one by one by our forms, so there are no "NEW" rows.
- TR: per timepoint, target diameters as TRTESTCD "LDIAM" (non-nodal, longest diameter) or "LPERP" (nodal,
  short axis, "Longest Perpendicular"), in mm; a split lesion as parts ``R1-T1.1``, ``R1-T1.2``; "too small
  to measure" standardised to 5 mm, a disappeared lesion 0 mm, an unevaluated one TRSTAT "NOT DONE"; non-target
  lesions assessed one by one as "TUMSTATE" (or "LNSTATE" for nodes); and "SUMDIAM" (Sum of Diameter), the
  engine's sum_mm (at baseline the sum of the target diameters). TRLNKGRP groups a timepoint's records and is
  repeated on RS's overall response.
- TRREFID links a diameter to its image evidence. A target the reader measured in the viewer has a DICOM SR
  measurement report (TID 1500, ``reads.sr``, stored in the archive with the study); TRREFID is that report's
  SOP Instance UID. SDTMIG defines --REFID as an internal or external identifier, an image identifier being its
  example; the SR is the better identifier than the image itself, because it holds the measurement (the line,
  in pixel coordinates, and the value in mm) *and* references the image and frame it was drawn on, and one
  UID resolves through any DICOM archive. The report's Tracking Identifier of each lesion is its TULNKID /
  TRLNKID (``R1-T1``), and its Tracking UID stays the same for one reader's lesion at every timepoint, so TU,
  TR and the SR agree. TRREFID is empty for a lesion measured without the viewer, for records that are not
  a measurement (TUMSTATE, SUMDIAM), and while the report is not stored yet (an export made later has it).
- RS (RSCAT "RECIST 1.1"): per follow-up, "TRGRESP", "NTRGRESP", "NEWLIND" (Y/N: a new lesion, equivocal or
  not, was reported), "NEWLPROG" ("EQUIVOCAL" / "UNEQUIVOCAL", only when there is one, as the supplement shows)
  and "OVRLRESP"; per subject, "BESTRSP" (no visit). The responses are the ones the engine computed when the
  read was signed. The BICR result: when an adjudicator selected a read, the selected read's RS records are
  repeated with RSEVALID "ADJUDICATOR"; RSACPTFL is "Y" on the accepted (BICR) records and "N" on the other
  evaluators' records of the same timepoint, blank where no BICR result exists yet.
- VISITNUM is the visit's position in the protocol version's visit schedule (1 = first), VISIT its label.
- Dates (--DTC) are the real acquisition dates (the earliest accepted study of the timepoint), as intake
  recorded them from the site's files: the sponsor holds the real dates, and only the readers' images and
  pages carry the de-identification shift. A timepoint without an acquisition date has an empty --DTC.
"""

import csv
import datetime
import hashlib
import io
import zipfile
from decimal import Decimal
from pathlib import Path

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Min

from audit.services import audit_record
from intake.models import ImagingStudy
from trials.models import Subject, Trial

from . import recist
from .metrics import oversight_allowed
from .models import BicrResult, MeasurementReport, ReadTask
from .selectors import bicr_results
from .services import baseline_visit, signed_history
from .xport import Variable, xport_bytes

IG_VERSION = "SDTMIG v3.4"
EVAL = "INDEPENDENT ASSESSOR"
EVALUATORS = {ReadTask.Slot.A: "RADIOLOGIST 1", ReadTask.Slot.B: "RADIOLOGIST 2"}
ADJUDICATOR = "ADJUDICATOR"
SHORT = {"RADIOLOGIST 1": "R1", "RADIOLOGIST 2": "R2", ADJUDICATOR: "ADJ"}
METHODS = {"CT": "CT SCAN", "MR": "MRI", "CR": "X-RAY", "DX": "X-RAY", "US": "ULTRASOUND"}
RESPONSE_TESTS = {"TRGRESP": "Target Response", "NTRGRESP": "Non-target Response",
                  "NEWLIND": "New Lesion Indicator", "NEWLPROG": "New Lesion Progression",
                  "OVRLRESP": "Overall Response", "BESTRSP": "Best Overall Response"}
NEW_LESIONS = {"YES": ("Y", "UNEQUIVOCAL"), "EQUIVOCAL": ("Y", "EQUIVOCAL"), "NO": ("N", None)}
LESION_STATES = {"ABSENT": "ABSENT", "PRESENT": "PRESENT", "UNEQUIVOCAL PROGRESSION": "UNEQUIVOCAL PROGRESSION"}


def _v(name, kind, label):
    return Variable(name, kind, label)


COMMON = [_v("STUDYID", "char", "Study Identifier"), _v("DOMAIN", "char", "Domain Abbreviation"),
          _v("USUBJID", "char", "Unique Subject Identifier")]
VISITS = [_v("VISITNUM", "num", "Visit Number"), _v("VISIT", "char", "Visit Name")]

DOMAINS = {
    "TU": ("Tumor/Lesion Identification", [
        *COMMON, _v("TUSEQ", "num", "Sequence Number"), _v("TULNKID", "char", "Link ID"),
        _v("TUTESTCD", "char", "Tumor/Lesion ID Short Name"), _v("TUTEST", "char", "Tumor/Lesion ID Test Name"),
        _v("TUORRES", "char", "Tumor/Lesion ID Result"), _v("TUSTRESC", "char", "Tumor/Lesion ID Result Std. Format"),
        _v("TULOC", "char", "Location of the Tumor/Lesion"), _v("TUMETHOD", "char", "Method of Identification"),
        _v("TUEVAL", "char", "Evaluator"), _v("TUEVALID", "char", "Evaluator Identifier"),
        *VISITS, _v("TUDTC", "char", "Date/Time of Tumor/Lesion Identification")]),
    "TR": ("Tumor/Lesion Results", [
        *COMMON, _v("TRSEQ", "num", "Sequence Number"), _v("TRREFID", "char", "Reference ID"),
        _v("TRLNKID", "char", "Link ID"),
        _v("TRLNKGRP", "char", "Link Group ID"), _v("TRTESTCD", "char", "Tumor/Lesion Assessment Short Name"),
        _v("TRTEST", "char", "Tumor/Lesion Assessment Test Name"),
        _v("TRORRES", "char", "Result or Finding in Original Units"), _v("TRORRESU", "char", "Original Units"),
        _v("TRSTRESC", "char", "Character Result/Finding in Std Format"),
        _v("TRSTRESN", "num", "Numeric Result/Finding in Standard Units"), _v("TRSTRESU", "char", "Standard Units"),
        _v("TRSTAT", "char", "Completion Status"), _v("TRREASND", "char", "Reason Not Done"),
        _v("TRMETHOD", "char", "Method Used to Identify the Tumor/Lesion"), _v("TREVAL", "char", "Evaluator"),
        _v("TREVALID", "char", "Evaluator Identifier"), *VISITS,
        _v("TRDTC", "char", "Date/Time of Tumor/Lesion Measurement")]),
    "RS": ("Disease Response and Clin Classification", [
        *COMMON, _v("RSSEQ", "num", "Sequence Number"), _v("RSLNKGRP", "char", "Link Group ID"),
        _v("RSTESTCD", "char", "Response Assessment Short Name"), _v("RSTEST", "char", "Response Assessment Name"),
        _v("RSCAT", "char", "Category for Response Assessment"),
        _v("RSORRES", "char", "Response Assessment Original Result"),
        _v("RSSTRESC", "char", "Response Assessment Result in Std Format"), _v("RSEVAL", "char", "Evaluator"),
        _v("RSEVALID", "char", "Evaluator Identifier"), _v("RSACPTFL", "char", "Accepted Record Flag"), *VISITS,
        _v("RSDTC", "char", "Date/Time of Response Assessment")]),
}
RSCAT = "RECIST 1.1"
FILES = ("tu.csv", "tr.csv", "rs.csv", "tu.xpt", "tr.xpt", "rs.xpt")


def variables(domain: str) -> list[str]:
    """The domain's variable names, in file order."""
    return [v.name for v in DOMAINS[domain][1]]


def _number(value) -> Decimal:
    return Decimal(str(value))


def _text(value) -> str:
    """A number as the reader wrote it: 18, 12.5 (never 18.0)."""
    number = _number(value)
    return str(number.quantize(Decimal(1))) if number == number.to_integral_value() else str(number.normalize())


def _schedule(subject: Subject) -> dict[int, tuple[int, str]]:
    """visit id -> (VISITNUM, VISIT) from the protocol version's visit schedule."""
    out = {}
    for visit in subject.visits.select_related("protocol_version").order_by("nominal_date", "pk"):
        codes = [v.get("code") for v in (visit.protocol_version.charter or {}).get("visits", [])]
        number = codes.index(visit.timepoint) + 1 if visit.timepoint in codes else None
        out[visit.pk] = (number, visit.label)
    return out


class _Subject:
    """Collects one subject's records per domain, in the order the IG examples use."""

    def __init__(self, *, trial: Trial, subject: Subject, dates: dict[int, datetime.date | None]):
        self.studyid = trial.protocol_number
        self.usubjid = f"{trial.protocol_number}-{subject.code}"
        self.schedule = _schedule(subject)
        self.dates = dates
        self.rows = {"TU": [], "TR": [], "RS": []}

    def add(self, domain: str, visit_id: int | None, **values) -> None:
        prefix = domain
        number, label = self.schedule.get(visit_id, (None, "")) if visit_id else (None, "")
        day = self.dates.get(visit_id) if visit_id else None
        row = dict.fromkeys(variables(domain))
        row.update(STUDYID=self.studyid, DOMAIN=domain, USUBJID=self.usubjid, VISITNUM=number, VISIT=label)
        row[f"{prefix}DTC"] = day.isoformat() if day else ""
        row.update(values)
        self.rows[domain].append(row)


def _method(lesion: dict) -> str:
    return METHODS.get(str(lesion.get("modality", "")).upper(), "")


def _tr_measure(out: _Subject, *, visit_id, group: str, evalid: str, link: str, lesion: dict, value,
                refid: str = "") -> None:
    code, test = ("LPERP", "Longest Perpendicular") if lesion.get("nodal") else ("LDIAM", "Longest Diameter")
    common = {"TRLNKGRP": group, "TRTESTCD": code, "TRTEST": test, "TRMETHOD": _method(lesion),
              "TREVAL": EVAL, "TREVALID": evalid, "TRREFID": refid}
    if isinstance(value, list):
        for k, part in enumerate(value, start=1):
            _tr_measure(out, visit_id=visit_id, group=group, evalid=evalid, link=f"{link}.{k}", lesion=lesion,
                        value=part, refid=refid)
        return
    if value is None:
        out.add("TR", visit_id, TRLNKID=link, TRSTAT="NOT DONE", TRREASND="NOT EVALUABLE", **common)
        return
    if value == "TSTM":
        orres, std = "TOO SMALL TO MEASURE", Decimal(5)
    elif value == "ABSENT":
        orres, std = "0", Decimal(0)
    else:
        orres, std = _text(value), _number(value)
    out.add("TR", visit_id, TRLNKID=link, TRORRES=orres, TRORRESU="mm", TRSTRESC=_text(std),
            TRSTRESN=std, TRSTRESU="mm", **common)


def _tr_state(out: _Subject, *, visit_id, group: str, evalid: str, link: str, lesion: dict, state: str) -> None:
    code, test = ("LNSTATE", "Lymph Node State") if lesion.get("nodal") else ("TUMSTATE", "Tumor State")
    common = {"TRLNKID": link, "TRLNKGRP": group, "TRTESTCD": code, "TRTEST": test, "TRMETHOD": _method(lesion),
              "TREVAL": EVAL, "TREVALID": evalid}
    if state in LESION_STATES:
        out.add("TR", visit_id, TRORRES=state, TRSTRESC=LESION_STATES[state], **common)
    else:
        out.add("TR", visit_id, TRSTAT="NOT DONE", TRREASND="NOT EVALUABLE", **common)


def _tr_sum(out: _Subject, *, visit_id, group: str, evalid: str, total) -> None:
    common = {"TRLNKGRP": group, "TRTESTCD": "SUMDIAM", "TRTEST": "Sum of Diameter", "TREVAL": EVAL,
              "TREVALID": evalid}
    if total is None:
        out.add("TR", visit_id, TRSTAT="NOT DONE", TRREASND="NOT EVALUABLE", **common)
    else:
        total = _number(total)
        out.add("TR", visit_id, TRORRES=_text(total), TRORRESU="mm", TRSTRESC=_text(total), TRSTRESN=total,
                TRSTRESU="mm", **common)


def _evaluator_lesions(out: _Subject, *, evalid: str, history: list, refs: dict[int, dict[str, str]]) -> None:
    """TU and TR of one reader's signed reads (baseline first). ``refs``: read id -> lesion id -> the SOP
    Instance UID of the stored measurement report holding the lesion's measurement (TRREFID)."""
    tag = SHORT[evalid]
    task, read = history[0]
    baseline = read.lesions
    lesions = {lesion["id"]: lesion for lesion in baseline.get("targets", []) + baseline.get("non_targets", [])}
    group = f"{tag}-{task.visit.timepoint}"
    for kind, key in (("TARGET", "targets"), ("NON-TARGET", "non_targets")):
        for lesion in baseline.get(key, []):
            out.add("TU", task.visit_id, TULNKID=f"{tag}-{lesion['id']}", TUTESTCD="TUMIDENT",
                    TUTEST="Tumor Identification", TUORRES=kind, TUSTRESC=kind,
                    TULOC=str(lesion.get("organ", "")).upper(), TUMETHOD=_method(lesion), TUEVAL=EVAL,
                    TUEVALID=evalid)
    for lesion in baseline.get("targets", []):
        _tr_measure(out, visit_id=task.visit_id, group=group, evalid=evalid, link=f"{tag}-{lesion['id']}",
                    lesion=lesion, value=lesion.get("mm"), refid=refs.get(read.pk, {}).get(lesion["id"], ""))
    for lesion in baseline.get("non_targets", []):
        _tr_state(out, visit_id=task.visit_id, group=group, evalid=evalid, link=f"{tag}-{lesion['id']}",
                  lesion=lesion, state="PRESENT")
    if baseline.get("targets"):
        _tr_sum(out, visit_id=task.visit_id, group=group, evalid=evalid,
                total=recist.lesion_sum([t.get("mm") for t in baseline["targets"]]))
    for task, read in history[1:]:
        group = f"{tag}-{task.visit.timepoint}"
        for lesion_id, value in (read.lesions.get("targets") or {}).items():
            _tr_measure(out, visit_id=task.visit_id, group=group, evalid=evalid, link=f"{tag}-{lesion_id}",
                        lesion=lesions.get(lesion_id, {}), value=value,
                        refid=refs.get(read.pk, {}).get(lesion_id, ""))
        for lesion_id, state in (read.lesions.get("non_targets") or {}).items():
            _tr_state(out, visit_id=task.visit_id, group=group, evalid=evalid, link=f"{tag}-{lesion_id}",
                      lesion=lesions.get(lesion_id, {}), state=state)
        if baseline.get("targets"):
            _tr_sum(out, visit_id=task.visit_id, group=group, evalid=evalid, total=_timepoint(read)["sum_mm"])


def _timepoint(read) -> dict:
    visit = read.task.visit.timepoint
    return next((tp for tp in read.responses.get("timepoints", []) if tp.get("visit") == visit),
                {"sum_mm": None, "target": "", "non_target": "", "overall": read.overall})


def _responses(out: _Subject, *, evalid: str, history: list, accepted: dict[int, str], bor_flag: str) -> None:
    """RS of one evaluator: each follow-up's responses, then the best overall response."""
    tag = SHORT[evalid] if evalid != ADJUDICATOR else None
    for task, read in history[1:]:
        tp = _timepoint(read)
        flag = {"RSACPTFL": accepted.get(task.visit_id, "")}
        common = {"RSCAT": RSCAT, "RSEVAL": EVAL, "RSEVALID": evalid, **flag}
        indicator, progression = NEW_LESIONS.get(read.lesions.get("new_lesions"), ("", None))
        results = [("TRGRESP", tp.get("target", "")), ("NTRGRESP", tp.get("non_target", "")),
                   ("NEWLIND", indicator)]
        if progression:
            results.append(("NEWLPROG", progression))
        for code, result in results:
            out.add("RS", task.visit_id, RSTESTCD=code, RSTEST=RESPONSE_TESTS[code], RSORRES=result,
                    RSSTRESC=result, **common)
        group = f"{tag or SHORT[EVALUATORS[task.slot]]}-{task.visit.timepoint}"
        out.add("RS", task.visit_id, RSLNKGRP=group, RSTESTCD="OVRLRESP", RSTEST=RESPONSE_TESTS["OVRLRESP"],
                RSORRES=read.overall, RSSTRESC=read.overall, **common)
    if len(history) > 1:
        bor = history[-1][1].responses.get("bor") or ""
        out.add("RS", None, RSTESTCD="BESTRSP", RSTEST=RESPONSE_TESTS["BESTRSP"], RSCAT=RSCAT,
                RSORRES=bor, RSSTRESC=bor, RSEVAL=EVAL, RSEVALID=evalid, RSACPTFL=bor_flag)


def _report_refs(*, trial: Trial) -> dict[int, dict[str, str]]:
    """read id -> lesion id -> SOP Instance UID of the stored measurement report that holds its measurement."""
    refs: dict[int, dict[str, str]] = {}
    for report in (MeasurementReport.objects.filter(read__task__trial=trial, status=MeasurementReport.Status.STORED)
                   .select_related("read__task")):
        for lesion_id, geometry in (report.read.lesions.get("annotations") or {}).items():
            if isinstance(geometry, dict) and geometry.get("study_uid") == report.study_uid:
                refs.setdefault(report.read_id, {})[lesion_id] = report.sop_uid
    return refs


def _subject_records(*, trial: Trial, subject: Subject, dates: dict, bicr: list[dict],
                     refs: dict[int, dict[str, str]] | None = None) -> _Subject:
    out = _Subject(trial=trial, subject=subject, dates=dates)
    baseline = baseline_visit(subject=subject)
    histories = {}
    for slot, evalid in EVALUATORS.items():
        history = signed_history(subject=subject, slot=slot)
        if history and baseline is not None and history[0][0].visit_id == baseline.pk:
            histories[evalid] = history
    bicr_by_visit = {row["visit_id"]: row for row in bicr}
    last_bicr = bicr[-1] if bicr else None

    def accepted_for(evalid: str) -> dict[int, str]:
        flags = {}
        for visit_id, row in bicr_by_visit.items():
            if row["source"] == BicrResult.Source.ADJUDICATION:
                flags[visit_id] = "Y" if evalid == ADJUDICATOR else "N"
            else:
                flags[visit_id] = "Y" if evalid == EVALUATORS.get(row["slot"]) else "N"
        return flags

    def bor_flag(evalid: str, history: list) -> str:
        if last_bicr is None:
            return ""
        if last_bicr["source"] == BicrResult.Source.ADJUDICATION:
            return "Y" if evalid == ADJUDICATOR else "N"
        mine = evalid == EVALUATORS.get(last_bicr["slot"]) and history[-1][1].pk == last_bicr["read_id"]
        return "Y" if mine else "N"

    for evalid, history in histories.items():
        _evaluator_lesions(out, evalid=evalid, history=history, refs=refs or {})
    for evalid, history in histories.items():
        _responses(out, evalid=evalid, history=history, accepted=accepted_for(evalid),
                   bor_flag=bor_flag(evalid, history))
    adjudicated = [row for row in bicr if row["source"] == BicrResult.Source.ADJUDICATION]
    if adjudicated:
        from .models import Read

        reads = {r.pk: r for r in Read.objects.filter(pk__in=[row["read_id"] for row in adjudicated])
                 .select_related("task__visit")}
        history = [(reads[row["read_id"]].task, reads[row["read_id"]]) for row in adjudicated]
        if history and baseline is not None and history[0][0].visit_id == baseline.pk:
            _responses(out, evalid=ADJUDICATOR, history=history, accepted=accepted_for(ADJUDICATOR),
                       bor_flag=bor_flag(ADJUDICATOR, history))
    return out


def sdtm_datasets(*, trial: Trial) -> dict[str, list[dict]]:
    """{"TU": rows, "TR": rows, "RS": rows}: each row a dict of the domain's variables, --SEQ numbered."""
    dates = dict(ImagingStudy.objects.filter(trial=trial, status=ImagingStudy.Status.ACCEPTED, visit__isnull=False)
                 .values("visit_id").annotate(day=Min("acquisition_date")).values_list("visit_id", "day"))
    bicr: dict[int, list[dict]] = {}
    for row in bicr_results(trial=trial):
        bicr.setdefault(row["subject_id"], []).append(row)
    refs = _report_refs(trial=trial)
    data = {"TU": [], "TR": [], "RS": []}
    subjects = Subject.objects.filter(trial=trial, read_tasks__isnull=False).distinct().order_by("code")
    for subject in subjects:
        records = _subject_records(trial=trial, subject=subject, dates=dates, bicr=bicr.get(subject.pk, []),
                                   refs=refs)
        for domain, rows in records.rows.items():
            for seq, row in enumerate(rows, start=1):
                row[f"{domain}SEQ"] = seq
            data[domain].extend(rows)
    return data


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal | int | float) and not isinstance(value, bool):
        return _text(value)
    return str(value)


def csv_bytes(*, domain: str, rows: list[dict]) -> bytes:
    """A dataset as CSV: a header of variable names, then one line per record, UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(variables(domain))
    for row in rows:
        writer.writerow([_csv_value(row[name]) for name in variables(domain)])
    return buffer.getvalue().encode("utf-8")


def sdtm_files(*, data: dict[str, list[dict]], created: datetime.datetime | None = None) -> dict[str, bytes]:
    """The six files of the export by name (tu.csv ... rs.xpt), from ``sdtm_datasets``."""
    created = created or datetime.datetime.now(datetime.UTC)
    files = {f"{domain.lower()}.csv": csv_bytes(domain=domain, rows=data[domain]) for domain in ("TU", "TR", "RS")}
    for domain in ("TU", "TR", "RS"):
        label, columns = DOMAINS[domain]
        files[f"{domain.lower()}.xpt"] = xport_bytes(name=domain, label=label, variables=columns, rows=data[domain],
                                                    created=created)
    return files


def sdtm_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in FILES:
            archive.writestr(name, files[name])
    return buffer.getvalue()


@transaction.atomic
def sdtm_export(*, actor, trial: Trial, out_dir: str | Path | None = None) -> dict[str, bytes]:
    """Build the SDTM files, record the export (file hashes) as an audit event, and write them to ``out_dir``
    when given. Trial managers and auditors, or the system (actor None: the CLI). Returns the files by name."""
    if actor is not None and not oversight_allowed(user=actor, trial_id=trial.pk):
        raise PermissionDenied(f"{actor} may not export SDTM datasets of {trial.protocol_number}")
    data = sdtm_datasets(trial=trial)
    files = sdtm_files(data=data)
    audit_record(actor=actor, action="reads.sdtm_exported", target=trial, trial_id=trial.pk,
                 details={"standard": IG_VERSION, "destination": str(out_dir) if out_dir else "download",
                          "files": {name: {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
                                    for name, content in files.items()},
                          "records": {domain: len(rows) for domain, rows in data.items()}})
    if out_dir is not None:
        directory = Path(out_dir)
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (directory / name).write_bytes(content)
    return files
