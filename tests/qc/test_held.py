"""QC review of files de-identification held for burned-in text: the study page lists them, the review page
shows the de-identified output (never the raw file) with OCR's boxes, and release / reject go through
deid's services. Real intake, Tesseract, quarantine and archive."""

import io
import re

import numpy as np
import pydicom
import pytest
from django.core.files.storage import storages
from PIL import Image

from audit.models import AuditEvent
from deid.models import DeidRecord
from deid.services import profile_create_version
from intake.models import ImagingStudy, Instance

from ..deid.burned_in import COLUMNS, ROWS, burned_in_study
from .conftest import deidentify, upload

pytestmark = pytest.mark.django_db
# blanked by the profile below: the review image must show it black, the raw file has noise there
CORNER = {"manufacturer": "SIEMENS", "model": "SOMATOM Force", "boxes": [[0, 100, 40, 60]]}


@pytest.fixture
def held(tmp_path, ready_site, trial, trial_manager) -> DeidRecord:
    profile_create_version(actor=trial_manager, trial=trial, options=["clean_pixel_data", "clean_descriptors",
                                                                     "retain_device_identity"],
                           pixel_regions=[CORNER], note="corner logo")
    study = deidentify(upload(ready_site, burned_in_study(tmp_path / "sc")))
    record = DeidRecord.objects.select_related("instance__study").get(instance__study=study)
    assert record.outcome == "held" and record.text_boxes
    return record


def test_the_study_page_lists_the_held_file_for_review(client, qc_analyst, held):
    client.force_login(qc_analyst)
    page = client.get(f"/qc/studies/{held.instance.study_id}/").content.decode()
    assert 'id="qc-held"' in page and f'href="/qc/held/{held.pk}/"' in page


def test_the_queue_lists_studies_waiting_on_held_files_until_they_are_reviewed(client, qc_analyst, held):
    client.force_login(qc_analyst)
    row = f'id="qc-held-study-{held.instance.study_id}"'
    assert row in client.get("/qc/").content.decode()

    client.post(f"/qc/held/{held.pk}/reject/", {"reason": "name legible"})

    assert row not in client.get("/qc/").content.decode()


def test_the_review_page_draws_every_ocr_box_over_the_output(client, qc_analyst, held):
    client.force_login(qc_analyst)
    response = client.get(f"/qc/held/{held.pk}/")

    assert response.status_code == 200
    page = response.content.decode()
    assert f'viewBox="0 0 {COLUMNS} {ROWS}"' in page
    rects = re.findall(r'<rect class="held-box" x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)"', page)
    assert sorted(tuple(map(int, r)) for r in rects) == sorted(
        (b["x"], b["y"], b["width"], b["height"]) for b in held.text_boxes)
    assert f"/qc/held/{held.pk}/frames/0.png" in page
    assert held.instance.raw_key not in page
    # the burned-in name as a word of its own: a random CSRF token may hold the letters D, O, E
    assert not re.search(r"(?<![A-Z0-9])DOE(?![A-Z0-9])", page.upper())


def test_the_review_image_is_the_deidentified_output_not_the_raw_file(client, qc_analyst, held):
    client.force_login(qc_analyst)
    response = client.get(f"/qc/held/{held.pk}/frames/0.png")

    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert "no-store" in response["Cache-Control"]
    image = np.asarray(Image.open(io.BytesIO(response.content)))
    assert image.shape == (ROWS, COLUMNS)
    assert not image[100:, :40].any() and image[:100, 40:].any()  # the blanked corner, as the output has it
    raw = pydicom.dcmread(storages["quarantine"].open(held.instance.raw_key)).pixel_array
    assert raw[100:, :40].any()  # ... while the original still has its noise there
    assert client.get(f"/qc/held/{held.pk}/frames/3.png").status_code == 404  # one frame only


def test_release_from_the_page_needs_a_reason_then_archives_the_file(client, qc_analyst, held):
    client.force_login(qc_analyst)
    url = f"/qc/held/{held.pk}/release/"

    refused = client.post(url, {"reason": " "})
    assert refused.status_code == 400 and "give a reason" in refused.content.decode()
    assert DeidRecord.objects.get(pk=held.pk).outcome == "held"

    done = client.post(url, {"reason": "only the scanner's test label"})
    assert done.status_code == 302 and done["Location"] == f"/qc/studies/{held.instance.study_id}/#qc-held"
    record = DeidRecord.objects.get(pk=held.pk)
    assert (record.outcome, record.output_storage) == ("released", "archive")
    assert storages["archive"].exists(record.output_key)
    assert Instance.objects.get(pk=held.instance_id).status == Instance.Status.DEIDENTIFIED
    assert ImagingStudy.objects.get(pk=held.instance.study_id).status == ImagingStudy.Status.DEIDENTIFIED
    assert AuditEvent.objects.filter(action="deid.held_released", actor=qc_analyst).count() == 1
    # released like any other file: the study page's series thumbnail now comes from the archived output
    thumbnail = client.get(f"/qc/studies/{held.instance.study_id}/series/{held.instance.series_id}/thumbnail.png")
    assert thumbnail.status_code == 200 and np.asarray(Image.open(io.BytesIO(thumbnail.content))).any()
    # decided: the page says so and offers no form; a second release is a conflict
    page = client.get(f"/qc/held/{held.pk}/").content.decode()
    assert "only the scanner&#x27;s test label" in page and url not in page and 'name="reason"' not in page
    assert client.post(url, {"reason": "again"}).status_code == 409


def test_reject_from_the_page_keeps_the_file_out(client, qc_analyst, held, stores):
    client.force_login(qc_analyst)
    response = client.post(f"/qc/held/{held.pk}/reject/", {"reason": "name legible"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 204
    assert response["HX-Redirect"].endswith(f"/qc/studies/{held.instance.study_id}/#qc-held")
    assert DeidRecord.objects.get(pk=held.pk).outcome == "rejected"
    assert not [p for p in stores["archive"].rglob("*") if p.is_file()]


@pytest.mark.parametrize("who", ["coordinator_site1", "outsider", "reader1", "sponsor"])
def test_only_qc_reviewers_reach_held_files(client, request, held, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/qc/held/{held.pk}/").status_code == 404
    assert client.get(f"/qc/held/{held.pk}/frames/0.png").status_code == 404
    assert client.post(f"/qc/held/{held.pk}/release/", {"reason": "fine"}).status_code == 404
    assert client.post(f"/qc/held/{held.pk}/reject/", {"reason": "no"}).status_code == 404
    assert DeidRecord.objects.get(pk=held.pk).outcome == "held"
