"""A signed read's measurements as a DICOM Structured Report: TID 1500 Measurement Report, built with highdicom.

Pure: no ORM and no storage. ``reads.reports`` gathers what it needs (the read's measured target lesions and
the headers of the archived, de-identified images they were drawn on) and stores the result.

What the document holds (Comprehensive 3D SR, one per read version and study):

- Patient and study attributes copied from the de-identified source images (highdicom copies them from the
  first), so the report carries no identifier the images do not already carry; a new series in the same study
  (Modality SR, Series Description ``SERIES_DESCRIPTION``, Manufacturer "Corelab").
- The observer is the blinded reader label ("Reader A" / "Reader B"), never the reader's name: readers stay
  blinded to each other, and the e-signature that names them stays in Corelab's records.
- One measurement group per target lesion measured in the viewer (TID 1501, Measurements and Qualitative
  Evaluations): Tracking Identifier = the SDTM link id of the lesion (TULNKID, e.g. ``R1-T1``) and a Tracking
  UID the caller derives from the subject, reader and lesion (the same lesion keeps it across timepoints and
  corrections); Time Point = the visit code; Finding SCT "Lesion"; Finding Site when the organ has a SNOMED
  code in ``FINDING_SITES`` (free text never goes in a coded field); SCT "Long axis" and, for a bidirectional
  measurement, SCT "Short axis", in UCUM mm, each INFERRED FROM its own line: a SCOORD POLYLINE of two points
  in the image's pixel coordinates (column, row), SELECTED FROM the source SOP instance (and frame, for a
  multi-frame image); the group names the image as its Source of Measurement. Why not TID 1410 (Planar ROI)
  with an Image Region: it allows one region per group and no coordinates on its measurements, so a
  bidirectional measurement's second axis could not be given; TID 1501 with one line per axis carries both,
  and is how Cornerstone3D's and OHIF's SR adapters write Length and Bidirectional measurements.
- Completion COMPLETE, PRELIMINARY flag FINAL and VERIFIED by the reader label at the signing time: the read
  is signed before any report is made. Content date/time are the signing time (UTC), so the same read always
  gives the same bytes.
"""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.valuerep import DT

SERIES_DESCRIPTION = "Corelab RECIST 1.1 measurements"
MANUFACTURER = "Corelab"
SERIES_NUMBER = 9901  # far from the site's series numbers, so viewers list the report apart
# the organs of the read form (reads.forms.ORGANS) that have a SNOMED CT code in DICOM's anatomic regions;
# the others (PERITONEUM, OTHER, ...) get no Finding Site rather than a made-up code
FINDING_SITES = {"LUNG": codes.SCT.Lung, "LIVER": codes.SCT.Liver, "LYMPH NODE": codes.SCT.LymphNode,
                 "BONE": codes.SCT.Bone, "BRAIN": codes.SCT.Brain, "ADRENAL": codes.SCT.AdrenalGland,
                 "KIDNEY": codes.SCT.Kidney, "PLEURA": codes.SCT.Pleura, "SPLEEN": codes.SCT.Spleen,
                 "PANCREAS": codes.SCT.Pancreas, "SOFT TISSUE": codes.SCT.SoftTissue, "SKIN": codes.SCT.Skin}
PROCEDURES = {"CT": codes.SCT.ComputedTomography,
              "MR": hd.sr.CodedConcept("113091000", "SCT", "Magnetic resonance imaging")}
IMAGING_PROCEDURE = codes.SCT.ImagingProcedure
# patient/study attributes highdicom reads from the first source image; the Basic Profile may have removed them
_TYPE2_STUDY = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                "StudyDate", "StudyTime")


class ReportError(ValueError):
    """The report cannot be made from what was given (a source image missing or of another study, ...)."""


@dataclass(frozen=True)
class LesionMeasurement:
    """One measured target lesion: where it was drawn (``geometry``, as reads keeps it) and how it is tracked."""

    lesion_id: str
    tracking_id: str     # the SDTM link id (TULNKID), e.g. "R1-T1"
    tracking_uid: str
    geometry: dict       # {"study_uid", "series_uid", "sop_uid", "frame", "tool", "points", "long_mm", "short_mm"}
    organ: str = ""


@dataclass(frozen=True)
class ReportContent:
    """Everything the report says, besides the source images."""

    observer: str                  # the blinded reader label, e.g. "Reader A"
    timepoint: str                 # the visit code, e.g. "BL"
    signed_at: datetime            # UTC
    series_uid: str
    sop_uid: str
    lesions: Sequence[LesionMeasurement] = field(default_factory=tuple)
    instance_number: int = 1


def _line(points: list, start: int) -> np.ndarray:
    return np.array([[float(c), float(r)] for c, r in points[start:start + 2]], dtype=np.float32)


def _source(image: Dataset, frame: int) -> hd.sr.SourceImageForRegion:
    frames = int(getattr(image, "NumberOfFrames", 1) or 1)
    if frame > frames:
        raise ReportError(f"image {image.SOPInstanceUID} has {frames} frame(s), not frame {frame}")
    # single-frame images are referenced without a frame number, as the standard asks
    return hd.sr.SourceImageForRegion(referenced_sop_class_uid=image.SOPClassUID,
                                      referenced_sop_instance_uid=image.SOPInstanceUID,
                                      referenced_frame_numbers=[frame] if frames > 1 else None)


