"""The profiles API: trial managers list and create versions; everyone else gets 404."""

import pytest

from audit.models import AuditEvent
from deid.models import DeidProfile

pytestmark = pytest.mark.django_db


def test_a_manager_lists_and_creates_profile_versions(client, trial, trial_manager):
    client.force_login(trial_manager)
    url = f"/api/deid/trials/{trial.pk}/profiles/"

    listed = client.get(url)
    assert listed.status_code == 200 and [p["version"] for p in listed.json()] == [1]

    created = client.post(url, {"options": ["retain_safe_private", "clean_descriptors"],
                                "safe_private": [["SIEMENS CSA HEADER", "0x10"]], "purge_raw_after_days": 0,
                                "note": "keep the CSA header"}, content_type="application/json")

    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["version"], body["options"], body["safe_private"]) == (
        2, ["clean_descriptors", "retain_safe_private"], [["SIEMENS CSA HEADER", 16]])
    assert body["created_by"] == trial_manager.username
    assert AuditEvent.objects.filter(action="deid.profile_version_created", actor=trial_manager).count() == 1
    assert [p["version"] for p in client.get(url).json()] == [2, 1]


def test_a_bad_profile_is_refused_with_the_reason(client, trial, trial_manager):
    client.force_login(trial_manager)
    url = f"/api/deid/trials/{trial.pk}/profiles/"
    unknown = client.post(url, {"options": ["retain_all"]}, content_type="application/json")
    regions = client.post(url, {"pixel_regions": [{"boxes": [[0, 0, 10, 10]]}]}, content_type="application/json")
    assert unknown.status_code == 400 and "options" in unknown.json()
    assert regions.status_code == 400 and "clean_pixel_data" in regions.json()["detail"]
    assert not DeidProfile.objects.filter(version__gt=1).exists()


@pytest.mark.parametrize("who", ["outsider", "coordinator_site1", "qc_analyst", "auditor"])
def test_others_get_404_on_profiles(client, request, trial, who):
    client.force_login(request.getfixturevalue(who))
    url = f"/api/deid/trials/{trial.pk}/profiles/"
    assert client.get(url).status_code == 404
    assert client.post(url, {"options": []}, content_type="application/json").status_code == 404
    assert not DeidProfile.objects.exists()


def test_the_api_sets_and_shows_burned_in_text_review(client, trial, trial_manager):
    client.force_login(trial_manager)
    url = f"/api/deid/trials/{trial.pk}/profiles/"

    created = client.post(url, {"ocr_text_review": False, "note": "regions only"}, content_type="application/json")
    kept = client.post(url, {"note": "same OCR settings"}, content_type="application/json")
    bad = client.post(url, {"ocr_min_confidence": -1}, content_type="application/json")

    assert created.status_code == kept.status_code == 201
    assert (created.json()["ocr_text_review"], created.json()["ocr_min_confidence"]) == (False, 70)
    assert kept.json()["ocr_text_review"] is False  # left out: as the current version
    assert bad.status_code == 400 and "ocr_min_confidence" in bad.json()
