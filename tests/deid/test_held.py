"""Burned-in text through the real pipeline (OCR after pixel cleaning holds the file), and QC's review of
held outputs: release to the archive, or reject. Real intake, quarantine, archive, PostgreSQL, Tesseract."""

import hashlib
import io
import json

import pydicom
import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.storage import storages
from pydicom.data import get_testdata_file

from audit.models import AuditEvent
from deid import pipeline
from deid.engine import Profile
from deid.exceptions import ProfileInvalid
from deid.models import DeidRecord
from deid.services import (
    HeldReviewConflict,
    HeldReviewError,
    archive_key,
    held_reject,
    held_release,
    instance_deidentify,
    profile_create_version,
    profile_current,
)
from intake.models import ImagingStudy, Instance

from .burned_in import COLUMNS, ROWS, TEXT_AT, TEXT_REGION, burned_in_study
from .conftest import objects, phi_study, upload
from .test_engine import KEYS, SUBJECT

pytestmark = pytest.mark.django_db
S, IS = ImagingStudy.Status, Instance.Status


@pytest.fixture
def held_study(tmp_path, stores, site1, coordinator_site1, ready_site):
    """One secondary capture with a name and birth date burned in, uploaded and de-identified: held."""
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site,
                   paths=burned_in_study(tmp_path / "in"))
    instance_deidentify(instance_id=study.instances.get().pk)
    return study


def _record(study) -> DeidRecord:
    return DeidRecord.objects.select_related("instance__study", "profile").get(instance__study=study)


def test_burned_in_text_left_after_cleaning_holds_the_file_with_its_boxes(held_study, stores):
    record = _record(held_study)

    assert record.outcome == "held" and record.verification_passed is False
    assert record.findings.startswith(pipeline.PIXEL_TEXT) and "secondary capture" in record.findings
    assert record.text_boxes, "OCR found no box"
    for box in record.text_boxes:
        assert set(box) == {"frame", "x", "y", "width", "height", "confidence", "chars"}  # never the text
        assert box["frame"] == 0 and box["confidence"] >= 70 and box["chars"] >= 3
        assert 0 <= box["x"] < COLUMNS and 0 <= box["y"] < ROWS
    assert any(abs(box["y"] - TEXT_AT[1]) <= 12 and box["x"] >= TEXT_AT[0] - 5 for box in record.text_boxes)
    # held: the output waits in quarantine under held_key, nothing in the archive
    assert record.output_storage == "quarantine" and record.held_key == record.output_key
    assert storages["quarantine"].exists(record.held_key) and objects(stores["archive"]) == []
    assert Instance.objects.get(pk=record.instance_id).status == IS.FAILED
    held_study.refresh_from_db()
    assert held_study.status == S.DEIDENTIFYING
    event = AuditEvent.objects.get(action="deid.instance_held", target_id=str(record.instance_id))
    assert event.details["text_boxes"] == len(record.text_boxes) and "secondary capture" in event.details["pixel_review"]
    stored = json.dumps([record.findings, record.text_boxes, event.details]).upper()
    assert "DOE" not in stored and "19610704" not in stored and "JANE" not in stored


def test_text_inside_a_configured_blanking_region_is_released(tmp_path, stores, site1, coordinator_site1,
                                                              ready_site, trial_manager, trial):
    profile_create_version(actor=trial_manager, trial=trial, options=["clean_pixel_data"],
                           pixel_regions=[TEXT_REGION], note="the capture's label band")
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site,
                   paths=burned_in_study(tmp_path / "in"))

    record = instance_deidentify(instance_id=study.instances.get().pk)

    assert (record.outcome, record.pixel_boxes, record.text_boxes) == ("released", 1, []), record.findings
    ds = pydicom.dcmread(io.BytesIO(storages["archive"].open(record.output_key).read()))
    assert not ds.pixel_array[0:80, :].any() and ds.pixel_array[80:, :].any()
    study.refresh_from_db()
    assert study.status == S.DEIDENTIFIED


