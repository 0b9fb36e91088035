"""The web upload door, through Django's test client with real DICOM files and zips built here."""

import datetime
import io
import json
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import quote

import pydicom
import pytest

from intake.models import ImagingStudy, Instance, Submission
from trials.models import SiteQualification
from trials.services import qualification_request, subject_enroll

from ..trials.factories import ScannerFactory, UserFactory
from . import test_receive
from .dicom import make_study
from .test_receive import ENROLLED, SCANNER

pytestmark = pytest.mark.django_db

ready_site = test_receive.ready_site  # the same fixture: site 1 qualified for CT_CAP, coordinator trained


@pytest.fixture(autouse=True)
def quarantine(settings, tmp_path):
    """A quarantine store of this test's own, so 'nothing half-stored' can be checked file by file."""
    root = tmp_path / "quarantine"
    settings.STORAGES = {**settings.STORAGES, "quarantine": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}}}
    return root


def _stored(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


@pytest.fixture
def coordinator(client, coordinator_site1):
    client.force_login(coordinator_site1)
    return client


def _choices(ready, site, **extra) -> dict:
    return {"site": site.pk, "kind": "subject", "subject": ready["subject"].pk, "visit": ready["baseline"].pk,
            "procedure": "CT_CAP", **extra}


def _open(client, ready, site, **extra) -> Submission:
    response = client.post("/upload/", _choices(ready, site, **extra))
    assert response.status_code == 302, response.content.decode()[:2000]
    return Submission.objects.get(pk=int(response.url.strip("/").rsplit("/", 1)[-1]))


def _send(client, submission, name: str, body: bytes | Path, **headers) -> tuple[int, list[dict]]:
    """POST one file as the browser does; (status, JSON lines of the answer)."""
    data = body.read_bytes() if isinstance(body, Path) else body
    response = client.post(f"/upload/{submission.pk}/files/", data=data, content_type="application/octet-stream",
                           headers={"X-File-Name": quote(name), **headers})
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, [json.loads(line) for line in content.splitlines() if line.strip()]


def _outcomes(lines: list[dict]) -> list[tuple[str, str]]:
    assert lines[-1] == {"done": True}
    return [(line["file"], line["outcome"]) for line in lines[:-1]]


def _zip(path: Path, members: dict[str, bytes | Path]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data.read_bytes() if isinstance(data, Path) else data)
    return path


def _study(tmp_path, count=3, **kwargs) -> list[Path]:
    return make_study(tmp_path / "study", patient_id="MRN-1001", scanner=SCANNER, count=count, **kwargs)


# -- the form -----------------------------------------------------------------------------------------------

def test_the_form_offers_only_the_sites_subjects_and_narrows_as_choices_are_made(
        coordinator, site1, site2, coordinator_site2, ready_site):
    subject_enroll(actor=coordinator_site2, site=site2, code="102-0001", patient_id="MRN-2002",
                   enrollment_date=ENROLLED)
    page = coordinator.get("/upload/").content.decode()
    assert "101-0001" in page and "102-0001" not in page
    assert 'data-upload' not in page  # no drop zone before the coordinator says what they send

    narrowed = coordinator.get("/upload/", {"site": site1.pk, "kind": "subject", "subject": ready_site["subject"].pk,
                                            "visit": ready_site["baseline"].pk}, headers={"HX-Request": "true"})
    html = narrowed.content.decode()
    assert html.lstrip().startswith('<form id="upload-start"')  # the partial, not the page
    assert "Baseline (BL)" in html and "Week 6 (W6)" in html
    assert "CT_CAP: CT chest/abdomen/pelvis" in html and "MR_BRAIN" in html
    assert "error" not in html  # narrowing is not validating


def test_opening_with_htmx_returns_the_drop_zone_and_the_submission_address(coordinator, site1, ready_site):
    response = coordinator.post("/upload/", _choices(ready_site, site1), headers={"HX-Request": "true"})
    submission = Submission.objects.get()
    html = response.content.decode()
    assert 'id="upload-area"' in html and f'data-files-url="/upload/{submission.pk}/files/"' in html
    assert response["HX-Push-Url"] == f"/upload/{submission.pk}/"
    assert (submission.channel, submission.subject, submission.visit.timepoint, submission.procedure) == (
        "web", ready_site["subject"], "BL", "CT_CAP")


def test_the_upload_gate_refuses_in_the_form(coordinator, site1, ready_site):
    response = coordinator.post("/upload/", _choices(ready_site, site1, procedure="MR_BRAIN"))
    assert response.status_code == 200
    assert "site 101 is not qualified for MR_BRAIN" in response.content.decode()
    # with htmx, the upload area comes back whole, so the next try has its target again
    response = coordinator.post("/upload/", _choices(ready_site, site1, procedure="MR_BRAIN"),
                                headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="upload-area">') and "not qualified for MR_BRAIN" in html
    assert not Submission.objects.exists()


def test_an_untrained_coordinator_is_refused_in_the_form(client, trial, site1, ready_site):
    from trials.models import Membership, Role

    untrained = UserFactory(username="newcoord")
    Membership.objects.create(user=untrained, trial=trial, role=Role.SITE_COORDINATOR, site=site1)
    client.force_login(untrained)
    response = client.post("/upload/", _choices(ready_site, site1))
    assert "has no training record" in response.content.decode()
    assert not Submission.objects.exists()


def test_a_subject_of_another_site_cannot_be_chosen(coordinator, site1, site2, coordinator_site2, ready_site):
    other = subject_enroll(actor=coordinator_site2, site=site2, code="102-0001", patient_id="MRN-2002",
                           enrollment_date=ENROLLED)
    response = coordinator.post("/upload/", _choices(ready_site, site1, subject=other.pk,
                                                     visit=other.visits.get(timepoint="BL").pk))
    assert "Select a valid choice" in response.content.decode()
    assert not Submission.objects.exists()


def test_a_site_of_another_coordinator_cannot_be_chosen(client, site1, coordinator_site2, ready_site):
    client.force_login(coordinator_site2)
    response = client.post("/upload/", _choices(ready_site, site1))
    assert "Select a valid choice" in response.content.decode()
    assert not Submission.objects.exists()


def test_subject_scans_need_subject_visit_and_procedure(coordinator, site1, ready_site):
    response = coordinator.post("/upload/", {"site": site1.pk, "kind": "subject"})
    html = response.content.decode()
    assert "choose the subject these scans belong to" in html and "choose the procedure" in html
    assert not Submission.objects.exists()


# -- files --------------------------------------------------------------------------------------------------

def test_files_are_filed_one_request_each_and_a_resend_is_a_duplicate(
        tmp_path, coordinator, site1, ready_site, quarantine):
    submission = _open(coordinator, ready_site, site1)
    paths = _study(tmp_path)
    for path in paths:
        status, lines = _send(coordinator, submission, f"folder/{path.name}", path)
        assert status == 200 and _outcomes(lines) == [(f"folder/{path.name}", "accepted")]
    # the browser retries after a network error: the server already has the file
    status, lines = _send(coordinator, submission, f"folder/{paths[0].name}", paths[0])
    assert lines[0]["outcome"] == "duplicate" and "already received" in lines[0]["reason"]

    response = coordinator.post(f"/upload/{submission.pk}/finish/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<strong>3</strong> accepted" in html and "<strong>1</strong> duplicate" in html
    submission.refresh_from_db()
    assert submission.finished_at is not None and (submission.accepted, submission.duplicates) == (3, 1)
    assert _stored(quarantine) == 3 == Instance.objects.count()
    study = ImagingStudy.objects.get()
    assert (study.subject, study.visit.timepoint, study.procedure) == (ready_site["subject"], "BL", "CT_CAP")
    # the submission page shows the results again later
    assert "<strong>3</strong> accepted" in coordinator.get(f"/upload/{submission.pk}/").content.decode()


def test_a_zip_with_folders_is_unpacked_member_by_member(tmp_path, coordinator, site1, ready_site, quarantine):
    submission = _open(coordinator, ready_site, site1)
    paths = _study(tmp_path)
    archive = _zip(tmp_path / "export.zip", {f"DICOM/S1/{p.name}": p for p in paths})
    status, lines = _send(coordinator, submission, "export.zip", archive)
    assert status == 200
    assert _outcomes(lines) == [(f"export.zip/DICOM/S1/{p.name}", "accepted") for p in paths]
    assert _stored(quarantine) == 3 == Instance.objects.count()


def test_a_zip_without_its_extension_is_still_unpacked(tmp_path, coordinator, site1, ready_site):
    submission = _open(coordinator, ready_site, site1)
    archive = _zip(tmp_path / "export", {p.name: p for p in _study(tmp_path, count=2)})
    _, lines = _send(coordinator, submission, "export", archive)
    assert [o for _, o in _outcomes(lines)] == ["accepted", "accepted"]


def _damaged(tmp_path, how: str) -> tuple[str, bytes]:
    path = _study(tmp_path, count=1)[0]
    if how == "not dicom":
        return "notes.txt", b"minutes of the site initiation visit"
    if how == "truncated":
        return "IM0001.dcm", path.read_bytes()[:-2000]
    ds = pydicom.dcmread(path)
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return "IM0001.dcm", buffer.getvalue()


@pytest.mark.parametrize(("how", "reason"), [
    ("not dicom", "not a DICOM file"),
    ("truncated", "truncated"),
    ("no pixels", "no pixel data, but CT Image Storage requires it"),
])
@pytest.mark.parametrize("in_zip", [False, True], ids=["file", "zip member"])
def test_bad_files_are_refused_with_their_reason_and_nothing_is_stored(
        tmp_path, coordinator, site1, ready_site, quarantine, how, reason, in_zip):
    submission = _open(coordinator, ready_site, site1)
    name, data = _damaged(tmp_path, how)
    if in_zip:
        _, lines = _send(coordinator, submission, "export.zip", _zip(tmp_path / "export.zip", {name: data}))
        name = f"export.zip/{name}"
    else:
        _, lines = _send(coordinator, submission, name, data)
    assert _outcomes(lines) == [(name, "rejected")] and reason in lines[0]["reason"]
    assert _stored(quarantine) == 0 and not Instance.objects.exists() and not ImagingStudy.objects.exists()
    submission.refresh_from_db()
    assert submission.rejected == 1 and submission.results[0]["reason"] == lines[0]["reason"]


@pytest.mark.parametrize(("members", "reason"), [
    ({"../../evil.dcm": b"x"}, "unsafe path in the archive"),
    ({"/etc/evil.dcm": b"x"}, "unsafe path in the archive"),
    ({"inner.zip": b"PK\x03\x04nested"}, "nested archive (zip)"),
    ({"disguised.dcm": b"PK\x03\x04nested"}, "nested archive (zip)"),
    ({"zeros.dcm": bytes(8 << 20)}, "compression ratio"),
])
def test_unsafe_archive_members_are_refused_and_the_rest_is_filed(
        tmp_path, coordinator, site1, ready_site, quarantine, members, reason):
    submission = _open(coordinator, ready_site, site1)
    good = _study(tmp_path, count=1)[0]
    archive = _zip(tmp_path / "export.zip", {**members, good.name: good})
    _, lines = _send(coordinator, submission, "export.zip", archive)
    assert [o for _, o in _outcomes(lines)] == ["rejected", "accepted"]
    assert reason in lines[0]["reason"]
    assert _stored(quarantine) == 1 and not (tmp_path / "evil.dcm").exists()


def test_an_archive_over_the_unpacked_size_limit_is_refused_whole(
        tmp_path, coordinator, site1, ready_site, quarantine, settings):
    settings.INTAKE_MAX_ARCHIVE_BYTES = 100_000
    submission = _open(coordinator, ready_site, site1)
    path = _study(tmp_path, count=1)[0]
    # packed, it fits the limit; unpacked, the padding takes it over
    archive = _zip(tmp_path / "export.zip", {path.name: path, "padding.dcm": bytes(200_000)})
    assert archive.stat().st_size < 100_000
    _, lines = _send(coordinator, submission, "export.zip", archive)
    assert _outcomes(lines) == [("export.zip", "rejected")]
    assert "archive refused: the archive unpacks to" in lines[0]["reason"]
    assert _stored(quarantine) == 0 and not Instance.objects.exists()


def test_an_archive_with_too_many_members_is_refused_whole(tmp_path, coordinator, site1, ready_site, settings):
    settings.INTAKE_MAX_ARCHIVE_MEMBERS = 2
    submission = _open(coordinator, ready_site, site1)
    paths = _study(tmp_path, count=3)
    _, lines = _send(coordinator, submission, "export.zip", _zip(tmp_path / "export.zip", {p.name: p for p in paths}))
    assert "holds 3 entries; the limit is 2" in lines[0]["reason"] and not Instance.objects.exists()


def test_other_archive_formats_are_refused_with_a_hint(tmp_path, coordinator, site1, ready_site):
    submission = _open(coordinator, ready_site, site1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        path = _study(tmp_path, count=1)[0]
        tar.add(path, arcname=path.name)
    _, lines = _send(coordinator, submission, "export.tar.gz", buffer.getvalue())
    assert lines[0]["outcome"] == "rejected" and "only .zip archives are unpacked" in lines[0]["reason"]


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(
        tmp_path, coordinator, site1, ready_site, settings, quarantine):
    settings.INTAKE_MAX_FILE_BYTES = 10_000
    submission = _open(coordinator, ready_site, site1)
    path = _study(tmp_path, count=1)[0]
    status, lines = _send(coordinator, submission, path.name, path)
    assert status == 413 and "files over 9.8 KB are refused" in lines[0]["reason"]
    # the browser announces a file it knows is too large instead of sending it
    status, lines = _send(coordinator, submission, "huge.dcm", b"", **{"X-File-Size": str(3 * 1024**3)})
    assert status == 413 and lines[0]["reason"] == "the file is 3.0 GB; files over 9.8 KB are refused"
    submission.refresh_from_db()
    assert submission.rejected == 2 and _stored(quarantine) == 0


def test_a_zip_member_over_the_size_limit_is_refused(tmp_path, coordinator, site1, ready_site, settings):
    paths = _study(tmp_path, count=1)
    settings.INTAKE_MAX_FILE_BYTES = paths[0].stat().st_size - 1
    submission = _open(coordinator, ready_site, site1)
    _, lines = _send(coordinator, submission, "export.zip", _zip(tmp_path / "export.zip", {"a.dcm": paths[0]}))
    assert lines[0]["outcome"] == "rejected" and "are refused" in lines[0]["reason"]


def test_a_patient_of_another_site_is_refused(tmp_path, coordinator, site1, site2, coordinator_site2, ready_site):
    subject_enroll(actor=coordinator_site2, site=site2, code="102-0001", patient_id="MRN-2002",
                   enrollment_date=ENROLLED)
    submission = _open(coordinator, ready_site, site1)
    path = make_study(tmp_path, patient_id="MRN-2002", scanner=SCANNER, count=1)[0]
    _, lines = _send(coordinator, submission, path.name, path)
    assert lines[0]["outcome"] == "rejected" and "subject of another site" in lines[0]["reason"]
    assert not Instance.objects.exists()


def test_a_study_spanning_two_patient_ids_is_refused(tmp_path, coordinator, site1, ready_site):
    submission = _open(coordinator, ready_site, site1)
    first = _study(tmp_path, count=1)[0]
    other = make_study(tmp_path / "b", patient_id="MRN-9999", scanner=SCANNER, count=1,
                       study_uid=pydicom.dcmread(first).StudyInstanceUID)[0]
    _, lines = _send(coordinator, submission, "export.zip", _zip(tmp_path / "x.zip", {"a.dcm": first, "b.dcm": other}))
    assert [o for _, o in _outcomes(lines)] == ["accepted", "rejected"]
    assert "two Patient IDs" in lines[1]["reason"]


def test_folder_metadata_and_empty_files_get_their_own_reasons(tmp_path, coordinator, site1, ready_site):
    submission = _open(coordinator, ready_site, site1)
    _, lines = _send(coordinator, submission, "CD/DICOMDIR", b"\0" * 200)
    assert "DICOMDIR" in lines[0]["reason"]
    _, lines = _send(coordinator, submission, "empty.dcm", b"")
    assert lines[0]["reason"] == "the file is empty (0 bytes)"
    _, lines = _send(coordinator, submission, "x.zip", _zip(tmp_path / "x.zip", {"__MACOSX/._a": b"\0\5\26\7"}))
    assert "macOS metadata" in lines[0]["reason"]


def test_an_interrupted_body_is_not_filed_and_not_counted(tmp_path, coordinator, site1, ready_site):
    submission = _open(coordinator, ready_site, site1)
    path = _study(tmp_path, count=1)[0]
    data = path.read_bytes()
    # the connection drops after 5,000 bytes of a body announced as longer
    response = coordinator.generic("POST", f"/upload/{submission.pk}/files/", data,
                                   content_type="application/octet-stream", headers={"X-File-Name": "a.dcm"},
                                   **{"wsgi.input": io.BytesIO(data[:5000])})
    assert response.status_code == 400 and "interrupted" in response.json()["detail"]
    submission.refresh_from_db()
    assert submission.results == [] and not Instance.objects.exists()


def test_only_raw_bodies_are_taken(tmp_path, coordinator, site1, ready_site):
    submission = _open(coordinator, ready_site, site1)
    response = coordinator.post(f"/upload/{submission.pk}/files/", {"file": io.BytesIO(b"x")})
    assert response.status_code == 415


# -- finishing ----------------------------------------------------------------------------------------------

def test_finishing_an_empty_upload_says_so_and_keeps_it_open(coordinator, site1, ready_site):
    submission = _open(coordinator, ready_site, site1)
    response = coordinator.post(f"/upload/{submission.pk}/finish/", headers={"HX-Request": "true"})
    assert "No file has arrived yet" in response.content.decode() and "data-upload" in response.content.decode()
    submission.refresh_from_db()
    assert submission.finished_at is None


def test_a_finished_upload_takes_no_more_files(tmp_path, coordinator, site1, ready_site):
    submission = _open(coordinator, ready_site, site1)
    paths = _study(tmp_path, count=2)
    _send(coordinator, submission, paths[0].name, paths[0])
    coordinator.post(f"/upload/{submission.pk}/finish/")
    status, lines = _send(coordinator, submission, paths[1].name, paths[1])
    assert status == 409 and "start a new upload" in lines[0]["detail"]
    assert Instance.objects.count() == 1


def test_the_results_list_rejections_with_their_reasons(tmp_path, coordinator, site1, ready_site):
    submission = _open(coordinator, ready_site, site1)
    path = _study(tmp_path, count=1)[0]
    _send(coordinator, submission, path.name, path)
    _send(coordinator, submission, "notes.txt", b"not an image")
    html = coordinator.post(f"/upload/{submission.pk}/finish/").content.decode()
    assert "<strong>1</strong> accepted" in html and "<strong>1</strong> rejected" in html
    assert "notes.txt</td><td>not a DICOM file" in html
    assert "101-0001 · Baseline · CT_CAP" in html


def test_a_qualification_scan_skips_the_upload_gate_and_submits_the_qualification(
        tmp_path, coordinator, site1, coordinator_site1, ready_site):
    mr = ScannerFactory(site=site1, modality="MR", manufacturer="GE", model="SIGNA", serial="MR1")
    qualification = qualification_request(actor=coordinator_site1, site=site1, scanner=mr, procedure="MR_BRAIN")
    response = coordinator.post("/upload/", {"site": site1.pk, "kind": "qualification",
                                             "qualification": qualification.pk})
    assert response.status_code == 302
    submission = Submission.objects.get()
    paths = make_study(tmp_path, patient_id="PHANTOM", modality="MR", count=2, body_part="HEAD")
    for path in paths:
        _send(coordinator, submission, path.name, path)
    coordinator.post(f"/upload/{submission.pk}/finish/")
    qualification.refresh_from_db()
    assert qualification.status == SiteQualification.Status.SUBMITTED
    assert ImagingStudy.objects.get().qualification == qualification


# -- who may do what ----------------------------------------------------------------------------------------

def test_users_of_another_site_and_outsiders_get_404(tmp_path, client, site1, coordinator_site1, coordinator_site2,
                                                     outsider, ready_site):
    client.force_login(coordinator_site1)
    submission = _open(client, ready_site, site1)
    path = _study(tmp_path, count=1)[0]
    for user in (coordinator_site2, outsider):
        client.force_login(user)
        assert client.get(f"/upload/{submission.pk}/").status_code == 404
        status, _ = _send(client, submission, path.name, path)
        assert status == 404
        assert client.post(f"/upload/{submission.pk}/finish/").status_code == 404
    assert not Instance.objects.exists()
    submission.refresh_from_db()
    assert submission.results == [] and submission.finished_at is None


def test_only_the_submitting_coordinator_sends_but_colleagues_and_managers_see(
        tmp_path, client, trial, site1, coordinator_site1, trial_manager, ready_site):
    from trials.models import Membership, Role

    colleague = UserFactory(username="coord1b")
    Membership.objects.create(user=colleague, trial=trial, role=Role.SITE_COORDINATOR, site=site1)
    client.force_login(coordinator_site1)
    submission = _open(client, ready_site, site1)
    path = _study(tmp_path, count=1)[0]
    for user in (colleague, trial_manager):
        client.force_login(user)
        page = client.get(f"/upload/{submission.pk}/")
        assert page.status_code == 200 and "data-upload" not in page.content.decode()
        assert _send(client, submission, path.name, path)[0] == 404


def test_signed_out_scripts_get_401_not_a_login_page(tmp_path, client, site1, coordinator_site1, ready_site):
    client.force_login(coordinator_site1)
    submission = _open(client, ready_site, site1)
    client.logout()
    status, lines = _send(client, submission, "a.dcm", b"x")
    assert status == 401 and "sign in again" in lines[0]["detail"]
    assert client.get("/upload/").status_code == 302


def test_the_page_is_for_coordinators(client, trial_manager):
    client.force_login(trial_manager)
    assert "you coordinate no site" in client.get("/upload/").content.decode()


def test_acquisition_dates_do_not_matter_when_the_visit_is_declared(tmp_path, coordinator, site1, ready_site):
    submission = _open(coordinator, ready_site, site1, visit=ready_site["week6"].pk)
    path = _study(tmp_path, count=1, date=datetime.date(2025, 1, 1))[0]
    _, lines = _send(coordinator, submission, path.name, path)
    assert lines[0]["outcome"] == "accepted"
    assert ImagingStudy.objects.get().visit == ready_site["week6"]
