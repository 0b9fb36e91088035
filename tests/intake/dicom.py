"""Real DICOM files for intake tests: pydicom's bundled samples with synthetic PHI and fresh UIDs."""

import datetime
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

SAMPLES = {"CT": "CT_small.dcm", "MR": "MR_small.dcm"}


def make_study(folder: Path, *, patient_id: str, modality: str = "CT", count: int = 3,
               date: datetime.date = datetime.date(2026, 3, 1), study_uid: str | None = None,
               series_uid: str | None = None, scanner: dict | None = None, body_part: str = "CHEST") -> list[Path]:
    """Write ``count`` instances of one series into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    paths = []
    for n in range(count):
        ds = pydicom.dcmread(get_testdata_file(SAMPLES[modality]))
        ds.PatientID = patient_id
        ds.PatientName = "Synthetic^Patient"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = date.strftime("%Y%m%d")
        ds.Modality, ds.BodyPartExamined = modality, body_part
        ds.InstanceNumber, ds.SeriesNumber = n + 1, 2
        for keyword, value in (scanner or {}).items():
            setattr(ds, keyword, value)
        path = folder / f"{modality}{n:04d}_{ds.SOPInstanceUID[-8:]}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
