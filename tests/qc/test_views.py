"""The QC queue and study page, and the API: who sees what, results, thumbnails, decisions."""

import pytest
from django.core.management import call_command
from PIL import Image

from intake.models import ImagingStudy
from qc.services import qc_run
from trials.models import SiteNotice

pytestmark = pytest.mark.django_db
S = ImagingStudy.Status


@pytest.fixture
def pending(make_study):
    def make(**options):
        study = make_study(**{"count": 5, **options})
        qc_run(study_id=study.pk, trigger="deidentified")
        study.refresh_from_db()
        return study
    return make


def test_the_queue_lists_pending_studies_oldest_first_with_their_failures(client, qc_analyst, pending):
    older = pending(folder="a", skip=(2,), count=6)
    newer = pending(folder="b")
    client.force_login(qc_analyst)

    page = client.get("/qc/")

    assert page.status_code == 200
    html = page.content.decode()
    assert html.index(f"qc-study-{older.pk}") < html.index(f"qc-study-{newer.pk}")
    assert "1 failed" in html and "all passed" in html
    assert 'href="/qc/"' in html  # the navigation entry
    only_failed = client.get("/qc/?failed=1").content.decode()
    assert f"qc-study-{older.pk}" in only_failed and f"qc-study-{newer.pk}" not in only_failed
    assert f"qc-study-{newer.pk}" not in client.get(f"/qc/?site={older.site_id + 1000}").content.decode()
    # htmx filters get the table alone
    partial = client.get("/qc/?procedure=CT_CAP", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<table id="qc-queue"') and f"qc-study-{newer.pk}" in partial


@pytest.mark.parametrize("who", ["coordinator_site1", "reader1", "sponsor", "outsider"])
def test_others_get_404_and_no_navigation_entry(client, request, who, pending):
    study = pending()
    client.force_login(request.getfixturevalue(who))
    assert client.get("/qc/").status_code == 404
    assert client.get(f"/qc/studies/{study.pk}/").status_code == 404
    series = study.series.get()
    assert client.get(f"/qc/studies/{study.pk}/series/{series.pk}/thumbnail.png").status_code == 404
    assert client.post(f"/qc/studies/{study.pk}/accept/").status_code == 404
    assert client.post(f"/qc/studies/{study.pk}/reject/", {"reason": "x"}).status_code == 404
    assert 'href="/qc/"' not in client.get("/").content.decode()
    for path in ("/api/qc/queue/", f"/api/qc/studies/{study.pk}/"):
        assert client.get(path).status_code == 404
    assert client.post(f"/api/qc/studies/{study.pk}/accept/").status_code == 404
    assert ImagingStudy.objects.get(pk=study.pk).status == S.QC_PENDING


def test_the_study_page_shows_results_metadata_and_a_thumbnail(client, qc_analyst, pending):
    study = pending(count=6, skip=(3,))
    client.force_login(qc_analyst)

    html = client.get(f"/qc/studies/{study.pk}/").content.decode()

    assert 'data-rule="missing_slices"' in html and "1 missing slice(s)" in html
    assert "≤ 5.0 mm" in html and "charter version 1.0" in html
    assert "Metadata the checks used" in html and "SOMATOM Force" in html
    assert "Raise a query to site 101" in html  # the query form (tests/qc/test_queries.py)
    series = study.series.get()
    src = f"/qc/studies/{study.pk}/series/{series.pk}/thumbnail.png"
    assert src in html
    png = client.get(src)
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    import io
    image = Image.open(io.BytesIO(png.content))
    assert image.format == "PNG" and max(image.size) <= 256 and image.getextrema()[1] > 0


def test_accepting_from_the_page(client, qc_analyst, pending):
    study = pending()
    client.force_login(qc_analyst)
    response = client.post(f"/qc/studies/{study.pk}/accept/", {"note": "ok"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Redirect"].endswith(f"/qc/?accepted={study.pk}")
    assert ImagingStudy.objects.get(pk=study.pk).status == S.ACCEPTED
    page = client.get(f"/qc/studies/{study.pk}/").content.decode()
    assert "Accepted</strong> by qc" in page and "Raise query" not in page
    again = client.post(f"/qc/studies/{study.pk}/accept/", HTTP_HX_REQUEST="true").content.decode()
    assert "already accepted by qc" in again


def test_rejecting_from_the_page_needs_a_reason(client, qc_analyst, pending):
    study = pending()
    client.force_login(qc_analyst)
    refused = client.post(f"/qc/studies/{study.pk}/reject/", {"reason": ""}, HTTP_HX_REQUEST="true")
    assert "say why" in refused.content.decode()
    assert ImagingStudy.objects.get(pk=study.pk).status == S.QC_PENDING
    done = client.post(f"/qc/studies/{study.pk}/reject/", {"reason": "No contrast"})
    assert done.status_code == 302
    assert ImagingStudy.objects.get(pk=study.pk).status == S.REJECTED
    assert SiteNotice.objects.filter(site=study.site, body__contains="No contrast").exists()


def test_the_api_lists_shows_accepts_and_rejects(client, qc_analyst, pending):
    first, second = pending(folder="a"), pending(folder="b")
    client.force_login(qc_analyst)

    queue = client.get("/api/qc/queue/").json()
    assert [row["id"] for row in queue] == [first.pk, second.pk] and queue[0]["failed"] == 0
    detail = client.get(f"/api/qc/studies/{first.pk}/").json()
    assert detail["run"]["charter_version"] == "1.0"
    assert {r["rule"] for r in detail["results"]} >= {"slice_thickness", "missing_slices"}
    assert detail["decision"] is None

    accepted = client.post(f"/api/qc/studies/{second.pk}/accept/", {"note": "fine"}, content_type="application/json")
    assert accepted.status_code == 200 and accepted.json()["decision"]["decision"] == "accept"
    assert accepted.json()["study"]["status"] == "accepted"
    # the first version is superseded by the accepted second one
    assert ImagingStudy.objects.get(pk=first.pk).status == S.SUPERSEDED
    conflict = client.post(f"/api/qc/studies/{second.pk}/accept/", {}, content_type="application/json")
    assert conflict.status_code == 409 and "already accepted" in conflict.json()["detail"]
    assert client.post(f"/api/qc/studies/{second.pk}/reject/", {}, content_type="application/json").status_code == 400


def test_the_api_rejects_with_a_reason(client, qc_analyst, pending):
    study = pending()
    client.force_login(qc_analyst)
    rejected = client.post(f"/api/qc/studies/{study.pk}/reject/", {"reason": "motion"},
                           content_type="application/json")
    assert rejected.status_code == 200 and rejected.json()["decision"]["reason"] == "motion"


def test_the_openapi_schema_lists_the_qc_endpoints_and_validates(client, qc_analyst, tmp_path):
    client.force_login(qc_analyst)
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    assert {"/api/qc/queue/", "/api/qc/studies/{study_id}/", "/api/qc/studies/{study_id}/accept/",
            "/api/qc/studies/{study_id}/reject/"} <= set(paths)
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
