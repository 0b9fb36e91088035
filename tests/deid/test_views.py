"""The de-identification profile page: trial managers see and version the profile and preview a sample file.

The page is for trial managers only (auditors read profiles through the audit trail, like the API's 404).
Original values in the preview need VIEW_QUARANTINE, today held by trial managers only; the "hidden" path
is tested by taking that permission away from the role for one test.
"""

import io

import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pydicom.data import get_testdata_file

from audit.models import AuditEvent
from deid.forms import PREVIEW_SUBJECT_CODE
from deid.models import DeidProfile, DeidRecord
from deid.services import profile_create_version, profile_current
from trials.models import Role
from trials.permissions import ROLE_PERMS, Perm

from .conftest import objects

pytestmark = pytest.mark.django_db

PATIENT_NAME, PATIENT_ID = "Doe^Jane", "MRN-1001"


def sample_bytes() -> bytes:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT_NAME, PATIENT_ID, "19610704"
    ds.InstitutionName = "Saint Elsewhere"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def url(trial, suffix: str = "") -> str:
    return f"/deid/trials/{trial.pk}/profile/{suffix}"


def preview(client, trial, **data):
    upload = SimpleUploadedFile("sample.dcm", sample_bytes(), content_type="application/dicom")
    return client.post(url(trial, "preview/"), {"source": "current", "sample": upload, **data})


def row_of(preview_obj, keyword: str):
    return next(row for row in preview_obj.rows if row.keyword == keyword and row.depth == 0)


def test_a_manager_sees_the_current_version_and_the_earlier_ones(client, trial, trial_manager):
    profile_current(trial=trial)
    profile_create_version(actor=trial_manager, trial=trial, options=["retain_safe_private"],
                           safe_private=[["SIEMENS CSA HEADER", "0x10"]], note="keep the CSA header")
    client.force_login(trial_manager)

    page = client.get(url(trial))

    assert page.status_code == 200
    html = page.content.decode()
    assert "Current: version 2" in html and "Retain Safe Private Option" in html
    assert "SIEMENS CSA HEADER, 0x10" in html and 'id="version-1"' in html and "keep the CSA header" in html
    assert page["Cache-Control"] == "no-store"


def test_the_navigation_leads_a_manager_to_the_trial_page(client, trial, trial_manager):
    client.force_login(trial_manager)
    assert "De-identification" in client.get("/").content.decode()
    assert client.get("/deid/profile/").url == url(trial)


