"""The operational de-identification: real files through intake, the engine, quarantine and archive."""

import datetime
import hashlib
import io

import numpy as np
import pydicom
import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.utils import timezone

from audit.models import AuditEvent
from deid import pipeline
from deid.engine import shift_date
from deid.exceptions import ArchiveConflict, ProfileInvalid
from deid.keys import subject_keys
from deid.models import DeidProfile, DeidRecord
from deid.selectors import mapping_rows
from deid.services import (
    _claim,
    archive_key,
    engine_profile,
    instance_deidentify,
    mapping_export,
    profile_create_version,
    profile_current,
    quarantine_purge,
    series_deidentify,
)
from intake.models import ImagingStudy, Instance, Submission
from intake.services import instance_receive, study_assign, submission_open
from trials.services import subject_enroll

from .conftest import PATIENT_ID, objects, phi_study, upload

pytestmark = pytest.mark.django_db
S, IS = ImagingStudy.Status, Instance.Status
PHI = [b"MRN-1001", b"Doe^Jane", b"19610704", b"ACC-9931", b"Roe^Richard", b"NHS-4471", b"SITE PRIVATE"]


@pytest.fixture
def study(tmp_path, stores, site1, coordinator_site1, ready_site):
    return upload(coordinator=coordinator_site1, site=site1, ready=ready_site, paths=phi_study(tmp_path / "in"))


def _deidentify_all(study):
    return [series_deidentify(series_id=s.pk) for s in study.series.all()]


def test_a_study_is_deidentified_verified_archived_and_moved_forward(study, stores):
    assert _deidentify_all(study) == [{"released": 3, "held": 0, "error": 0, "skipped": 0}]

    study.refresh_from_db()
    assert study.status == S.DEIDENTIFIED
    moves = [e.details["to"] for e in AuditEvent.objects.filter(action="intake.study_status_changed",
                                                                target_id=str(study.pk)).order_by("pk")]
    assert moves == [S.DEIDENTIFYING, S.DEIDENTIFIED]
    profile = DeidProfile.objects.get(trial=study.trial)
    assert (profile.version, profile.options, profile.purge_raw_after_days) == (1, [], None)  # lazily: Basic
    for instance in study.instances.all():
        record = instance.deid_records.get()
        assert instance.status == IS.DEIDENTIFIED
        assert (record.outcome, record.verification_passed, record.findings) == ("released", True, "")
        assert record.action_counts["X"] > 0 and record.removed_private > 0 and record.uids_mapped >= 4
        data = storages["archive"].open(instance.deid_key).read()
        assert hashlib.sha256(data).hexdigest() == instance.deid_sha256 == record.output_sha256
        assert instance.deid_size == len(data) and instance.deid_key == archive_key(instance=instance,
                                                                                    profile=profile)
        assert not [phi for phi in PHI if phi in data]  # nothing of the original's PHI, anywhere in the bytes
        ds = pydicom.dcmread(io.BytesIO(data))
        assert ds.PatientID == ds.PatientName == "101-0001" and ds.PatientIdentityRemoved == "YES"
        assert ds.SOPInstanceUID == record.sop_uid and record.sop_uid.startswith("2.25.")
        event = AuditEvent.objects.get(action="deid.instance_deidentified", target_id=str(instance.pk))
        assert event.details["raw_sha256"] == instance.raw_sha256 and event.details["deid_sha256"] == record.output_sha256
        assert event.details["profile_version"] == 1 and event.details["verification"] == "released"
    assert len(objects(stores["archive"])) == 3
    # no PHI reached the database: records and audit details hold tags, counts and hashes only
    rows = str(list(DeidRecord.objects.values())) + str(list(AuditEvent.objects.values_list("details", flat=True)))
    assert not [phi for phi in PHI if phi.decode() in rows]


def test_running_twice_gives_one_output_one_record_one_event(study, stores):
    _deidentify_all(study)
    again = _deidentify_all(study)

    assert again == [{"released": 0, "held": 0, "error": 0, "skipped": 0}]  # nothing pending any more
    for instance in study.instances.all():
        assert instance_deidentify(instance_id=instance.pk) == instance.deid_records.get()
    assert DeidRecord.objects.count() == 3 and len(objects(stores["archive"])) == 3
    assert AuditEvent.objects.filter(action="deid.instance_deidentified").count() == 3