def test_with_ocr_off_on_the_profile_a_burned_in_file_is_released(tmp_path, stores, site1, coordinator_site1,
                                                                 ready_site, trial_manager, trial):
    profile_create_version(actor=trial_manager, trial=trial, ocr_text_review=False, note="US anatomy misread")
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site,
                   paths=burned_in_study(tmp_path / "in"))

    record = instance_deidentify(instance_id=study.instances.get().pk)

    assert (record.outcome, record.text_boxes, record.findings) == ("released", [], "")


def test_ocr_settings_carry_over_to_new_versions_and_bad_ones_are_refused(trial, trial_manager):
    assert (profile_current(trial=trial).ocr_text_review, profile_current(trial=trial).ocr_min_confidence) == (True, 70)
    off = profile_create_version(actor=trial_manager, trial=trial, ocr_text_review=False, ocr_min_confidence=80)
    event = AuditEvent.objects.get(action="deid.profile_version_created", target_id=str(off.pk))
    assert {"ocr_text_review", "ocr_min_confidence"} <= set(event.details["changed"])
    # an editor that does not show the OCR settings leaves them as they were
    later = profile_create_version(actor=trial_manager, trial=trial, options=["clean_descriptors"])
    assert (later.ocr_text_review, later.ocr_min_confidence) == (False, 80)
    with pytest.raises(ProfileInvalid, match="0 to 100"):
        profile_create_version(actor=trial_manager, trial=trial, ocr_min_confidence=101)
    with pytest.raises(ProfileInvalid, match="true or false"):
        profile_create_version(actor=trial_manager, trial=trial, ocr_text_review="yes")
    assert profile_current(trial=trial).version == later.version


def test_files_not_routed_to_pixel_review_are_not_read():
    raw = open(get_testdata_file("CT_small.dcm"), "rb").read()
    result = pipeline.run(raw, profile=Profile(), keys=KEYS, subject_code=SUBJECT, pixel_regions=[],
                          ocr=pipeline.Ocr())
    assert result.passed and result.pixel_review == [] and result.text_boxes == []


def test_a_real_ultrasound_with_its_institution_burned_in_is_held_unless_ocr_is_off():
    raw = open(get_testdata_file("US1_UNCR.dcm"), "rb").read()  # pydicom's sample: "BAPTIST MED CTR" top left
    read = pipeline.run(raw, profile=Profile(), keys=KEYS, subject_code=SUBJECT, pixel_regions=[],
                        ocr=pipeline.Ocr())
    assert not read.passed and read.pixel_review == ["ultrasound"] and "ultrasound" in read.findings[0]
    assert any(box["x"] < 40 and box["y"] < 40 and box["chars"] == 7 for box in read.text_boxes)  # BAPTIST
    assert pipeline.reviewable(read.findings)
    unread = pipeline.run(raw, profile=Profile(), keys=KEYS, subject_code=SUBJECT, pixel_regions=[], ocr=None)
    assert unread.passed and unread.text_boxes == []


def test_pixels_ocr_cannot_decode_are_held_for_review(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("JPEG-LL.dcm"))  # JPEG Lossless (process 14): no decoder is pinned
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    result = pipeline.run(buffer.getvalue(), profile=Profile(), keys=KEYS, subject_code=SUBJECT,
                          pixel_regions=[], ocr=pipeline.Ocr())
    assert result.output is not None and not result.passed
    assert [f for f in result.findings if f.startswith(pipeline.PIXEL_UNREAD)]
    assert pipeline.reviewable([f for f in result.findings if f.startswith(pipeline.PIXEL_UNREAD)])


# -- review ---------------------------------------------------------------------------------------------

