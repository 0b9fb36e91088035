"""The reads REST API: worklist, task, draft, sign (readers); adjudication view and resolve (adjudicators)."""

import pytest
from rest_framework.test import APIClient

from audit.models import ElectronicSignature
from reads.blinding import reading_id
from reads.models import Adjudication, BicrResult, Read

from .conftest import BASELINE, PASSWORD, followup, read_and_sign, task_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def subject(reading, enroll, accept):
    subject = enroll("101-0001")
    for timepoint in ("BL", "W6"):
        accept(subject, timepoint)
    return subject


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_worklist_gives_the_readers_tasks_with_locking(reader1, reading, subject):
    response = api_for(reader1).get(f"/api/reads/trials/{reading.trial.pk}/worklist/")

    assert response.status_code == 200
    rows = {r["timepoint"]: r for r in response.json()}
    assert set(rows) == {"BL", "W6"} and rows["BL"]["reading_id"] == reading_id(subject=subject)
    assert rows["BL"]["locked"] is False and rows["W6"]["locked"] is True
    assert "Baseline" in rows["W6"]["lock_reason"]


def test_draft_then_sign_through_the_api(reader1, subject):
    api = api_for(reader1)
    task = task_of(subject, "BL", "A")

    response = api.post(f"/api/reads/tasks/{task.pk}/draft/", {"lesions": BASELINE}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "in_progress" and response.json()["current"]["status"] == "draft"

    response = api.post(f"/api/reads/tasks/{task.pk}/sign/", {"password": "wrong"}, format="json")
    assert response.status_code == 400 and "password did not match" in response.json()["password"][0]
    assert not ElectronicSignature.objects.exists()

    response = api.post(f"/api/reads/tasks/{task.pk}/sign/", {"password": PASSWORD}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "signed" and body["current"]["status"] == "signed" and body["is_baseline"] is True

    response = api.post(f"/api/reads/tasks/{task.pk}/draft/", {"lesions": BASELINE}, format="json")
    assert response.status_code == 409 and "signed and locked" in response.json()["detail"]


def test_a_followup_task_is_refused_until_the_baseline_is_signed(reader1, subject):
    api = api_for(reader1)
    w6 = task_of(subject, "W6", "A")
    response = api.get(f"/api/reads/tasks/{w6.pk}/")
    assert response.status_code == 409 and "Baseline" in response.json()["detail"]
    response = api.post(f"/api/reads/tasks/{w6.pk}/draft/", {"lesions": followup(18, 12)}, format="json")
    assert response.status_code == 409
    assert not Read.objects.exists()


@pytest.mark.parametrize("lesions", [
    "not an object",
    {"targets": "T1"},
    {"targets": [{"id": "T1", "organ": "LIVER", "nodal": False, "mm": 30}], "non_targets": []},  # no modality
    {"targets": [{"id": "T1", "organ": "LIVER", "nodal": False, "mm": 3, "modality": "CT",
                  "slice_thickness_mm": 5}], "non_targets": []},  # not measurable
])
def test_bad_lesions_get_a_clear_4xx_and_sign_nothing(reader1, subject, lesions):
    api = api_for(reader1)
    task = task_of(subject, "BL", "A")
    draft = api.post(f"/api/reads/tasks/{task.pk}/draft/", {"lesions": lesions}, format="json")
    if draft.status_code == 200:
        response = api.post(f"/api/reads/tasks/{task.pk}/sign/", {"password": PASSWORD}, format="json")
    else:
        response = draft
    assert response.status_code == 400, response.content
    assert response.json()
    assert not Read.objects.filter(status=Read.Status.SIGNED).exists()


def test_the_task_shows_only_the_readers_own_work(reader1, reader2, subject):
    read_and_sign(subject, "BL", "A", BASELINE)
    read_and_sign(subject, "BL", "B", {**BASELINE, "targets": [{**BASELINE["targets"][0], "mm": 41.5},
                                                               BASELINE["targets"][1]]})
    body = api_for(reader1).get(f"/api/reads/tasks/{task_of(subject, 'BL', 'A').pk}/").content.decode()
    assert "41.5" not in body and "reader2" not in body


@pytest.mark.parametrize("who", ["reader2", "adjudicator", "trial_manager", "coordinator_site1", "sponsor",
                                 "outsider"])
def test_other_people_get_404_on_a_readers_task(request, subject, reading, who):
    api = api_for(request.getfixturevalue(who))
    task = task_of(subject, "BL", "A")
    assert api.get(f"/api/reads/tasks/{task.pk}/").status_code == 404
    assert api.post(f"/api/reads/tasks/{task.pk}/draft/", {"lesions": BASELINE}, format="json").status_code == 404
    assert api.post(f"/api/reads/tasks/{task.pk}/sign/", {"password": PASSWORD}, format="json").status_code == 404
    if who not in ("reader2",):
        assert api.get(f"/api/reads/trials/{reading.trial.pk}/worklist/").status_code == 404


def test_unauthenticated_requests_are_refused(subject):
    assert APIClient().get(f"/api/reads/tasks/{task_of(subject, 'BL', 'A').pk}/").status_code in (401, 403)


@pytest.fixture
def disagreement(subject):
    read_and_sign(subject, "BL", "A", BASELINE)
    read_and_sign(subject, "BL", "B", BASELINE)
    read_and_sign(subject, "W6", "A", followup(18, 12))
    read_and_sign(subject, "W6", "B", followup(18, 12, new_lesions="YES"))
    return Adjudication.objects.get(subject=subject, status=Adjudication.Status.OPEN)


def test_the_adjudicator_views_and_resolves(adjudicator, reading, disagreement, subject):
    api = api_for(adjudicator)
    [row] = api.get(f"/api/reads/trials/{reading.trial.pk}/adjudications/").json()
    assert row["adjudication_id"] == disagreement.pk and row["status"] == "open"
    body = api.get(f"/api/reads/adjudications/{disagreement.pk}/").json()
    assert [r["timepoint"] for r in body["reads"]["B"]] == ["BL", "W6"]
    assert body["reads"]["B"][1]["read"]["overall"] == "PD" and body["reads"]["A"][1]["read"]["overall"] == "PR"
    assert "reader1" not in str(body) and "reader2" not in str(body)

    url = f"/api/reads/adjudications/{disagreement.pk}/resolve/"
    assert api.post(url, {"selected": "C", "rationale": "x", "password": PASSWORD}, format="json").status_code == 400
    response = api.post(url, {"selected": "B", "rationale": "real lesion", "password": "no"}, format="json")
    assert response.status_code == 400 and "password" in response.json()
    response = api.post(url, {"selected": "B", "rationale": "real lesion", "password": PASSWORD}, format="json")
    assert response.status_code == 200 and response.json()["selected"] == "B"
    assert BicrResult.objects.get(subject=subject, visit__timepoint="W6").overall == "PD"
    response = api.post(url, {"selected": "A", "rationale": "again", "password": PASSWORD}, format="json")
    assert response.status_code == 409


@pytest.mark.parametrize("who", ["reader1", "reader2", "trial_manager", "sponsor", "outsider"])
def test_only_the_assigned_adjudicator_reaches_the_adjudication_api(request, disagreement, who):
    api = api_for(request.getfixturevalue(who))
    assert api.get(f"/api/reads/adjudications/{disagreement.pk}/").status_code == 404
    assert api.post(f"/api/reads/adjudications/{disagreement.pk}/resolve/",
                    {"selected": "A", "rationale": "x", "password": PASSWORD}, format="json").status_code == 404


def test_the_schema_documents_the_reads_endpoints(client, trial_manager):
    client.force_login(trial_manager)
    schema = client.get("/api/schema/?format=json").json()
    assert {"/api/reads/tasks/{task_id}/sign/", "/api/reads/adjudications/{adj_id}/resolve/",
            "/api/reads/trials/{trial_id}/worklist/"} <= set(schema["paths"])
