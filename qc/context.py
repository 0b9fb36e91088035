"""Builds the checks' StudyContext from the database and the archive storage (headers only)."""

import hashlib
import logging

import pydicom
from django.core.files.storage import storages

from deid.models import DeidRecord
from intake.models import ImagingStudy, Instance
from trials.models import ProtocolVersion, SiteQualification

from .checks import InstanceData, SeriesData, StudyContext

log = logging.getLogger(__name__)

# what the study page shows of each series: the header values the checks read
METADATA = (("Modality", "modality"), ("SeriesDescription", "description"), ("BodyPartExamined", "body part"),
            ("SliceThickness", "slice thickness (mm)"), ("PixelSpacing", "pixel spacing (mm)"), ("KVP", "kVp"),
            ("MagneticFieldStrength", "field strength (T)"), ("ContrastBolusAgent", "contrast agent"),
            ("Manufacturer", "manufacturer"), ("ManufacturerModelName", "model"),
            ("DeviceSerialNumber", "serial number"), ("ImageType", "image type"))


def protocol_version_for(study: ImagingStudy) -> ProtocolVersion | None:
    """The charter in force: the trial's current protocol version (a qualification scan: its own version)."""
    if study.qualification_id:
        return study.qualification.protocol_version
    current = ProtocolVersion.objects.filter(trial_id=study.trial_id, is_current=True).first()
    if current is None and study.visit_id:
        return study.visit.protocol_version
    return current


def instances_digest(study: ImagingStudy) -> tuple[str, int]:
    """A fingerprint of the study's instances and their de-identified copies: a new one means a new run."""
    rows = sorted(study.instances.values_list("pk", "status", "deid_sha256"))
    text = "\n".join(f"{pk}:{status}:{sha}" for pk, status, sha in rows)
    return hashlib.sha256(text.encode()).hexdigest(), len(rows)


def _header(key: str) -> tuple[pydicom.Dataset | None, str]:
    try:
        with storages["archive"].open(key, "rb") as stream:
            return pydicom.dcmread(stream, stop_before_pixels=True), ""
    except Exception as exc:  # noqa: BLE001 - an unreadable file is a finding of the integrity check
        log.warning("QC cannot read archived object %s: %s", key, exc)
        return None, f"{type(exc).__name__}: {exc}"[:200]


def _loader(key: str):
    def load() -> bytes:
        with storages["archive"].open(key, "rb") as stream:
            return stream.read()
    return load


def study_context(study: ImagingStudy, protocol_version: ProtocolVersion | None) -> StudyContext:
    charter = protocol_version.parsed_charter if protocol_version else None
    procedure = charter.procedure(study.procedure) if charter and study.procedure else None
    visit = charter.visit(study.visit.timepoint) if charter and study.visit_id else None
    qualified = [q.scanner_identity or q.scanner.identity() for q in SiteQualification.objects.filter(
        site_id=study.site_id, procedure=study.procedure, status=SiteQualification.Status.APPROVED
    ).select_related("scanner")]
    records = list(DeidRecord.objects.filter(instance__study=study).select_related("profile", "instance")
                   .order_by("instance_id", "-profile__version"))
    options: set[str] = set()
    held = []
    for record in records:
        if record.outcome == DeidRecord.Outcome.RELEASED:
            options.update(record.profile.options)
        elif record.instance.status != Instance.Status.DEIDENTIFIED:
            held.append({"instance_id": record.instance_id, "outcome": record.outcome, "findings": record.findings})
    ctx = StudyContext(
        study_id=study.pk, procedure=procedure, charter_version=protocol_version.label if protocol_version else "",
        visit=visit, visit_window=(study.visit.window_start, study.visit.window_end) if study.visit_id else None,
        acquisition_date=study.acquisition_date, qualified_scanners=qualified, deid_options=frozenset(options),
        deid_held=held)
    for series in study.series.order_by("series_number", "pk"):
        data = SeriesData(series_id=series.pk, series_number=series.series_number, modality=series.modality)
        for instance in series.instances.order_by("pk"):
            if not instance.deid_key:
                ctx.not_archived += 1
                continue
            header, error = _header(instance.deid_key)
            data.instances.append(InstanceData(instance_id=instance.pk, header=header, read_error=error,
                                               load=_loader(instance.deid_key)))
        ctx.series.append(data)
    return ctx


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def series_metadata(ctx: StudyContext) -> list[dict]:
    """Per series, the distinct header values the checks used, for the study page."""
    rows = []
    for series in ctx.series:
        values = []  # pairs, not a dict: jsonb does not keep key order
        for keyword, label in METADATA:
            seen = sorted({_text(v) for v in series.values(keyword)} - {""})
            values.append([label, ", ".join(seen[:5]) + (" …" if len(seen) > 5 else "")])
        rows.append({"series_id": series.series_id, "series_number": series.series_number,
                     "images": len(series.instances), "localizer": series.is_localizer, "values": values})
    return rows
