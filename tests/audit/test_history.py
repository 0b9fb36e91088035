"""Field-level history of regulated rows: every version, who, why, and each field before -> after."""

import re

import pytest
from django.apps import apps
from django.db import transaction

from audit.history import HISTORY_APPS, history_model_get, is_secret_field, object_history_get_for_user
from audit.models import AuditEvent
from audit.services import audit_record
from trials.models import Role
from trials.services import site_update, trial_update

from ..trials.factories import MembershipFactory, TrialFactory, UserFactory

pytestmark = pytest.mark.django_db


def _url(obj) -> str:
    return f"/audit/history/{obj._meta.app_label}/{obj._meta.model_name}/{obj.pk}"


def _row(html: str, field: str) -> str:
    """The table row of one field in the newest version shown (the page lists oldest first)."""
    rows = re.findall(rf'<tr data-field="{field}">(.*?)</tr>', html, flags=re.S)
    assert rows, f"no row for {field}"
    return rows[-1]


def test_a_correction_shows_before_after_who_and_the_reason(client, auditor, trial_manager, site2):
    site_update(actor=trial_manager, site=site2, reason="Clinic renamed by the hospital group",
                name="Site Two Clinique", time_zone="Europe/Brussels")
    client.force_login(auditor)

    response = client.get(_url(site2))

    html = response.content.decode()
    assert response.status_code == 200
    name = _row(html, "name")
    assert '<td class="before">Site Two Clinic</td>' in name and '<td class="after">Site Two Clinique</td>' in name
    zone = _row(html, "time_zone")
    assert '<td class="before">Europe/Paris</td>' in zone and '<td class="after">Europe/Brussels</td>' in zone
    assert "Reason for change:</strong> Clinic renamed by the hospital group" in html
    assert "changed by manager" in html
    # the version that changed two fields lists those two only
    newest = html.rsplit('<div class="version"', 1)[1]
    assert newest.count("<tr data-field=") == 2


def test_the_first_version_lists_the_values_the_row_was_created_with(client, auditor, site2):
    client.force_login(auditor)
    html = client.get(_url(site2)).content.decode()
    assert "created by system" in html
    assert '<td class="after">FR</td>' in _row(html, "country")
    assert '<td class="after">active (Active)</td>' in _row(html, "status")


def test_an_event_reason_reaches_the_history_row_the_service_left_without_one(trial_manager, site1):
    """A service that saves, then records ``reason=`` on the event, gets the reason and actor on the row."""
    with transaction.atomic():
        site1.name = "Site One University Hospital"
        site1.save(update_fields=["name"])  # no _change_reason, no request: simple-history knows neither
        audit_record(actor=trial_manager, action="trials.site_updated", target=site1, trial_id=site1.trial_id,
                     reason="name as on the ethics approval")

    newest = site1.history.order_by("-history_id").first()
    assert newest.history_change_reason == "name as on the ethics approval"
    assert newest.history_user == trial_manager


def test_a_reason_the_service_set_is_kept(trial_manager, site1):
    with transaction.atomic():
        site1.name = "Renamed"
        site1._change_reason = "the service's own words"
        site1.save(update_fields=["name"])
        audit_record(actor=trial_manager, action="trials.site_updated", target=site1, trial_id=site1.trial_id,
                     reason="the event's words")
    assert site1.history.order_by("-history_id").first().history_change_reason == "the service's own words"


def test_an_event_without_a_history_row_changes_no_history(trial_manager, site1):
    before = list(site1.history.values_list("history_id", "history_change_reason"))
    with transaction.atomic():
        audit_record(actor=trial_manager, action="trials.site_viewed", target=site1, trial_id=site1.trial_id,
                     reason="looked at it")
    assert list(site1.history.values_list("history_id", "history_change_reason")) == before


def test_trial_manager_may_read_history_too(client, trial_manager, site2):
    client.force_login(trial_manager)
    assert client.get(_url(site2)).status_code == 200


@pytest.mark.parametrize("who", ["sponsor", "reader1", "qc_analyst", "coordinator_site2", "outsider"])
def test_roles_without_audit_access_get_404(client, request, who, site2):
    client.force_login(request.getfixturevalue(who))
    assert client.get(_url(site2)).status_code == 404


def test_an_auditor_of_another_trial_gets_404(client, site2):
    other = UserFactory(username="auditor-elsewhere")
    MembershipFactory(user=other, trial=TrialFactory(protocol_number="CL-ELSEWHERE"), role=Role.AUDITOR)
    client.force_login(other)
    assert client.get(_url(site2)).status_code == 404