def test_a_worker_killed_after_writing_the_archive_object_is_finished_by_the_next_run(study, stores):
    instance = study.instances.first()
    claimed, profile = _claim(instance.pk)  # the killed worker got this far: instance DEIDENTIFYING ...
    result = pipeline.run(storages["quarantine"].open(instance.raw_key).read(), profile=engine_profile(profile),
                          keys=subject_keys(trial=study.trial, subject_code="101-0001"),
                          subject_code="101-0001", pixel_regions=[])
    key = archive_key(instance=claimed, profile=profile)
    storages["archive"].save(key, ContentFile(result.output))  # ... and wrote its output, then died
    assert Instance.objects.get(pk=instance.pk).status == IS.DEIDENTIFYING

    _deidentify_all(study)

    instance.refresh_from_db()
    assert instance.status == IS.DEIDENTIFIED and instance.deid_key == key and instance.deid_sha256 == result.sha256
    assert len(objects(stores["archive"])) == 3 and DeidRecord.objects.count() == 3
    assert AuditEvent.objects.filter(action="deid.instance_deidentified", target_id=str(instance.pk)).count() == 1


def test_an_archive_object_with_other_bytes_is_never_overwritten(study, stores):
    instance = study.instances.first()
    key = archive_key(instance=instance, profile=profile_current(trial=study.trial))
    storages["archive"].save(key, ContentFile(b"something else"))

    with pytest.raises(ArchiveConflict):
        instance_deidentify(instance_id=instance.pk)

    assert storages["archive"].open(key).read() == b"something else"
    assert not DeidRecord.objects.filter(instance=instance).exists()
    assert Instance.objects.get(pk=instance.pk).status == IS.DEIDENTIFYING  # the sweeper will find it


def test_a_verification_failure_is_held_out_of_the_archive_with_findings_and_no_phi(
        tmp_path, stores, site1, coordinator_site1, ready_site):
    # the patient's name in an attribute Table E.1-1 keeps: the engine keeps it, verification catches it
    paths = phi_study(tmp_path / "in", count=2, seed={"ConvolutionKernel": "DOE"})
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site, paths=paths)

    assert _deidentify_all(study) == [{"released": 0, "held": 2, "error": 0, "skipped": 0}]

    assert objects(stores["archive"]) == []  # nothing released
    for instance in study.instances.all():
        record = instance.deid_records.get()
        assert instance.status == IS.FAILED and instance.deid_key == ""
        assert (record.outcome, record.verification_passed) == ("held", False)
        assert record.findings == "(0018,1210) ConvolutionKernel: holds identifying text"
        assert record.output_storage == "quarantine" and storages["quarantine"].exists(record.output_key)
        event = AuditEvent.objects.get(action="deid.instance_held", target_id=str(instance.pk))
        assert event.details["findings"] == [record.findings] and "DOE" not in str(event.details).upper()
    study.refresh_from_db()
    assert study.status == S.DEIDENTIFYING  # held: not forward until QC resolves it
    # a held instance is not redone under the same profile version ...
    assert _deidentify_all(study) == [{"released": 0, "held": 2, "error": 0, "skipped": 0}]
    assert DeidRecord.objects.count() == 2


def test_an_unreadable_raw_object_is_refused_and_recorded(study, stores):
    instance = study.instances.first()
    path = stores["quarantine"] / instance.raw_key
    path.write_bytes(path.read_bytes()[:200])  # damaged in storage: no longer the bytes received

    record = instance_deidentify(instance_id=instance.pk)

    assert (record.outcome, record.verification_passed) == ("error", None)
    assert "does not match its recorded sha256" in record.findings
    assert Instance.objects.get(pk=instance.pk).status == IS.FAILED


def test_burned_in_annotation_without_a_region_is_held_and_a_region_is_blanked(
        tmp_path, stores, site1, coordinator_site1, ready_site, trial_manager):
    paths = phi_study(tmp_path / "in", count=1, seed={"BurnedInAnnotation": "YES"})
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site, paths=paths)
    instance = study.instances.get()

    held = instance_deidentify(instance_id=instance.pk)
    assert held.outcome == "held" and "BurnedInAnnotation" in held.findings

    profile_create_version(actor=trial_manager, trial=study.trial, options=["clean_pixel_data"],
                           pixel_regions=[{"manufacturer": "siemens", "model": "SOMATOM Force", "rows": 128,
                                           "columns": 128, "boxes": [[0, 0, 20, 10]]}], note="banner")
    released = instance_deidentify(instance_id=instance.pk)  # a new version: retried

    assert (released.outcome, released.profile.version, released.pixel_boxes) == ("released", 2, 1), released.findings
    ds = pydicom.dcmread(io.BytesIO(storages["archive"].open(released.output_key).read()))
    original = pydicom.dcmread(paths[0]).pixel_array
    assert not ds.pixel_array[0:10, 0:20].any() and original[0:10, 0:20].any()
    assert np.array_equal(ds.pixel_array[10:, :], original[10:, :])
    assert DeidRecord.objects.filter(instance=instance).count() == 2
    study.refresh_from_db()
    assert study.status == S.DEIDENTIFIED  # held under v1, released under v2: the study moves on


