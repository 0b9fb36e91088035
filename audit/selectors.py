"""Reads for the auditor's workspace: patient timelines, audit search, the chain alert.

Audit sits at the bottom of the import layers, so it knows nothing of trials' models. Who may see what
comes from ``trials.permissions`` (the one import the layer contract allows here). What a subject *is*
(trial, site, code, the site's time zone) comes from a resolver the trials app may register in its
``AppConfig.ready()``; until it does, a generic lookup through the app registry answers
(``apps.get_model``: resolved at call time, no import of trials.models).
"""

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.apps import apps
from django.db.models import F, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan
from django.http import Http404
from django.urls import NoReverseMatch, reverse

from trials.permissions import Perm, has_perm, trial_ids_with

from .history import history_url
from .models import AuditEvent, PdfExport

# -- the subject, as trials knows it ------------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectRef:
    """What the timeline needs to know about a subject; audit holds no foreign key to it."""

    id: int
    trial_id: int
    site_id: int
    code: str
    site_label: str = ""
    time_zone: str = "UTC"
    trial_label: str = ""

    @property
    def tz(self) -> dt.tzinfo:
        try:
            return ZoneInfo(self.time_zone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            return dt.UTC


_subject_resolver: Callable[..., SubjectRef | None] | None = None


def register_subject_resolver(resolver: Callable[..., SubjectRef | None]) -> None:
    """Let the trials app answer ``resolver(subject_id=...) -> SubjectRef | None`` (from AppConfig.ready)."""
    global _subject_resolver
    _subject_resolver = resolver


def _generic_subject(*, subject_id: int) -> SubjectRef | None:
    subject_model = apps.get_model("trials", "Subject")
    subject = subject_model.objects.select_related("site", "trial").filter(pk=subject_id).first()
    if subject is None:
        return None
    return SubjectRef(id=subject.pk, trial_id=subject.trial_id, site_id=subject.site_id, code=subject.code,
                      site_label=str(subject.site), time_zone=subject.site.time_zone,
                      trial_label=subject.trial.protocol_number)


def subject_get_for_auditor(*, user, subject_id: int) -> SubjectRef:
    """The subject, if the user may read its audit trail (auditors, trial managers); 404 otherwise, alike."""
    resolve = _subject_resolver or _generic_subject
    subject = resolve(subject_id=subject_id)
    if subject is None or not has_perm(user=user, perm=Perm.VIEW_AUDIT, trial_id=subject.trial_id):
        raise Http404("No such subject")
    return subject


# -- actions in words, targets as links ---------------------------------------------------------------------

ACTION_FAMILIES = {
    "trials": "Trial set-up and enrollment",
    "intake": "Receipt",
    "deid": "De-identification",
    "qc": "Quality control",
    "reads": "Reads",
    "audit": "Audit, exports and signatures",
    "auth": "Sign-in",
}

ACTION_WORDS = {
    "trials.subject_enrolled": "Subject enrolled",
    "trials.subject_arm_assigned": "Treatment arm assigned",
    "intake.instance_received": "Image received",
    "intake.instance_status_changed": "Image status changed",
    "intake.study_created": "Imaging study created",
    "intake.study_assigned": "Study assigned to subject/visit",
    "intake.study_status_changed": "Study status changed",
    "intake.submission_opened": "Submission opened",
    "intake.submission_closed": "Submission closed",
    "deid.instance_deidentified": "Image de-identified",
    "deid.instance_held": "Image held at de-identification",
    "deid.raw_purged": "Raw (PHI) copy purged from quarantine",
    "audit.timeline_exported": "Timeline exported",
    "audit.search_exported": "Audit search exported",
    "audit.chain_broken": "Audit chain verification FAILED",
    "audit.chain_verified": "Audit chain verified",
    "audit.signature_signed": "Electronically signed",
    "audit.signature_failed": "Signature refused (re-authentication failed)",
    "audit.export_downloaded": "Export downloaded",
    "auth.login": "Signed in",
    "auth.logout": "Signed out",
    "auth.login_failed": "Sign-in failed",
}


def action_words(action: str) -> str:
    """"intake.instance_received" -> "Image received"; unknown codes are spelled out from the code."""
    if action in ACTION_WORDS:
        return ACTION_WORDS[action]
    words = action.split(".", 1)[-1].replace("_", " ").strip()
    return words[:1].upper() + words[1:]


# target_type -> (url name, kwargs from the event); unknown types are shown without a link
TargetLink = Callable[[AuditEvent], tuple[str, dict] | None]
_target_links: dict[str, TargetLink] = {
    "trials.trial": lambda e: ("trial-detail", {"trial_id": int(e.target_id)}),
    "trials.site": lambda e: ("site-detail", {"trial_id": e.trial_id, "site_id": int(e.target_id)})
    if e.trial_id else None,
    "trials.protocolversion": lambda e: ("version-detail", {"trial_id": e.trial_id, "version_id": int(e.target_id)})
    if e.trial_id else None,
    "trials.subject": lambda e: ("audit-timeline", {"subject_id": int(e.target_id)}),
    "trials.sitequalification": lambda e: ("qualification-review", {"qualification_id": int(e.target_id)}),
    "intake.submission": lambda e: ("intake-submission", {"submission_id": int(e.target_id)}),
}


def register_target_link(target_type: str, link: TargetLink) -> None:
    """Let an app say where its objects are shown: ``link(event) -> (url name, kwargs) | None``."""
    _target_links[target_type] = link


def target_url(event: AuditEvent) -> str:
    link = _target_links.get(event.target_type)
    if link is None or not event.target_id:
        return ""
    try:
        found = link(event)
        return reverse(found[0], kwargs=found[1]) if found else ""
    except (NoReverseMatch, ValueError, TypeError):
        return ""


# -- the patient timeline -----------------------------------------------------------------------------------

PAGE_SIZE = 100


def encode_cursor(event: AuditEvent) -> str:
    raw = f"{event.occurred_at.isoformat()}|{event.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int] | None:
    """(occurred_at, id) of the last row shown; None for a missing or mangled cursor (first page)."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, ident = raw.split("|")
        moment = dt.datetime.fromisoformat(when)
        return (moment, int(ident)) if moment.tzinfo else None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def timeline_events(*, subject: SubjectRef, family: str = "", newest_first: bool = False) -> QuerySet[AuditEvent]:
    """Every event about the subject (its own trial's only), in time order; served by audit_subject_keyset."""
    events = AuditEvent.objects.filter(subject_id=subject.id, trial_id=subject.trial_id)
    if family:
        events = events.filter(action__startswith=f"{family}.")
    order = ["-occurred_at", "-id"] if newest_first else ["occurred_at", "id"]
    return events.order_by(*order)


def keyset_page(events: QuerySet[AuditEvent], *, after: str = "", limit: int = PAGE_SIZE,
                newest_first: bool = False) -> tuple[list[AuditEvent], str]:
    """One page after the cursor, and the cursor of the next page ("" at the end). Constant cost per page:
    a row comparison on (occurred_at, id) walks the index from where the last page stopped."""
    position = decode_cursor(after)
    if position is not None:
        compare = TupleLessThan if newest_first else TupleGreaterThan
        events = events.filter(compare(Tuple(F("occurred_at"), F("id")), position))
    rows = list(events[:limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]) if more and rows else ""


@dataclass(frozen=True)
class TimelineEntry:
    event: AuditEvent
    utc: dt.datetime
    local: dt.datetime
    words: str
    url: str
    details: list[tuple[str, str]]
    history_url: str = ""  # the target's field history, when it is a regulated row (audit.history)


def _detail_items(details) -> list[tuple[str, str]]:
    if not isinstance(details, dict):
        return [("", str(details))]
    return [(key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
            for key, value in details.items()]


def timeline_entries(events: list[AuditEvent], *, tz: dt.tzinfo) -> list[TimelineEntry]:
    """Events as the timeline and search pages show them: UTC and local time, words, link, details."""
    return [TimelineEntry(event=e, utc=e.occurred_at.astimezone(dt.UTC), local=e.occurred_at.astimezone(tz),
                          words=action_words(e.action), url=target_url(e), details=_detail_items(e.details),
                          history_url=history_url(target_type=e.target_type, target_id=e.target_id))
            for e in events]


# -- audit search -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchFilters:
    trial_id: int | None = None
    site_id: int | None = None
    subject_id: int | None = None
    subject_code: str = ""
    actor: str = ""  # username as recorded
    action: str = ""  # an exact code, or a family ("intake" or "intake.")
    target_type: str = ""
    target_id: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def audit_trial_ids_for_user(*, user) -> set[int]:
    return trial_ids_with(user=user, perm=Perm.VIEW_AUDIT)


def audit_event_list_for_user(*, user, filters: SearchFilters) -> QuerySet[AuditEvent]:
    """Events of the trials where the user may read the audit trail, filtered; newest first.

    Events with no trial (sign-ins) are not any trial's record and are not shown here.
    """
    trials = audit_trial_ids_for_user(user=user)
    if filters.trial_id is not None:
        trials = trials & {filters.trial_id}
    events = AuditEvent.objects.filter(trial_id__in=trials)
    exact = {"site_id": filters.site_id, "subject_id": filters.subject_id, "target_type": filters.target_type,
             "target_id": filters.target_id, "actor_label": filters.actor}
    events = events.filter(**{name: value for name, value in exact.items() if value not in (None, "")})
    if filters.subject_code:
        # codes are unique per trial: look the ids up, so the subject's keyset index serves the search
        subject_model = apps.get_model("trials", "Subject")
        events = events.filter(subject_id__in=list(subject_model.objects.filter(
            trial_id__in=trials, code=filters.subject_code).values_list("pk", flat=True)))
    if filters.action:
        if "." in filters.action.rstrip("."):
            events = events.filter(action=filters.action)
        else:
            events = events.filter(action__startswith=filters.action.rstrip(".") + ".")
    if filters.since is not None:
        events = events.filter(occurred_at__gte=filters.since)
    if filters.until is not None:
        events = events.filter(occurred_at__lt=filters.until)
    return events.order_by("-occurred_at", "-id")


# -- the tamper alert ---------------------------------------------------------------------------------------

VERIFY_ACTIONS = ("audit.chain_verified", "audit.chain_broken")


def chain_status_latest() -> AuditEvent | None:
    """The newest recorded chain verification (nightly, after exports), OK or broken."""
    return (AuditEvent.objects.filter(action__in=VERIFY_ACTIONS).order_by("-occurred_at", "-id")
            .only("id", "action", "occurred_at", "details").first())


def chain_alert_for_user(*, user) -> AuditEvent | None:
    """The failed verification to warn this user about: trial managers and auditors see it, nobody else."""
    if user is None or not user.is_authenticated or not trial_ids_with(user=user, perm=Perm.VIEW_AUDIT):
        return None
    latest = chain_status_latest()
    return latest if latest is not None and latest.action == "audit.chain_broken" else None


def may_view_audit(*, user, trial_id: int) -> bool:
    return has_perm(user=user, perm=Perm.VIEW_AUDIT, trial_id=trial_id)


# rows whose history reveals more than the audit trail does (a treatment arm) also need this permission
HISTORY_EXTRA_PERMS = {"trials.subjectarm": Perm.VIEW_ARM}


def may_view_history(*, user, trial_id: int, label: str) -> bool:
    """Whether the user may read the field history of a row ("app_label.model") of this trial."""
    extra = HISTORY_EXTRA_PERMS.get(label)
    return may_view_audit(user=user, trial_id=trial_id) and (
        extra is None or has_perm(user=user, perm=extra, trial_id=trial_id))


def audit_trial_choices_for_user(*, user) -> list[tuple[int, str]]:
    """(id, label) of the trials whose audit trail the user may read, for the search form."""
    trial_model = apps.get_model("trials", "Trial")
    ids = audit_trial_ids_for_user(user=user)
    return [(pk, label) for pk, label in trial_model.objects.filter(pk__in=ids).order_by("protocol_number")
            .values_list("pk", "protocol_number")]


# -- background PDF exports ---------------------------------------------------------------------------------

def pdf_export_get_for_user(*, user, export_id: int) -> PdfExport:
    """An export the user asked for, while they may still read its trial's audit trail; 404 otherwise."""
    export = PdfExport.objects.filter(pk=export_id, requested_by_id=getattr(user, "pk", None)).first()
    if export is None or not has_perm(user=user, perm=Perm.VIEW_AUDIT, trial_id=export.trial_id):
        raise Http404("No such export")
    return export


def pdf_export_list_for_user(*, user, subject_id: int, limit: int = 5) -> list[PdfExport]:
    """The user's latest PDF exports of one subject (the timeline page lists them)."""
    return list(PdfExport.objects.filter(requested_by_id=getattr(user, "pk", None), subject_id=subject_id)
                .order_by("-requested_at", "-id")[:limit])
