"""Measurement reports: a signed read's viewer measurements as a DICOM SR (TID 1500) made from real archived,
de-identified CT images, stored in the archive with the study, audited, checked with dciodvfy, linked from the
SDTM TR records, and downloaded only by those who may."""

import copy
import datetime
import hashlib
import io
import shutil
import subprocess
import time
import zipfile

import pydicom
import pytest
from django.core.files.storage import storages

from audit.models import AuditEvent
from deid.models import DeidRecord
from qc.services import qc_run, study_accept
from reads import sdtm
from reads.blinding import reading_id
from reads.exceptions import InvalidAssessment
from reads.models import MeasurementReport, Read
from reads.reports import measurement_report_make, report_key
from reads.services import (
    read_correct,
    read_save_draft,
    read_sign,
    reader_add,
    reader_training_add,
    task_open,
)
from reads.sr import SERIES_DESCRIPTION
from reads.tasks import measurement_report_make_task
from trials.services import subject_enroll

from ..qc.conftest import deidentify, make_study, ready_site, stores, upload  # noqa: F401  (QC's fixtures)
from ..qc.files import ct_series
from .conftest import BASELINE, PASSWORD, followup, pending_study, task_of

pytestmark = pytest.mark.django_db

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
LONG_AXIS, SHORT_AXIS, MM = ("103339001", "SCT"), ("103340004", "SCT"), ("mm", "UCUM")


def _accept(qc, study, django_capture_on_commit_callbacks):
    """QC accepts the archived CT and a stand-in for each other procedure the timepoint requires, so reads'
    receiver creates the timepoint's tasks."""
    qc_run(study_id=study.pk, trigger="deidentified")
    study.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        study_accept(analyst=qc, study=study)
    for procedure in study.visit.procedures:
        if procedure != study.procedure:
            with django_capture_on_commit_callbacks(execute=True):
                study_accept(analyst=qc, study=pending_study(study.subject, study.visit, procedure))


def _records(study) -> list[DeidRecord]:
    return list(DeidRecord.objects.filter(instance__study=study, outcome="released").order_by("instance_id"))


@pytest.fixture
def ctx(ready_site, make_study, trial_manager, qc_analyst, reader1, reader2, django_capture_on_commit_callbacks):  # noqa: F811
    """Subject 101-0001 with a real 5-slice CT at baseline, de-identified, archived and accepted; reader1
    (slot A) and reader2 (slot B) in the pool."""
    for user in (reader1, reader2):
        reader = reader_add(actor=trial_manager, trial=ready_site["subject"].trial, user=user)
        reader_training_add(actor=trial_manager, reader=reader, protocol_version=ready_site["version"],
                            topic="RECIST 1.1", trained_on=datetime.date(2026, 2, 1), trainer="lab")
    study = make_study(count=5)
    _accept(qc_analyst, study, django_capture_on_commit_callbacks)
    return {"subject": ready_site["subject"], "study": study, "records": _records(study), "ready": ready_site}


def archive_week6(ctx, *, folder, qc, capture) -> list[DeidRecord]:
    """A real 5-slice CT of the subject at week 6 (dated after the baseline), archived and accepted."""
    week6 = ctx["subject"].visits.get(timepoint="W6")
    day = "20260415"  # after the baseline's scans: the engine dates the follow-up by it
    later = deidentify(upload({**ctx["ready"], "baseline": week6},
                              ct_series(folder, count=5, StudyDate=day, SeriesDate=day, AcquisitionDate=day,
                                        ContentDate=day)))
    _accept(qc, later, capture)
    return _records(later)


def geometry(record: DeidRecord, **changes) -> dict:
    g = {"study_uid": record.study_uid, "series_uid": record.series_uid, "sop_uid": record.sop_uid, "frame": 1,
         "tool": "length", "points": [[100.5, 120.0], [160.25, 150.0]], "long_mm": 30.0}
    g.update(changes)
    return g


def bidirectional(record: DeidRecord) -> dict:
    return geometry(record, tool="bidirectional", points=[[10, 10], [50, 10], [30, 2], [30, 18]], long_mm=20.0,
                    short_mm=8.0)


def measured_baseline(records) -> dict:
    """T1 (liver) measured with a length on slice 2, T2 (a lymph node) bidirectionally on slice 4."""
    lesions = copy.deepcopy(BASELINE)
    lesions["targets"][1].update(organ="LYMPH NODE", nodal=True, mm=20)
    lesions["annotations"] = {"T1": geometry(records[1]), "T2": bidirectional(records[3])}
    return lesions