def test_an_unassigned_study_waits_until_it_is_assigned(tmp_path, stores, site1, coordinator_site1, ready_site):
    submission = submission_open(actor=None, site=site1, channel=Submission.Channel.DICOM, calling_ae="PACS")
    for path in phi_study(tmp_path / "in", count=2, patient_id="MRN-7007"):
        assert instance_receive(submission=submission, path=path, name=path.name).outcome == "accepted"
    study = ImagingStudy.objects.get(status=S.UNASSIGNED)

    assert _deidentify_all(study) == [{"released": 0, "held": 0, "error": 0, "skipped": 0}]
    assert not DeidRecord.objects.exists()

    subject = subject_enroll(actor=coordinator_site1, site=site1, code="101-0002", patient_id="MRN-7007",
                             enrollment_date=datetime.date(2026, 3, 2))
    study_assign(actor=coordinator_site1, study=study, subject=subject,
                 visit=subject.visits.get(timepoint="BL"), procedure="CT_CAP")
    assert _deidentify_all(study) == [{"released": 2, "held": 0, "error": 0, "skipped": 0}]
    ds = pydicom.dcmread(io.BytesIO(storages["archive"].open(study.instances.first().deid_key).read()))
    assert ds.PatientID == "101-0002"


def test_more_instances_reopen_a_deidentified_study(tmp_path, study, stores, site1, coordinator_site1, ready_site):
    _deidentify_all(study)
    original = pydicom.dcmread(next((tmp_path / "in").iterdir()))
    late = phi_study(tmp_path / "late", count=1, study_uid=original.StudyInstanceUID,
                     series_uid=original.SeriesInstanceUID)
    upload(coordinator=coordinator_site1, site=site1, ready=ready_site, paths=late)

    _deidentify_all(study)

    study.refresh_from_db()
    assert study.status == S.DEIDENTIFIED and study.instances.count() == 4
    moves = [e.details["to"] for e in AuditEvent.objects.filter(action="intake.study_status_changed",
                                                                target_id=str(study.pk)).order_by("pk")]
    assert moves == [S.DEIDENTIFYING, S.DEIDENTIFIED, S.DEIDENTIFYING, S.DEIDENTIFIED]


# -- profiles -----------------------------------------------------------------------------------------------

def test_profiles_are_versioned_audited_and_never_edited(trial, trial_manager, outsider):
    first = profile_current(trial=trial)
    assert profile_current(trial=trial) == first and first.version == 1

    second = profile_create_version(
        actor=trial_manager, trial=trial, options=["retain_safe_private", "retain_longitudinal_modified_dates"],
        safe_private=[("SITE PRIVATE", "0x10")], purge_raw_after_days=30, note="keep the site's private tag")

    assert (second.version, profile_current(trial=trial)) == (2, second)
    assert second.safe_private == [["SITE PRIVATE", 16]]
    event = AuditEvent.objects.get(action="deid.profile_version_created", target_id=str(second.pk))
    assert event.actor == trial_manager and event.reason == "keep the site's private tag"
    assert event.details["changed"] == ["options", "purge_raw_after_days", "safe_private"]
    assert AuditEvent.objects.filter(action="deid.profile_version_created").count() == 2
    with pytest.raises(ValueError, match="never edited"):
        second.note = "edited"
        second.save()
    with pytest.raises(PermissionDenied):
        profile_create_version(actor=outsider, trial=trial)
    with pytest.raises(ProfileInvalid, match="unknown option"):
        profile_create_version(actor=trial_manager, trial=trial, options=["retain_everything"])
    with pytest.raises(ProfileInvalid, match="clean_pixel_data"):
        profile_create_version(actor=trial_manager, trial=trial, pixel_regions=[{"boxes": [[0, 0, 5, 5]]}])
    with pytest.raises(ProfileInvalid, match="exclusive"):
        profile_create_version(actor=trial_manager, trial=trial, options=[
            "retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"])
    assert DeidProfile.objects.filter(trial=trial).count() == 2