def _coordinates(line: np.ndarray, image: Dataset, frame: int) -> hd.sr.CoordinatesForMeasurement:
    source = _source(image, frame)
    return hd.sr.CoordinatesForMeasurement(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=line,
                                           source_image=source)


def _group(lesion: LesionMeasurement, image: Dataset, timepoint: str) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    g = lesion.geometry
    frame, points = int(g["frame"]), g["points"]
    axes = [(codes.SCT.LongAxis, g["long_mm"], 0)]
    if g["tool"] == "bidirectional":
        axes.append((codes.SCT.ShortAxis, g["short_mm"], 2))
    measurements = [hd.sr.Measurement(name=name, value=float(value), unit=codes.UCUM.Millimeter,
                                      referenced_coordinates=[_coordinates(_line(points, start), image, frame)])
                    for name, value, start in axes]
    site = FINDING_SITES.get(str(lesion.organ or "").strip().upper())
    frames = int(getattr(image, "NumberOfFrames", 1) or 1)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=lesion.tracking_uid, identifier=lesion.tracking_id),
        time_point_context=hd.sr.TimePointContext(time_point=timepoint),
        finding_type=codes.SCT.Lesion,
        finding_sites=[hd.sr.FindingSite(anatomic_location=site)] if site is not None else None,
        measurements=measurements,
        source_images=[hd.sr.SourceImageForMeasurementGroup(
            referenced_sop_class_uid=image.SOPClassUID, referenced_sop_instance_uid=image.SOPInstanceUID,
            referenced_frame_numbers=[frame] if frames > 1 else None)])


def _evidence(images: Sequence[Dataset]) -> list[Dataset]:
    out = []
    for image in images:
        copy = Dataset(image)  # the caller's headers stay as given
        for keyword in _TYPE2_STUDY:
            if keyword not in copy:
                setattr(copy, keyword, "")
        out.append(copy)
    return out


def observer_name(label: str) -> str:
    """The blinded label as a Person Name: "Reader A" is family name "Reader", given name "A"."""
    return "^".join(label.split(" ", 1))


def measurement_report(*, content: ReportContent, images: Sequence[Dataset]) -> Dataset:
    """The TID 1500 Measurement Report of ``content``'s lesions, drawn on ``images`` (headers of the
    de-identified source images, one study). Raises ReportError when a lesion's image is not among them."""
    if not content.lesions:
        raise ReportError("no measured lesion: a report needs at least one measurement")
    by_uid = {str(image.SOPInstanceUID): image for image in images}
    studies = {str(image.StudyInstanceUID) for image in images}
    if len(studies) != 1:
        raise ReportError("the source images must belong to one study")
    groups, used = [], {}
    for lesion in content.lesions:
        g = lesion.geometry
        image = by_uid.get(g["sop_uid"])
        if image is None:
            raise ReportError(f"the image {lesion.lesion_id} was measured on ({g['sop_uid']}) is not available")
        if str(image.StudyInstanceUID) != g["study_uid"] or str(image.SeriesInstanceUID) != g["series_uid"]:
            raise ReportError(f"the image {lesion.lesion_id} was measured on is not in the study and series named")
        groups.append(_group(lesion, image, content.timepoint))
        used[g["sop_uid"]] = image
    evidence = _evidence(used.values())
    with warnings.catch_warnings():
        # the de-identified Patient's Name is the subject code ("101-0001"), one component by design
        warnings.filterwarnings("ignore", message=r"The string .* is unlikely to represent the intended person name")
        document = _document(content, groups, evidence)
    return document


def _document(content: ReportContent, groups: list, evidence: list[Dataset]) -> Dataset:
    modality = str(getattr(evidence[0], "Modality", "")).upper()
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=observer_name(content.observer)))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=observer),
        procedure_reported=PROCEDURES.get(modality, IMAGING_PROCEDURE), imaging_measurements=groups)
    when = content.signed_at.astimezone(UTC).replace(tzinfo=None) if content.signed_at.tzinfo else content.signed_at
    document = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report[0], series_instance_uid=content.series_uid,
        series_number=SERIES_NUMBER, sop_instance_uid=content.sop_uid, instance_number=content.instance_number,
        manufacturer=MANUFACTURER, is_complete=True, is_final=True, is_verified=True,
        verifying_observer_name=observer_name(content.observer), verifying_organization=MANUFACTURER,
        series_description=SERIES_DESCRIPTION, content_date=when.date(), content_time=when.time(),
        series_date=when.date(), series_time=when.time())
    # highdicom stamps creation, contribution and verification with the wall clock: the document stands for
    # the read as signed, and the same read must give the same bytes (a retried write finds its own object)
    stamp = DT(when.strftime("%Y%m%d%H%M%S.%f"))
    document.InstanceCreationDate, document.InstanceCreationTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S.%f")
    document.VerifyingObserverSequence[0].VerificationDateTime = stamp
    for item in document.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = stamp
    return document