def sign(task, lesions) -> Read:
    user = task.reader.user
    task_open(task=task, user=user)
    read_save_draft(task=task, user=user, lesions=lesions)
    return read_sign(task=task, user=user, password=PASSWORD)


def make_all(read: Read) -> list[MeasurementReport]:
    """Run the task of every report planned for the read, as the worker would (eagerly, in this process)."""
    reports = list(MeasurementReport.objects.filter(read=read))
    for report in reports:
        measurement_report_make_task.apply(args=[report.pk])
    return [MeasurementReport.objects.get(pk=r.pk) for r in reports]


def stored_dataset(report: MeasurementReport) -> pydicom.Dataset:
    with storages["archive"].open(report.archive_key, "rb") as stream:
        return pydicom.dcmread(stream)


def content_items(ds, name: str) -> list:
    """Every content item (any depth) whose concept name's meaning is ``name``."""
    found = []

    def walk(items):
        for item in items:
            if "ConceptNameCodeSequence" in item and item.ConceptNameCodeSequence[0].CodeMeaning == name:
                found.append(item)
            walk(item.get("ContentSequence", []))
    walk(ds.ContentSequence)
    return found


def groups(ds) -> dict[str, pydicom.Dataset]:
    """Measurement groups by tracking identifier."""
    out = {}
    for group in content_items(ds, "Measurement Group"):
        [text] = [i for i in group.ContentSequence if i.ConceptNameCodeSequence[0].CodeMeaning == "Tracking Identifier"]
        out[text.TextValue] = group
    return out


def child(group, name: str) -> pydicom.Dataset:
    [item] = [i for i in group.ContentSequence if i.ConceptNameCodeSequence[0].CodeMeaning == name]
    return item


def num(group, name: str):
    item = child(group, name)
    value = item.MeasuredValueSequence[0]
    unit = value.MeasurementUnitsCodeSequence[0]
    [scoord] = item.ContentSequence
    [image] = scoord.ContentSequence
    return float(value.NumericValue), (unit.CodeValue, unit.CodingSchemeDesignator), scoord, image


# -- the report of a signed baseline ---------------------------------------------------------------------

def test_a_signed_read_becomes_a_tid_1500_report_of_its_measurements(ctx):
    records = ctx["records"]
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(records))

    [report] = make_all(read)

    assert report.status == MeasurementReport.Status.STORED and report.error == ""
    ds = stored_dataset(report)
    assert ds.SOPClassUID == COMPREHENSIVE_3D_SR and ds.Modality == "SR"
    assert ds.SOPInstanceUID == report.sop_uid and ds.SeriesInstanceUID == report.series_uid
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert ds.ContentTemplateSequence[0].MappingResource == "DCMR"
    assert ds.ConceptNameCodeSequence[0].CodeValue == "126000"  # Imaging Measurement Report
    assert (ds.SeriesDescription, ds.Manufacturer) == (SERIES_DESCRIPTION, "Corelab")
    assert ds.ContentDate == read.signed_at.strftime("%Y%m%d")
    assert (ds.CompletionFlag, ds.VerificationFlag) == ("COMPLETE", "VERIFIED")

    found = groups(ds)
    assert set(found) == {"R1-T1", "R1-T2"}
    t1, t2 = found["R1-T1"], found["R1-T2"]
    assert child(t1, "Tracking Unique Identifier").UID != child(t2, "Tracking Unique Identifier").UID
    assert child(t1, "Finding").ConceptCodeSequence[0].CodeValue == "52988006"  # Lesion
    assert child(t1, "Finding Site").ConceptCodeSequence[0].CodeMeaning == "Liver"
    assert child(t2, "Finding Site").ConceptCodeSequence[0].CodeMeaning == "Lymph Node"
    assert child(t1, "Time Point").TextValue == "BL"

    value, unit, scoord, image = num(t1, "Long axis")
    assert (value, unit) == (30.0, MM)
    assert child(t1, "Long axis").ConceptNameCodeSequence[0].CodeValue == LONG_AXIS[0]
    assert scoord.GraphicType == "POLYLINE" and list(scoord.GraphicData) == [100.5, 120.0, 160.25, 150.0]
    ref = image.ReferencedSOPSequence[0]
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (CT_IMAGE_STORAGE, records[1].sop_uid)
    assert "ReferencedFrameNumber" not in ref  # single-frame CT: frame 1 is the image itself

    long_value, _, long_line, long_image = num(t2, "Long axis")
    short_value, short_unit, short_line, _ = num(t2, "Short axis")
    assert (long_value, short_value, short_unit) == (20.0, 8.0, MM)
    assert child(t2, "Short axis").ConceptNameCodeSequence[0].CodeValue == SHORT_AXIS[0]
    assert list(long_line.GraphicData) == [10, 10, 50, 10] and list(short_line.GraphicData) == [30, 2, 30, 18]
    assert long_image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == records[3].sop_uid
    evidence = {i.ReferencedSOPInstanceUID for s in ds.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    assert evidence == {records[1].sop_uid, records[3].sop_uid}


def test_the_report_carries_the_deidentified_images_patient_and_study_and_no_reader_name(ctx, reader1):
    records = ctx["records"]
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(records))
    [report] = make_all(read)

    ds = stored_dataset(report)
    with storages["archive"].open(records[1].output_key, "rb") as stream:
        image = pydicom.dcmread(stream, stop_before_pixels=True)
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber"):
        assert ds.get(keyword) == image.get(keyword), keyword
    assert ds.StudyInstanceUID == report.study_uid == records[0].study_uid
    assert ds.SeriesInstanceUID not in {r.series_uid for r in records}  # a new series in the same study
    observer = content_items(ds, "Person Observer Name")[0].PersonName
    assert str(observer) == "Reader^A"
    raw = storages["archive"].open(report.archive_key, "rb").read()
    for name in (reader1.username, reader1.first_name, reader1.last_name, reader1.email,
                 ctx["subject"].site.name, "MRN-1001"):
        if name:
            assert name.encode() not in raw, name