def test_release_archives_the_held_output_and_the_study_moves_on(held_study, qc_analyst, stores):
    record = _record(held_study)
    held = storages["quarantine"].open(record.held_key).read()

    released = held_release(reviewer=qc_analyst, record=record, reason="scanner label only, checked")

    key = archive_key(instance=record.instance, profile=record.profile)
    assert (released.outcome, released.output_storage, released.output_key) == ("released", "archive", key)
    archived = storages["archive"].open(key).read()
    assert archived == held and hashlib.sha256(archived).hexdigest() == released.output_sha256
    instance = Instance.objects.get(pk=record.instance_id)
    assert (instance.status, instance.deid_key, instance.deid_sha256) == (IS.DEIDENTIFIED, key, released.output_sha256)
    assert released.reviewed_by == qc_analyst and released.review_reason == "scanner label only, checked"
    assert storages["quarantine"].exists(record.held_key)  # copied, never moved or rewritten
    held_study.refresh_from_db()
    assert held_study.status == S.DEIDENTIFIED  # on to automated QC, as after any release
    event = AuditEvent.objects.get(action="deid.held_released", target_id=str(instance.pk))
    assert (event.actor, event.reason, event.details["archive_key"]) == (qc_analyst, "scanner label only, checked", key)
    moves = list(AuditEvent.objects.filter(action="intake.instance_status_changed", target_id=str(instance.pk))
                 .order_by("pk").values_list("details__to", flat=True))
    assert moves[-2:] == [IS.DEIDENTIFYING, IS.DEIDENTIFIED]
    with pytest.raises(HeldReviewConflict, match="released"):
        held_release(reviewer=qc_analyst, record=released, reason="again")
    assert instance_deidentify(instance_id=instance.pk) == released  # nothing left to do


def test_reject_keeps_the_file_out_of_the_archive(held_study, qc_analyst, stores):
    record = _record(held_study)

    rejected = held_reject(reviewer=qc_analyst, record=record, reason="patient name legible top left")

    assert (rejected.outcome, rejected.reviewed_by, rejected.review_reason) == (
        "rejected", qc_analyst, "patient name legible top left")
    assert objects(stores["archive"]) == [] and storages["quarantine"].exists(record.held_key)
    assert Instance.objects.get(pk=record.instance_id).status == IS.FAILED
    event = AuditEvent.objects.get(action="deid.held_rejected", target_id=str(record.instance_id))
    assert (event.actor, event.reason) == (qc_analyst, "patient name legible top left")
    with pytest.raises(HeldReviewConflict, match="rejected"):
        held_release(reviewer=qc_analyst, record=rejected, reason="changed my mind")
    # not retried under the same profile version: the site resends, or a new version blanks the text
    assert instance_deidentify(instance_id=record.instance_id).outcome == "rejected"


@pytest.mark.parametrize(("reason", "error"), [("", "give a reason"), ("   ", "give a reason"),
                                               ("x" * 2001, "under 2000 characters")])
def test_a_review_needs_a_reason(held_study, qc_analyst, reason, error):
    record = _record(held_study)
    for act in (held_release, held_reject):
        with pytest.raises(HeldReviewError, match=error):
            act(reviewer=qc_analyst, record=record, reason=reason)
    assert _record(held_study).outcome == "held"
    assert not AuditEvent.objects.filter(action__in=("deid.held_released", "deid.held_rejected")).exists()


def test_a_site_coordinator_cannot_release_or_reject(held_study, coordinator_site1, stores):
    record = _record(held_study)
    for act in (held_release, held_reject):
        with pytest.raises(PermissionDenied):
            act(reviewer=coordinator_site1, record=record, reason="looks fine to me")
    assert _record(held_study).outcome == "held" and objects(stores["archive"]) == []


def test_a_file_held_for_its_header_cannot_be_released_by_looking_at_it(tmp_path, stores, site1, coordinator_site1,
                                                                        ready_site, qc_analyst):
    paths = phi_study(tmp_path / "in", count=1, seed={"ConvolutionKernel": "DOE"})
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site, paths=paths)
    instance_deidentify(instance_id=study.instances.get().pk)
    record = _record(study)
    assert record.outcome == "held" and "ConvolutionKernel" in record.findings

    with pytest.raises(HeldReviewError, match="header"):
        held_release(reviewer=qc_analyst, record=record, reason="image is fine")
    assert objects(stores["archive"]) == []
    assert held_reject(reviewer=qc_analyst, record=record, reason="name in kernel").outcome == "rejected"


def test_a_held_output_altered_in_quarantine_is_not_released(held_study, qc_analyst, stores):
    record = _record(held_study)
    path = stores["quarantine"] / record.held_key
    path.write_bytes(path.read_bytes() + b"\0\0")

    with pytest.raises(HeldReviewError, match="sha256"):
        held_release(reviewer=qc_analyst, record=record, reason="fine")
    assert objects(stores["archive"]) == [] and _record(held_study).outcome == "held"