def test_anonymous_is_sent_to_sign_in(client, site2):
    response = client.get(_url(site2))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("path", [
    "/audit/history/trials/site/999999",          # no such row
    "/audit/history/trials/site/not-a-number",    # malformed id
    "/audit/history/trials/nosuchmodel/1",        # no such model
    "/audit/history/auth/user/1",                 # not a regulated app
    "/audit/history/audit/auditevent/1",          # audit rows have no field history: they never change
])
def test_what_is_not_a_regulated_row_with_history_is_404(client, auditor, path):
    client.force_login(auditor)
    assert client.get(path).status_code == 404


def test_secret_fields_are_never_shown(client, auditor, trial, trial_manager):
    trial_update(actor=trial_manager, trial=trial, reason="sponsor's legal name", sponsor="Acme Oncology SA")
    client.force_login(auditor)
    html = client.get(_url(trial)).content.decode()
    assert '<td class="after">Acme Oncology SA</td>' in _row(html, "sponsor")
    # key_id names the trial's pseudonym keys: listed as not shown, its value nowhere on the page
    assert str(trial.key_id) not in html and str(trial.key_id.hex) not in html
    assert 'data-field="key_id"' not in html
    assert re.search(r"<dt>Not shown</dt><dd>key_id", html)


@pytest.mark.parametrize(("name", "secret"), [
    ("password", True), ("password_hash", True), ("client_secret", True), ("api_token", True), ("salt", True),
    ("key", True), ("key_id", True), ("private_key", True),
    ("raw_key", False), ("deid_key", False), ("patient_id_hash", False), ("sponsor", False), ("tokenizer", False),
])
def test_which_field_names_count_as_secret(name, secret):
    assert is_secret_field(name) is secret


def test_the_timeline_offers_the_changes_of_objects_with_history(client, auditor, subject):
    client.force_login(auditor)
    html = client.get(f"/audit/subjects/{subject.pk}/timeline").content.decode()
    assert f'hx-get="/audit/history/trials/subject/{subject.pk}"' in html  # the enrollment's target
    # the disclosure loads the versions alone (htmx), not a second page
    partial = client.get(f"/audit/history/trials/subject/{subject.pk}", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div class="history-versions"') and "<html" not in partial
    assert "created by manager" in partial


def test_timeline_entries_of_targets_without_history_get_no_changes_link(client, auditor, history):
    from .conftest import record

    export = record(actor=auditor, action="audit.timeline_exported", subject=history,
                    target=("audit.export", "csv", "timeline as csv"))
    client.force_login(auditor)
    html = client.get(f"/audit/subjects/{history.pk}/timeline").content.decode()
    row = re.search(rf'<tr id="event-{export.pk}">(.*?)</tr>', html, flags=re.S).group(1)
    assert "changes" not in row
    received = AuditEvent.objects.filter(action="intake.instance_received").first()
    row = re.search(rf'<tr id="event-{received.pk}">(.*?)</tr>', html, flags=re.S).group(1)
    assert 'hx-get="/audit/history/intake/instance/11"' in row  # offered by type; a missing row is a 404 there


def test_the_api_gives_the_history_link(client, auditor, subject):
    client.force_login(auditor)
    results = client.get(f"/api/audit/subjects/{subject.pk}/timeline/").json()["results"]
    assert results[0]["history_url"] == f"/audit/history/trials/subject/{subject.pk}"


def test_every_regulated_model_keeps_field_history():
    """Every model of trials, intake, deid and qc registers simple-history (reads: checked once it lands)."""
    missing = [model._meta.label for app in HISTORY_APPS if app != "reads" and apps.is_installed(app)
               for model in apps.get_app_config(app).get_models()
               if not model.__name__.startswith("Historical")
               and history_model_get(app_label=model._meta.app_label, model_name=model._meta.model_name) is None]
    assert missing == []


def test_the_selector_refuses_like_the_page(auditor, sponsor, site2):
    from django.http import Http404

    assert object_history_get_for_user(user=auditor, app_label="trials", model_name="site", pk=str(site2.pk))
    with pytest.raises(Http404):
        object_history_get_for_user(user=sponsor, app_label="trials", model_name="site", pk=str(site2.pk))


def test_json_fields_are_shown_as_json(client, auditor, trial):
    from ..trials.factories import ProtocolVersionFactory

    version = ProtocolVersionFactory(trial=trial)
    client.force_login(auditor)
    response = client.get(_url(version))
    assert response.status_code == 200
    charter = _row(response.content.decode(), "charter")
    assert '"procedures"' in charter.replace("&quot;", '"')


def test_a_deleted_row_keeps_its_history_with_the_reason(client, auditor, trial_manager, qc_analyst):
    from trials.models import Membership
    from trials.services import membership_revoke

    membership = Membership.objects.get(user=qc_analyst)
    membership_revoke(actor=trial_manager, membership=membership, reason="left the core lab")
    client.force_login(auditor)

    html = client.get(_url(membership)).content.decode()

    assert "(deleted)" in html and "deleted by manager" in html
    assert "Reason for change:</strong> left the core lab" in html and "The record was deleted." in html