def test_the_stored_report_has_no_iod_errors(ctx, tmp_path):
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy not found: install Debian's dicom3tools (it belongs in the Makefile's TEST_DEBS)")
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))
    [report] = make_all(read)
    path = tmp_path / "report.dcm"
    path.write_bytes(storages["archive"].open(report.archive_key, "rb").read())

    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    output = run.stdout + run.stderr

    assert "Comprehensive3DSR" in output  # dciodvfy recognised the IOD it validated
    assert [line for line in output.splitlines() if line.startswith("Error")] == []


def test_the_row_records_key_size_and_sha256_and_an_audit_event(ctx):
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))
    [report] = make_all(read)

    data = storages["archive"].open(report.archive_key, "rb").read()
    assert report.archive_key == report_key(report)
    assert report.archive_key.startswith(f"{ctx['study'].trial_id}/{ctx['study'].pk}/")
    assert report.sha256 == hashlib.sha256(data).hexdigest() and report.size == len(data)
    event = AuditEvent.objects.get(action="reads.measurement_report_stored")
    assert event.subject_id == ctx["subject"].pk and event.target_id == str(report.pk)
    assert event.details["sha256"] == report.sha256
    assert event.details["sop_instance_uid"] == report.sop_uid
    assert event.details["lesions"] == ["R1-T1", "R1-T2"]


def test_running_the_task_again_changes_nothing(ctx):
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))
    [report] = make_all(read)

    again = measurement_report_make(report_id=report.pk)

    assert (again.sha256, again.archive_key, again.status) == (report.sha256, report.archive_key, "stored")
    assert AuditEvent.objects.filter(action="reads.measurement_report_stored").count() == 1


def test_a_retry_after_a_killed_worker_finds_its_own_object(ctx):
    """The worker wrote the object and died before recording it: the retry makes the same bytes and keeps them."""
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))
    [report] = make_all(read)
    data = storages["archive"].open(report.archive_key, "rb").read()
    MeasurementReport.objects.filter(pk=report.pk).update(status="pending", sha256="", size=None)

    again = measurement_report_make(report_id=report.pk)

    assert again.status == "stored" and again.sha256 == hashlib.sha256(data).hexdigest()
    assert storages["archive"].open(report.archive_key, "rb").read() == data


def test_a_read_without_geometry_makes_no_report(ctx):
    read = sign(task_of(ctx["subject"], "BL", "A"), copy.deepcopy(BASELINE))

    assert read.status == Read.Status.SIGNED
    assert not MeasurementReport.objects.exists()