@pytest.mark.parametrize("who", ["outsider", "coordinator_site1", "qc_analyst", "auditor", "sponsor"])
def test_everyone_else_gets_404(client, request, trial, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get(url(trial)).status_code == 404
    assert client.post(url(trial, "versions/"), {"note": "x"}).status_code == 404
    assert preview(client, trial).status_code == 404
    assert not DeidProfile.objects.exists() and not AuditEvent.objects.filter(action="deid.profile_previewed").exists()
    if who != "outsider":  # the outsider manages a trial of their own
        assert client.get("/deid/profile/").status_code == 404
        assert "De-identification" not in client.get("/").content.decode()


def test_the_form_creates_version_n_plus_1_and_leaves_the_earlier_one_untouched(client, trial, trial_manager):
    first = profile_current(trial=trial)
    client.force_login(trial_manager)

    response = client.post(url(trial, "versions/"), {
        "options": ["clean_pixel_data", "retain_safe_private"], "safe_private": "SIEMENS CSA HEADER, 10",
        "pixel_regions": "ACME, US-1, 600, 800, 0, 0, 800, 40\nACME, US-1, 600, 800, 700, 560, 800, 600",
        "purge_raw_after_days": "30", "note": "ultrasound banner"})

    assert response.status_code == 302
    new = DeidProfile.objects.get(trial=trial, version=2)
    assert new.options == ["clean_pixel_data", "retain_safe_private"]
    assert new.safe_private == [["SIEMENS CSA HEADER", 16]] and new.purge_raw_after_days == 30
    assert new.pixel_regions == [{"manufacturer": "ACME", "model": "US-1", "rows": 600, "columns": 800,
                                  "boxes": [[0, 0, 800, 40], [700, 560, 100, 40]]}]
    assert new.created_by == trial_manager and new.note == "ultrasound banner"
    before = DeidProfile.objects.get(pk=first.pk)
    assert (before.version, before.options, before.history.count()) == (1, [], 1)
    assert AuditEvent.objects.filter(action="deid.profile_version_created", actor=trial_manager).count() == 1
    page = client.get(url(trial)).content.decode()
    assert "Version 2 saved: it switches on Clean Pixel Data Option" in page
    assert "ACME, US-1, 600, 800, 700, 560, 800, 600" in page


@pytest.mark.parametrize(("data", "error"), [
    ({"options": ["retain_uids"], "note": ""}, "This field is required."),
    ({"safe_private": "SIEMENS CSA HEADER, 10", "note": "x"}, "Retain Safe Private option"),
    ({"options": ["retain_safe_private"], "safe_private": "SIEMENS, 0x1FF", "note": "x"}, "hex offset 00-FF"),
    ({"options": ["clean_pixel_data"], "pixel_regions": "ACME, US-1, 600, 800, 10, 10, 5, 5", "note": "x"},
     "0 &lt;= x0 &lt; x1"),
    ({"options": ["retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"], "note": "x"},
     "exclusive"),
    ({"options": ["retain_everything"], "note": "x"}, "not one of the available choices"),
])
def test_invalid_input_shows_errors_and_creates_nothing(client, trial, trial_manager, data, error):
    profile_current(trial=trial)
    client.force_login(trial_manager)

    response = client.post(url(trial, "versions/"), data, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert error in response.content.decode()
    assert list(DeidProfile.objects.values_list("version", flat=True)) == [1]


def test_the_preview_shows_each_tag_with_the_original_to_a_manager(client, trial, trial_manager, stores):
    profile_current(trial=trial)
    client.force_login(trial_manager)

    response = preview(client, trial)

    assert response.status_code == 200
    shown = response.context["preview"]
    name = row_of(shown, "PatientName")
    assert (name.action, name.value, name.original) == ("replaced", PREVIEW_SUBJECT_CODE, PATIENT_NAME)
    assert row_of(shown, "PatientBirthDate").action in ("emptied", "removed")
    assert (row_of(shown, "InstitutionName").action, row_of(shown, "InstitutionName").value) == ("replaced", "ANONYMIZED")
    assert row_of(shown, "StudyInstanceUID").action == "UID mapped"
    assert row_of(shown, "StudyInstanceUID").value.startswith("2.25.")
    assert row_of(shown, "PatientIdentityRemoved").action == "added"
    assert shown.passed and shown.show_original
    html = response.content.decode()
    assert PATIENT_NAME in html and "Verification" in html
    assert response["Cache-Control"] == "no-store"


def test_the_preview_of_unsaved_settings_uses_the_form(client, trial, trial_manager, stores):
    profile_current(trial=trial)
    client.force_login(trial_manager)

    response = preview(client, trial, source="unsaved", options=["retain_institution_identity"],
                       HTTP_HX_REQUEST="true")

    shown = response.context["preview"]
    assert shown.version is None and shown.options == ["retain_institution_identity"]
    assert row_of(shown, "InstitutionName").action == "kept"
    assert "switches on Retain Institution Identity Option" in response.content.decode()
    assert list(DeidProfile.objects.values_list("version", flat=True)) == [1]


def test_without_view_quarantine_the_original_is_hidden(client, trial, trial_manager, monkeypatch, stores):
    monkeypatch.setitem(ROLE_PERMS, Role.TRIAL_MANAGER, ROLE_PERMS[Role.TRIAL_MANAGER] - {Perm.VIEW_QUARANTINE})
    client.force_login(trial_manager)

    response = preview(client, trial)

    shown = response.context["preview"]
    assert not shown.show_original
    assert {row.original for row in shown.rows} == {"hidden"}
    html = response.content.decode()
    assert PATIENT_NAME not in html and PATIENT_ID not in html and "19610704" not in html
    assert PREVIEW_SUBJECT_CODE in html
    event = AuditEvent.objects.get(action="deid.profile_previewed")
    assert event.details["original_shown"] is False


def test_the_preview_stores_nothing_and_is_audited_without_phi(client, trial, trial_manager, stores):
    profile_current(trial=trial)
    client.force_login(trial_manager)

    response = preview(client, trial)

    assert response.status_code == 200
    assert objects(stores["quarantine"]) == [] and objects(stores["archive"]) == []
    assert not DeidRecord.objects.exists()
    assert list(DeidProfile.objects.values_list("version", flat=True)) == [1]
    event = AuditEvent.objects.get(action="deid.profile_previewed")
    assert event.actor == trial_manager and event.trial_id == trial.pk
    assert event.details["size"] == len(sample_bytes()) and event.details["verification"] == "passed"
    assert len(event.details["sha256"]) == 64 and event.details["attributes"] > 0
    assert not any(value in str(event.details) for value in (PATIENT_NAME, PATIENT_ID, "19610704", "Elsewhere"))


def test_a_preview_without_a_file_or_of_a_non_dicom_file_says_why(client, trial, trial_manager, stores):
    client.force_login(trial_manager)

    missing = client.post(url(trial, "preview/"), {"source": "current"}, HTTP_HX_REQUEST="true")
    junk = client.post(url(trial, "preview/"), {"source": "current",
                                                "sample": SimpleUploadedFile("x.dcm", b"not dicom")})

    assert "This field is required." in missing.content.decode()
    assert "not a readable DICOM file" in junk.content.decode()
    assert AuditEvent.objects.filter(action="deid.profile_previewed").count() == 1


def test_preview_rows_walk_into_sequences():
    from pydicom.dataset import Dataset

    from deid.selectors import preview_rows

    def with_reference(uid: str, name: str) -> Dataset:
        ds, item = Dataset(), Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", uid
        ds.ReferencedImageSequence = [item]
        ds.PatientName = name
        return ds

    rows = preview_rows(original=with_reference("1.2.3.4", PATIENT_NAME),
                        output=with_reference("2.25.99", PREVIEW_SUBJECT_CODE), show_original=False)

    assert [(r.depth, r.keyword, r.action) for r in rows] == [
        (0, "ReferencedImageSequence", "changed inside"), (1, "ReferencedSOPClassUID", "kept"),
        (1, "ReferencedSOPInstanceUID", "UID mapped"), (0, "PatientName", "replaced")]
    assert {r.original for r in rows} == {"hidden"}


def test_the_form_sets_burned_in_text_review_and_the_page_says_what_is_in_force(client, trial, trial_manager):
    profile_current(trial=trial)
    client.force_login(trial_manager)
    assert "read with OCR after pixel cleaning" in client.get(url(trial)).content.decode()  # on by default

    bad = client.post(url(trial, "versions/"), {"ocr_text_review": "on", "ocr_min_confidence": "101", "note": "x"},
                      HTTP_HX_REQUEST="true")
    off = client.post(url(trial, "versions/"), {"ocr_min_confidence": "", "note": "plain anatomy misread"})
    stricter = client.post(url(trial, "versions/"), {"ocr_text_review": "on", "ocr_min_confidence": "55",
                                                     "note": "hold fainter text"})

    assert off.status_code == stricter.status_code == 302
    v2, v3 = DeidProfile.objects.get(trial=trial, version=2), DeidProfile.objects.get(trial=trial, version=3)
    assert (v2.ocr_text_review, v2.ocr_min_confidence) == (False, 70)  # empty confidence: carried over
    assert (v3.ocr_text_review, v3.ocr_min_confidence) == (True, 55)
    assert "less than or equal to 100" in bad.content.decode() and DeidProfile.objects.count() == 3
    page = client.get(url(trial)).content.decode()
    assert "Version 3 saved: it holds files with burned-in text for QC review; counts OCR words from confidence 55" in page
    assert "word confidence 55 or more" in page
