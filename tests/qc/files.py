"""Crafted series for the QC checks: tests/intake/dicom.py's real CT/MR samples, edited slice by slice."""

import datetime
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from qc.checks import InstanceData, SeriesData, StudyContext
from trials.charter import charter_parse

from ..intake.dicom import make_study
from ..trials.factories import demo_charter

SCANNER = {"Manufacturer": "SIEMENS", "ManufacturerModelName": "SOMATOM Force", "DeviceSerialNumber": "75123",
           "SoftwareVersions": "syngo CT VA50A"}
QUALIFIED = {"manufacturer": "SIEMENS", "model": "SOMATOM Force", "serial": "75123",
             "software_version": "syngo CT VA50A"}


def ct_series(folder: Path, *, count: int = 5, spacing: float = 5.0, skip: tuple[int, ...] = (),
              repeat: tuple[int, ...] = (), description: str = "CT PORTAL VENOUS", modality: str = "CT",
              study_uid: str | None = None, series_number: int = 2, **attributes) -> list[Path]:
    """A stack of ``count`` slices ``spacing`` mm apart along z, minus the ``skip`` indexes, plus a second
    copy of each ``repeat`` index (same position, new SOP Instance UID). ``attributes`` set on every file."""
    paths = make_study(folder, patient_id="MRN-1001", modality=modality, count=count, scanner=SCANNER,
                       study_uid=study_uid)
    kept = []
    for n, path in enumerate(paths):
        if n in skip:
            path.unlink()
            continue
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-158.0, -179.0, round(-75.0 + n * spacing, 3)]
        ds.SeriesDescription = description
        ds.SeriesNumber = series_number
        for keyword, value in attributes.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)
        kept.append(path)
        if n in repeat:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            copy = path.with_name(f"dup-{path.name}")
            ds.save_as(copy, enforce_file_format=True)
            kept.append(copy)
    return kept


def series_data(paths: list[Path], *, series_id: int = 1, number: int = 2) -> SeriesData:
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    return SeriesData(series_id=series_id, series_number=number, modality=str(headers[0].Modality),
                      instances=[InstanceData(instance_id=n + 1, header=h, load=p.read_bytes)
                                 for n, (p, h) in enumerate(zip(paths, headers, strict=True))])


def context(*series: list[Path], procedure: str = "CT_CAP", charter: dict | None = None,
            acquired: datetime.date | None = datetime.date(2026, 3, 1),
            window=(datetime.date(2026, 2, 2), datetime.date(2026, 3, 2)), qualified=(QUALIFIED,),
            deid_options=("clean_descriptors", "retain_device_identity"), **extra) -> StudyContext:
    """A StudyContext over crafted files, as qc.context builds it from the archive."""
    parsed = charter_parse(charter or demo_charter())
    return StudyContext(
        study_id=1, procedure=parsed.procedure(procedure), charter_version="1.0", visit=parsed.visit("BL"),
        visit_window=window, acquisition_date=acquired, qualified_scanners=list(qualified),
        deid_options=frozenset(deid_options),
        series=[series_data(paths, series_id=n + 1, number=n + 2) for n, paths in enumerate(series)], **extra)