def test_a_follow_up_keeps_each_lesions_tracking_uid_and_a_correction_makes_a_new_report(
        ctx, tmp_path, qc_analyst, django_capture_on_commit_callbacks):
    subject, records = ctx["subject"], ctx["records"]
    baseline = sign(task_of(subject, "BL", "A"), measured_baseline(records))
    [bl_report] = make_all(baseline)
    w6_records = archive_week6(ctx, folder=tmp_path / "w6", qc=qc_analyst, capture=django_capture_on_commit_callbacks)
    lesions = {**followup(18, 12), "annotations": {"T1": geometry(w6_records[2], long_mm=18.0)}}

    first = sign(task_of(subject, "W6", "A"), lesions)
    [w6_report] = make_all(first)
    corrected_lesions = {**followup(17, 12), "annotations": {"T1": geometry(w6_records[2], long_mm=17.0)}}
    second = read_correct(read=first, user=first.task.reader.user, lesions=corrected_lesions,
                          reason="T1 re-measured on the right edge", password=PASSWORD)
    [correction_report] = make_all(second)

    bl_uid = child(groups(stored_dataset(bl_report))["R1-T1"], "Tracking Unique Identifier").UID
    for report, mm in ((w6_report, 18.0), (correction_report, 17.0)):
        group = groups(stored_dataset(report))["R1-T1"]
        assert child(group, "Tracking Unique Identifier").UID == bl_uid
        assert child(group, "Time Point").TextValue == "W6"
        assert child(group, "Finding Site").ConceptCodeSequence[0].CodeMeaning == "Liver"  # from the baseline
        assert num(group, "Long axis")[0] == mm
    assert stored_dataset(w6_report).StudyInstanceUID == w6_records[0].study_uid != records[0].study_uid
    # the corrected version's report is kept, as it was
    w6_report.refresh_from_db()
    assert w6_report.status == "stored" and storages["archive"].exists(w6_report.archive_key)
    assert correction_report.sop_uid != w6_report.sop_uid
    assert AuditEvent.objects.filter(action="reads.measurement_report_stored").count() == 3


def test_the_other_readers_lesions_have_their_own_tracking_uids(ctx):
    records = ctx["records"]
    a = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(records))
    b = sign(task_of(ctx["subject"], "BL", "B"), measured_baseline(records))
    [report_a], [report_b] = make_all(a), make_all(b)

    group_a, group_b = groups(stored_dataset(report_a))["R1-T1"], groups(stored_dataset(report_b))["R2-T1"]

    assert child(group_a, "Tracking Unique Identifier").UID != child(group_b, "Tracking Unique Identifier").UID
    assert str(content_items(stored_dataset(report_b), "Person Observer Name")[0].PersonName) == "Reader^B"


def test_a_missing_source_image_fails_the_report_clearly_and_writes_nothing(ctx):
    records = ctx["records"]
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(records))
    storages["archive"].delete(records[3].output_key)  # lost from the archive after signing

    [report] = make_all(read)

    assert report.status == MeasurementReport.Status.FAILED
    assert f"the archived image {records[3].sop_uid}" in report.error and "missing from the archive" in report.error
    assert report.archive_key == "" and report.sha256 == ""
    assert not storages["archive"].exists(report_key(report))
    read.refresh_from_db()
    assert read.status == Read.Status.SIGNED  # the signature is untouched
    event = AuditEvent.objects.get(action="reads.measurement_report_failed")
    assert event.details["error"] == report.error
    assert not AuditEvent.objects.filter(action="reads.measurement_report_stored").exists()


def test_other_bytes_under_the_reports_key_are_never_overwritten(ctx):
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))
    report = MeasurementReport.objects.get(read=read)
    key = report_key(report)
    storages["archive"].save(key, io.BytesIO(b"something else"))

    [report] = make_all(read)

    assert report.status == "failed" and "already holds other bytes" in report.error
    assert storages["archive"].open(key, "rb").read() == b"something else"


# -- the measured image must be one of this timepoint's ----------------------------------------------------

def test_a_measurement_on_another_subjects_study_is_refused(ctx, make_study, tmp_path):  # noqa: F811
    ready = ctx["ready"]
    other = subject_enroll(actor=ready["coordinator"], site=ready["site"], code="101-0002", patient_id="MRN-2002",
                           enrollment_date=ready["subject"].enrollment_date)
    foreign = deidentify(upload({**ready, "subject": other, "baseline": other.visits.get(timepoint="BL")},
                                ct_series(tmp_path / "other", count=5, PatientID="MRN-2002")))
    foreign_record = _records(foreign)[0]
    task = task_of(ctx["subject"], "BL", "A")
    task_open(task=task, user=task.reader.user)
    lesions = measured_baseline(ctx["records"])
    lesions["annotations"]["T2"] = bidirectional(foreign_record)

    with pytest.raises(InvalidAssessment, match="the measurement of T2 is not on an image of this timepoint"):
        read_save_draft(task=task, user=task.reader.user, lesions=lesions)
    assert not Read.objects.filter(task=task).exists()

    lesions["annotations"]["T2"] = bidirectional(ctx["records"][3])  # the right study: accepted
    read_save_draft(task=task, user=task.reader.user, lesions=lesions)
    assert Read.objects.get(task=task).lesions["annotations"]["T2"]["sop_uid"] == ctx["records"][3].sop_uid