def test_modified_dates_shift_each_subject_by_its_own_stable_offset(
        tmp_path, stores, trial, site1, coordinator_site1, ready_site, trial_manager):
    profile_create_version(actor=trial_manager, trial=trial, options=["retain_longitudinal_modified_dates"])
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site,
                   paths=phi_study(tmp_path / "in", count=1))
    _deidentify_all(study)

    record = DeidRecord.objects.get()
    ds = pydicom.dcmread(io.BytesIO(storages["archive"].open(record.output_key).read()))
    offset = subject_keys(trial=trial, subject_code="101-0001").date_shift_days
    assert -3650 <= offset <= -365 and record.dates_shifted > 0
    assert ds.StudyDate == shift_date("20260301", days=offset) != "20260301"
    assert subject_keys(trial=trial, subject_code="101-0002").date_shift_days != offset


# -- quarantine purge ---------------------------------------------------------------------------------------

def test_purge_deletes_raw_files_once_retention_allows_and_audits_each_sha256(study, stores, trial_manager):
    _deidentify_all(study)
    now = timezone.now()
    assert quarantine_purge(now=now) == 0  # the default profile keeps raw files
    profile_create_version(actor=trial_manager, trial=study.trial, purge_raw_after_days=30)
    assert quarantine_purge(now=now) == 0  # not yet

    assert quarantine_purge(now=now + datetime.timedelta(days=31)) == 3

    for instance in study.instances.all():
        assert not storages["quarantine"].exists(instance.raw_key)
        assert storages["archive"].exists(instance.deid_key)
        assert instance.deid_records.get().raw_purged_at is not None
        event = AuditEvent.objects.get(action="deid.raw_purged", target_id=str(instance.pk))
        assert event.details["raw_sha256"] == instance.raw_sha256
        assert event.details["deid_sha256"] == instance.deid_sha256
    assert quarantine_purge(now=now + datetime.timedelta(days=60)) == 0  # once only
    assert AuditEvent.objects.filter(action="deid.raw_purged").count() == 3


def test_purge_keeps_the_raw_file_when_the_archived_output_is_missing_or_altered(study, stores, trial_manager):
    _deidentify_all(study)
    profile_create_version(actor=trial_manager, trial=study.trial, purge_raw_after_days=0)
    damaged = study.instances.first()
    (stores["archive"] / damaged.deid_key).write_bytes(b"altered")

    assert quarantine_purge() == 2

    assert storages["quarantine"].exists(damaged.raw_key)
    assert damaged.deid_records.get().raw_purged_at is None
    assert not AuditEvent.objects.filter(action="deid.raw_purged", target_id=str(damaged.pk)).exists()


# -- mapping export -----------------------------------------------------------------------------------------

def test_managers_export_the_mapping_and_the_export_is_audited(client, study, stores, trial_manager):
    _deidentify_all(study)
    client.force_login(trial_manager)

    response = client.get(f"/deid/trials/{study.trial_id}/mapping.csv")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().splitlines()
    assert lines[0].startswith("subject_code,patient_id_hash,study_uid_hash,study_uid,")
    assert len(lines) == 4
    instance = study.instances.first()
    ds = pydicom.dcmread(io.BytesIO(storages["archive"].open(instance.deid_key).read()))
    row = next(r for r in mapping_rows(user=trial_manager, trial=study.trial)
               if r["sop_uid_hash"] == instance.sop_uid_hash)
    assert (row["subject_code"], row["sop_uid"], row["study_uid"]) == ("101-0001", ds.SOPInstanceUID,
                                                                      ds.StudyInstanceUID)
    assert row["patient_id_hash"] == study.patient_id_hash and PATIENT_ID not in response.content.decode()
    event = AuditEvent.objects.get(action="deid.mapping_exported")
    assert event.actor == trial_manager and event.details == {"rows": 3}


@pytest.mark.parametrize("who", ["outsider", "coordinator_site1", "qc_analyst"])
def test_others_get_404_on_the_mapping(client, request, study, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/deid/trials/{study.trial_id}/mapping.csv").status_code == 404
    assert not AuditEvent.objects.filter(action="deid.mapping_exported").exists()


def test_mapping_export_refuses_a_user_without_the_role(study, outsider):
    from django.http import Http404

    with pytest.raises(Http404):
        mapping_export(user=outsider, trial=study.trial)


def test_the_demo_trial_starts_with_a_profile_qc_can_check_series_and_scanners(django_capture_on_commit_callbacks):
    from django.core.management import call_command

    from deid.demo import DEMO_OPTIONS, demo_profile_create

    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")

    [profile] = DeidProfile.objects.filter(trial__protocol_number="CORE-DEMO-01")
    assert (profile.version, profile.options, profile.created_by) == (1, sorted(DEMO_OPTIONS), None)
    assert demo_profile_create(trial_id=profile.trial_id) is None  # an existing profile is left alone
    assert AuditEvent.objects.filter(action="deid.profile_version_created", target_id=str(profile.pk)).exists()