def test_a_uid_of_the_right_image_under_another_series_is_refused(ctx):
    task = task_of(ctx["subject"], "BL", "A")
    task_open(task=task, user=task.reader.user)
    lesions = measured_baseline(ctx["records"])
    lesions["annotations"]["T1"]["series_uid"] = lesions["annotations"]["T1"]["series_uid"] + ".9"

    with pytest.raises(InvalidAssessment, match="the measurement of T1 is not on an image of this timepoint"):
        read_save_draft(task=task, user=task.reader.user, lesions=lesions)


# -- SDTM: TR records link to the report --------------------------------------------------------------------

def test_tr_rows_of_measured_lesions_carry_the_reports_sop_instance_uid(ctx):
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))
    [report] = make_all(read)
    sign(task_of(ctx["subject"], "BL", "B"), copy.deepcopy(BASELINE))  # reader B measured nothing in the viewer

    data = sdtm.sdtm_datasets(trial=ctx["subject"].trial)

    measures = {(r["TREVALID"], r["TRLNKID"]): r for r in data["TR"] if r["TRTESTCD"] in ("LDIAM", "LPERP")}
    assert measures[("RADIOLOGIST 1", "R1-T1")]["TRREFID"] == report.sop_uid
    assert measures[("RADIOLOGIST 1", "R1-T2")]["TRREFID"] == report.sop_uid
    assert not measures[("RADIOLOGIST 2", "R2-T1")]["TRREFID"]
    assert all(not r["TRREFID"] for r in data["TR"] if r["TRTESTCD"] == "SUMDIAM")
    # the SR's tracking identifiers are the TU link ids
    tu_links = {r["TULNKID"] for r in data["TU"] if r["TUEVALID"] == "RADIOLOGIST 1" and r["TUORRES"] == "TARGET"}
    assert set(groups(stored_dataset(report))) == tu_links

    files = sdtm.sdtm_files(data=data)
    header, *lines = files["tr.csv"].decode().splitlines()
    assert "TRREFID" in header.split(",")
    assert any(report.sop_uid in line for line in lines)
    assert b"TRREFID" in files["tr.xpt"] and report.sop_uid.encode() in files["tr.xpt"]
    assert "tr.xpt" in zipfile.ZipFile(io.BytesIO(sdtm.sdtm_zip(files))).namelist()


def test_tr_rows_have_no_reference_while_the_report_is_not_stored(ctx):
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))
    assert MeasurementReport.objects.get(read=read).status == "pending"

    data = sdtm.sdtm_datasets(trial=ctx["subject"].trial)

    assert all(not r["TRREFID"] for r in data["TR"])


# -- the read's page lists the report; the download is audited and scoped -----------------------------------

def test_the_reader_finds_the_report_on_the_reads_page_and_downloads_it(client, ctx, reader1):
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))
    [report] = make_all(read)
    client.force_login(reader1)

    html = client.get(f"/reads/tasks/{read.task_id}").content.decode()
    url = f"/reads/measurement-reports/{report.pk}.dcm"
    assert url in html and "DICOM SR" in html

    response = client.get(url)

    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    copy_ = pydicom.dcmread(io.BytesIO(response.content))
    stored = stored_dataset(report)
    # the reader's copy names the subject by its reading ID, as DICOMweb serves them the images
    assert stored.PatientID == ctx["subject"].code
    assert copy_.PatientID == reading_id(subject=ctx["subject"]) == str(copy_.PatientName)
    assert ctx["subject"].code.encode() not in response.content
    assert copy_.SOPInstanceUID == stored.SOPInstanceUID and copy_.ContentSequence == stored.ContentSequence
    event = AuditEvent.objects.get(action="reads.measurement_report_downloaded")
    assert event.actor_id == reader1.pk and event.details["sha256"] == report.sha256
    assert event.details["blinded_copy"] is True


def test_managers_and_auditors_download_the_stored_file(client, ctx, trial_manager):
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))
    [report] = make_all(read)
    client.force_login(trial_manager)

    response = client.get(f"/reads/measurement-reports/{report.pk}.dcm")

    assert response.content == storages["archive"].open(report.archive_key, "rb").read()
    assert hashlib.sha256(response.content).hexdigest() == report.sha256
    assert AuditEvent.objects.get(action="reads.measurement_report_downloaded").details["blinded_copy"] is False


def test_the_trials_reports_page_lists_each_report_with_its_state(client, ctx, trial_manager, auditor, reader1):
    records = ctx["records"]
    stored = make_all(sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(records)))[0]
    read_b = sign(task_of(ctx["subject"], "BL", "B"), measured_baseline(records))
    storages["archive"].delete(records[3].output_key)
    [failed] = make_all(read_b)
    url = f"/reads/oversight/trials/{ctx['subject'].trial_id}/measurement-reports"

    for user in (trial_manager, auditor):
        client.force_login(user)
        html = client.get(url).content.decode()
        assert f'id="measurement-report-{stored.pk}" data-status="stored"' in html
        assert f"/reads/measurement-reports/{stored.pk}.dcm" in html
        assert f'id="measurement-report-{failed.pk}" data-status="failed"' in html and "missing from the archive" in html
        assert ("Make again" in html) == (user == trial_manager)
    client.force_login(reader1)
    assert client.get(url).status_code == 404


def test_a_manager_makes_a_failed_report_again_with_a_reason(client, ctx, trial_manager, auditor):
    records = ctx["records"]
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(records))
    kept = storages["archive"].open(records[3].output_key, "rb").read()
    storages["archive"].delete(records[3].output_key)
    [report] = make_all(read)
    url = f"/reads/oversight/trials/{ctx['subject'].trial_id}/measurement-reports"
    client.force_login(auditor)
    assert client.post(url, {"report": report.pk, "reason": "restored"}).status_code == 404
    client.force_login(trial_manager)

    refused = client.post(url, {"report": report.pk, "reason": " "})
    assert refused.status_code == 400 and "say why the report is made again" in refused.content.decode()
    storages["archive"].save(records[3].output_key, io.BytesIO(kept))  # the image is back in the archive
    assert client.post(url, {"report": report.pk, "reason": "image restored from backup"}).status_code == 302

    report.refresh_from_db()
    assert report.status == MeasurementReport.Status.PENDING and report.error == ""
    event = AuditEvent.objects.get(action="reads.measurement_report_retried")
    assert event.reason == "image restored from backup" and "missing from the archive" in event.details["previous_error"]
    [report] = make_all(read)
    assert report.status == MeasurementReport.Status.STORED and report.attempts == 2
    again = client.post(url, {"report": report.pk, "reason": "once more"})
    assert again.status_code == 409 and "only a failed one is made again" in again.content.decode()


@pytest.mark.parametrize("who, status", [("reader2", 404), ("outsider", 404), ("coordinator_site1", 404),
                                         ("sponsor", 404), ("trial_manager", 200), ("auditor", 200)])
def test_who_may_download_a_report(request, client, ctx, who, status):
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))
    [report] = make_all(read)
    client.force_login(request.getfixturevalue(who))

    assert client.get(f"/reads/measurement-reports/{report.pk}.dcm").status_code == status
    assert AuditEvent.objects.filter(action="reads.measurement_report_downloaded").exists() == (status == 200)


def test_a_report_not_stored_is_not_downloadable(client, ctx, reader1):
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))
    report = MeasurementReport.objects.get(read=read)
    client.force_login(reader1)

    assert client.get(f"/reads/measurement-reports/{report.pk}.dcm").status_code == 404
    assert "Being made" in client.get(f"/reads/tasks/{read.task_id}").content.decode()


# -- the background path, for real: signing queues the task, a Celery worker makes the report ----------------

@pytest.mark.django_db(transaction=True)
def test_signing_queues_the_report_and_a_worker_stores_it(ctx, worker):
    read = sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"]))

    deadline = time.monotonic() + 60
    report = MeasurementReport.objects.get(read=read)
    while report.status == MeasurementReport.Status.PENDING and time.monotonic() < deadline:
        time.sleep(0.25)
        report.refresh_from_db()
    assert report.status == MeasurementReport.Status.STORED, report.error
    assert report.sha256 == hashlib.sha256(storages["archive"].open(report.archive_key, "rb").read()).hexdigest()
    assert AuditEvent.objects.filter(action="reads.measurement_report_stored", target_id=str(report.pk)).exists()
