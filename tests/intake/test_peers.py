"""DICOM senders (GatewayPeer): the services, the gateway's look-up, the page and the API."""

import pytest
from django.core.exceptions import PermissionDenied

from audit.models import AuditEvent
from intake.exceptions import InvalidTransition, SubmissionRefused
from intake.models import GatewayPeer
from intake.selectors import gateway_peer_for, gateway_peer_get_for_user, gateway_peer_list_for_user
from intake.services import gateway_peer_register, gateway_peer_set_active, gateway_peer_update

from ..trials.factories import SiteFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def pacs1(site1, trial_manager):
    return gateway_peer_register(actor=trial_manager, site=site1, ae_title="RUH_PACS", source_address="10.1.2.3")


@pytest.fixture
def pacs2(site2, trial_manager):
    return gateway_peer_register(actor=trial_manager, site=site2, ae_title="CLINIC_CT")


def _events(action: str, peer: GatewayPeer):
    return AuditEvent.objects.filter(action=action, target_type="intake.gatewaypeer", target_id=str(peer.pk))


def _hx():
    return {"HTTP_HX_REQUEST": "true"}


# -- services -----------------------------------------------------------------------------------------------

def test_register_is_audited_and_stores_the_address_as_the_gateway_compares_it(site1, trial_manager):
    peer = gateway_peer_register(actor=trial_manager, site=site1, ae_title="  MOD1 ", source_address="::ffff:10.0.0.9")

    peer.refresh_from_db()
    assert (peer.ae_title, peer.source_address, peer.active) == ("MOD1", "10.0.0.9", True)
    event = _events("intake.gateway_peer_registered", peer).get()
    assert event.actor == trial_manager and event.site_id == site1.pk
    assert event.details == {"ae_title": "MOD1", "source_address": "10.0.0.9"}


@pytest.mark.parametrize("ae_title", ["", "   ", "A" * 17, "BAD\\AE", "TAB\tAE", "ÜMLAUT"])
def test_register_refuses_an_ae_title_dicom_does_not_allow(site1, trial_manager, ae_title):
    with pytest.raises(SubmissionRefused, match="1 to 16 characters"):
        gateway_peer_register(actor=trial_manager, site=site1, ae_title=ae_title)
    assert not GatewayPeer.objects.exists() and not AuditEvent.objects.filter(
        action="intake.gateway_peer_registered").exists()


def test_register_refuses_a_bad_address_and_a_taken_title(site1, site2, trial_manager, pacs1):
    with pytest.raises(SubmissionRefused, match="10.1.2.300 is not an IPv4 or IPv6 address"):
        gateway_peer_register(actor=trial_manager, site=site1, ae_title="NEW", source_address="10.1.2.300")
    with pytest.raises(SubmissionRefused, match="AE title RUH_PACS is already registered"):
        gateway_peer_register(actor=trial_manager, site=site2, ae_title="RUH_PACS")
    assert list(GatewayPeer.objects.values_list("ae_title", flat=True)) == ["RUH_PACS"]


def test_only_a_manager_of_the_trial_may_register(site1, coordinator_site1, qc_analyst, outsider):
    for user in (coordinator_site1, qc_analyst, outsider):
        with pytest.raises(PermissionDenied):
            gateway_peer_register(actor=user, site=site1, ae_title="SNEAKY")
    assert not GatewayPeer.objects.exists()


def test_update_keeps_the_reason_in_history_and_the_before_after_in_the_audit_event(trial_manager, pacs1):
    peer = gateway_peer_update(actor=trial_manager, peer=pacs1, ae_title="RUH_PACS2", source_address="10.1.2.4",
                               reason="new PACS server")

    peer.refresh_from_db()
    assert (peer.ae_title, peer.source_address) == ("RUH_PACS2", "10.1.2.4")
    latest = peer.history.first()
    assert latest.ae_title == "RUH_PACS2" and latest.history_change_reason == "new PACS server"
    event = _events("intake.gateway_peer_updated", peer).get()
    assert event.reason == "new PACS server"
    assert event.details == {"before": {"ae_title": "RUH_PACS", "source_address": "10.1.2.3"},
                             "after": {"ae_title": "RUH_PACS2", "source_address": "10.1.2.4"}}


def test_update_can_lift_the_address_restriction_and_leaves_what_is_not_named(trial_manager, pacs1):
    gateway_peer_update(actor=trial_manager, peer=pacs1, source_address="", reason="PACS moves behind a NAT pool")
    pacs1.refresh_from_db()
    assert (pacs1.ae_title, pacs1.source_address) == ("RUH_PACS", None)

    gateway_peer_update(actor=trial_manager, peer=pacs1, ae_title="RUH_MAIN", reason="renamed")
    pacs1.refresh_from_db()
    assert (pacs1.ae_title, pacs1.source_address) == ("RUH_MAIN", None)


def test_update_refusals_change_nothing(trial_manager, coordinator_site1, pacs1, pacs2):
    cases = [
        ({"ae_title": "CLINIC_CT", "reason": "clash"}, SubmissionRefused, "already registered"),
        ({"source_address": "not-an-ip", "reason": "typo"}, SubmissionRefused, "not an IPv4 or IPv6 address"),
        ({"ae_title": "NEW", "reason": "  "}, SubmissionRefused, "say why"),
        ({"ae_title": "RUH_PACS", "source_address": "10.1.2.3", "reason": "same"}, SubmissionRefused,
         "nothing to change"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            gateway_peer_update(actor=trial_manager, peer=pacs1, **kwargs)
    with pytest.raises(PermissionDenied):
        gateway_peer_update(actor=coordinator_site1, peer=pacs1, ae_title="MINE", reason="my PACS")
    pacs1.refresh_from_db()
    assert (pacs1.ae_title, pacs1.source_address) == ("RUH_PACS", "10.1.2.3")
    assert not AuditEvent.objects.filter(action="intake.gateway_peer_updated").exists()


def test_a_deactivated_sender_is_refused_by_the_gateway_and_can_be_reactivated(trial_manager, pacs1):
    assert gateway_peer_for(ae_title="RUH_PACS", address="10.1.2.3") == pacs1

    gateway_peer_set_active(actor=trial_manager, peer=pacs1, active=False, reason="PACS decommissioned")

    assert gateway_peer_for(ae_title="RUH_PACS", address="10.1.2.3") is None
    pacs1.refresh_from_db()
    assert pacs1.active is False and pacs1.history.first().history_change_reason == "PACS decommissioned"
    assert _events("intake.gateway_peer_deactivated", pacs1).get().reason == "PACS decommissioned"
    with pytest.raises(InvalidTransition, match="already inactive"):
        gateway_peer_set_active(actor=trial_manager, peer=pacs1, active=False, reason="again")

    gateway_peer_set_active(actor=trial_manager, peer=pacs1, active=True, reason="back in service")
    assert gateway_peer_for(ae_title="RUH_PACS", address="10.1.2.3") == pacs1
    assert _events("intake.gateway_peer_activated", pacs1).get().reason == "back in service"


def test_an_inactive_senders_title_stays_taken_and_the_refusal_says_so(trial_manager, site2, pacs1):
    gateway_peer_set_active(actor=trial_manager, peer=pacs1, active=False, reason="retired")
    with pytest.raises(SubmissionRefused, match="inactive: reactivate or rename"):
        gateway_peer_register(actor=trial_manager, site=site2, ae_title="RUH_PACS")


def test_the_gateway_refuses_a_changed_address_at_once(trial_manager, pacs1):
    gateway_peer_update(actor=trial_manager, peer=pacs1, source_address="10.9.9.9", reason="PACS moved")
    assert gateway_peer_for(ae_title="RUH_PACS", address="10.1.2.3") is None
    assert gateway_peer_for(ae_title="RUH_PACS", address="10.9.9.9") == pacs1


def test_only_a_manager_may_deactivate(coordinator_site1, auditor, pacs1):
    for user in (coordinator_site1, auditor):
        with pytest.raises(PermissionDenied):
            gateway_peer_set_active(actor=user, peer=pacs1, active=False, reason="mine")
    pacs1.refresh_from_db()
    assert pacs1.active is True


# -- selectors ----------------------------------------------------------------------------------------------

def test_managers_see_every_site_coordinators_their_own_others_none(trial, trial_manager, coordinator_site1,
                                                                    qc_analyst, reader1, outsider, pacs1, pacs2):
    def seen(user):
        return set(gateway_peer_list_for_user(user=user, trial=trial).values_list("ae_title", flat=True))

    assert seen(trial_manager) == {"RUH_PACS", "CLINIC_CT"}
    assert seen(coordinator_site1) == {"RUH_PACS"}
    assert seen(qc_analyst) == seen(reader1) == seen(outsider) == set()
    assert gateway_peer_get_for_user(user=coordinator_site1, peer_id=pacs1.pk) == pacs1
    from django.http import Http404
    with pytest.raises(Http404):
        gateway_peer_get_for_user(user=coordinator_site1, peer_id=pacs2.pk)


# -- the page -----------------------------------------------------------------------------------------------

def test_a_manager_sees_the_gateway_settings_and_every_sites_senders(client, trial, trial_manager, pacs1, pacs2):
    client.force_login(trial_manager)
    assert client.get("/intake/senders/").url == f"/intake/trials/{trial.pk}/senders/"
    response = client.get(f"/intake/trials/{trial.pk}/senders/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "TCP_NODELAY=1 storescu -aec CORELAB -aet RUH_PACS testserver 11112 +sd +r study/" in page
    assert f'id="peer-{pacs1.pk}"' in page and f'id="peer-{pacs2.pk}"' in page and "10.1.2.3" in page
    assert "Register sender" in page and f'hx-post="/intake/senders/{pacs1.pk}/active/"' in page
    assert b'href="/intake/senders/"' in client.get("/").content  # in the navigation


def test_a_manager_registers_a_sender_with_htmx(client, trial, site2, trial_manager):
    client.force_login(trial_manager)
    response = client.post(f"/intake/trials/{trial.pk}/senders/register/",
                           {"site": site2.pk, "ae_title": "CLINIC_MR", "source_address": "192.0.2.7"}, **_hx())
    page = response.content.decode()
    assert response.status_code == 200 and page.strip().startswith('<div id="peers-page">')
    assert "CLINIC_MR may now send for site 102." in page
    peer = GatewayPeer.objects.get(ae_title="CLINIC_MR")
    assert (peer.site, peer.source_address) == (site2, "192.0.2.7")
    assert _events("intake.gateway_peer_registered", peer).exists()


def test_a_refused_registration_shows_why_and_keeps_the_input(client, trial, site1, trial_manager, pacs1):
    client.force_login(trial_manager)
    page = client.post(f"/intake/trials/{trial.pk}/senders/register/",
                       {"site": site1.pk, "ae_title": "OTHER", "source_address": "10.1.2"}, **_hx()).content.decode()
    assert "10.1.2 is not an IPv4 or IPv6 address" in page and 'value="OTHER"' in page
    assert not GatewayPeer.objects.filter(ae_title="OTHER").exists()


def test_a_manager_edits_and_deactivates_with_a_reason(client, trial_manager, pacs1):
    client.force_login(trial_manager)
    edit = client.post(f"/intake/senders/{pacs1.pk}/edit/", {
        f"edit-{pacs1.pk}-ae_title": "RUH_PACS", f"edit-{pacs1.pk}-source_address": "10.1.2.5",
        f"edit-{pacs1.pk}-reason": "PACS re-addressed"})
    assert edit.status_code == 302
    pacs1.refresh_from_db()
    assert pacs1.source_address == "10.1.2.5" and pacs1.history.first().history_change_reason == "PACS re-addressed"

    refused = client.post(f"/intake/senders/{pacs1.pk}/active/", {"active": "0", f"active-{pacs1.pk}-reason": ""},
                          **_hx()).content.decode()
    assert "This field is required." in refused
    pacs1.refresh_from_db()
    assert pacs1.active is True

    page = client.post(f"/intake/senders/{pacs1.pk}/active/",
                       {"active": "0", f"active-{pacs1.pk}-reason": "PACS replaced"}, **_hx()).content.decode()
    assert "Sender RUH_PACS deactivated" in page and "Inactive: refused" in page and "Reactivate RUH_PACS" in page
    pacs1.refresh_from_db()
    assert pacs1.active is False
    assert _events("intake.gateway_peer_deactivated", pacs1).get().reason == "PACS replaced"


def test_a_coordinator_sees_their_own_sites_senders_read_only(client, trial, coordinator_site1, pacs1, pacs2):
    client.force_login(coordinator_site1)
    page = client.get(f"/intake/trials/{trial.pk}/senders/").content.decode()
    assert "RUH_PACS" in page and "CLINIC_CT" not in page and "Site 102" not in page
    assert "Register sender" not in page and "Deactivate" not in page and "/edit/" not in page
    assert "storescu -aec CORELAB -aet RUH_PACS" in page
    # the forms are not theirs to post, even for their own site
    assert client.post(f"/intake/senders/{pacs1.pk}/active/",
                       {"active": "0", f"active-{pacs1.pk}-reason": "x"}).status_code == 404
    assert client.post(f"/intake/trials/{trial.pk}/senders/register/",
                       {"site": pacs1.site_id, "ae_title": "MINE"}).status_code == 404
    pacs1.refresh_from_db()
    assert pacs1.active is True and not GatewayPeer.objects.filter(ae_title="MINE").exists()


def test_outsiders_and_other_roles_get_404(client, trial, outsider, qc_analyst, reader1, pacs1):
    for user in (outsider, qc_analyst, reader1):
        client.force_login(user)
        assert client.get(f"/intake/trials/{trial.pk}/senders/").status_code == 404, user
        assert client.post(f"/intake/senders/{pacs1.pk}/edit/", {}).status_code == 404, user
    for user in (qc_analyst, reader1):
        client.force_login(user)
        assert client.get("/intake/senders/").status_code == 404
        assert b'href="/intake/senders/"' not in client.get("/").content  # no link that would answer 404
    client.force_login(outsider)
    # the outsider manages their own trial: their page does not list this trial's senders
    assert "RUH_PACS" not in client.get("/intake/senders/", follow=True).content.decode()


def test_a_manager_of_two_trials_chooses_one(client, trial, trial_manager):
    from trials.models import Role

    from ..trials.factories import MembershipFactory, TrialFactory
    second = TrialFactory(protocol_number="CL-TEST-002")
    MembershipFactory(user=trial_manager, trial=second, role=Role.TRIAL_MANAGER)
    client.force_login(trial_manager)
    page = client.get("/intake/senders/").content.decode()
    assert f'href="/intake/trials/{trial.pk}/senders/"' in page and f'href="/intake/trials/{second.pk}/senders/"' in page


# -- the API ------------------------------------------------------------------------------------------------

def test_api_manager_lists_creates_and_updates(client, trial, site1, site2, trial_manager, pacs1):
    client.force_login(trial_manager)
    created = client.post(f"/api/intake/trials/{trial.pk}/senders/",
                          {"site": site2.pk, "ae_title": "CLINIC_US", "source_address": "2001:db8::7"},
                          content_type="application/json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body == {"id": body["id"], "trial": "CL-TEST-001", "site": "102", "site_id": site2.pk,
                    "ae_title": "CLINIC_US", "source_address": "2001:db8::7", "active": True}

    listed = client.get(f"/api/intake/trials/{trial.pk}/senders/").json()
    assert [p["ae_title"] for p in listed] == ["RUH_PACS", "CLINIC_US"]
    assert [p["ae_title"] for p in client.get(f"/api/intake/trials/{trial.pk}/senders/?site={site2.pk}").json()] \
        == ["CLINIC_US"]

    updated = client.patch(f"/api/intake/senders/{body['id']}/",
                           {"source_address": None, "active": False, "reason": "US cart retired"},
                           content_type="application/json")
    assert updated.status_code == 200, updated.json()
    assert (updated.json()["source_address"], updated.json()["active"]) == (None, False)
    peer = GatewayPeer.objects.get(pk=body["id"])
    assert _events("intake.gateway_peer_updated", peer).get().reason == "US cart retired"
    assert _events("intake.gateway_peer_deactivated", peer).get().reason == "US cart retired"


def test_api_refusals_are_clear_4xx(client, trial, site1, trial_manager, pacs1, pacs2):
    client.force_login(trial_manager)
    url = f"/api/intake/trials/{trial.pk}/senders/"
    taken = client.post(url, {"site": site1.pk, "ae_title": "CLINIC_CT"}, content_type="application/json")
    assert taken.status_code == 400 and "already registered" in taken.json()["detail"]
    other_trial_site = SiteFactory()
    assert client.post(url, {"site": other_trial_site.pk, "ae_title": "X"},
                       content_type="application/json").json() == {"site": ["not a site of this trial"]}
    no_reason = client.patch(f"/api/intake/senders/{pacs1.pk}/", {"ae_title": "Y"}, content_type="application/json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()
    # one half refused: neither half applies
    both = client.patch(f"/api/intake/senders/{pacs1.pk}/",
                        {"ae_title": "CLINIC_CT", "active": False, "reason": "x"}, content_type="application/json")
    assert both.status_code == 400
    again = client.patch(f"/api/intake/senders/{pacs1.pk}/", {"active": True, "reason": "x"},
                         content_type="application/json")
    assert again.status_code == 409
    pacs1.refresh_from_db()
    assert (pacs1.ae_title, pacs1.active) == ("RUH_PACS", True)


def test_api_coordinator_reads_own_site_only_and_may_not_write(client, trial, site1, coordinator_site1,
                                                              pacs1, pacs2):
    client.force_login(coordinator_site1)
    assert [p["ae_title"] for p in client.get(f"/api/intake/trials/{trial.pk}/senders/").json()] == ["RUH_PACS"]
    assert client.get(f"/api/intake/senders/{pacs1.pk}/").status_code == 200
    assert client.get(f"/api/intake/senders/{pacs2.pk}/").status_code == 404
    assert client.patch(f"/api/intake/senders/{pacs1.pk}/", {"active": False, "reason": "mine"},
                        content_type="application/json").status_code == 403
    assert client.post(f"/api/intake/trials/{trial.pk}/senders/", {"site": site1.pk, "ae_title": "MINE"},
                       content_type="application/json").status_code == 403
    pacs1.refresh_from_db()
    assert pacs1.active is True and not GatewayPeer.objects.filter(ae_title="MINE").exists()


def test_api_outsider_gets_404(client, trial, site1, outsider, pacs1):
    client.force_login(outsider)
    assert client.get(f"/api/intake/trials/{trial.pk}/senders/").status_code == 404
    assert client.post(f"/api/intake/trials/{trial.pk}/senders/", {"site": site1.pk, "ae_title": "X"},
                       content_type="application/json").status_code == 404
    assert client.get(f"/api/intake/senders/{pacs1.pk}/").status_code == 404
    assert client.patch(f"/api/intake/senders/{pacs1.pk}/", {"active": False, "reason": "x"},
                        content_type="application/json").status_code == 404
    pacs1.refresh_from_db()
    assert pacs1.active is True


def test_the_openapi_schema_lists_the_sender_endpoints(client, trial_manager):
    client.force_login(trial_manager)
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    assert set(paths["/api/intake/trials/{trial_id}/senders/"]) >= {"get", "post"}
    assert set(paths["/api/intake/senders/{peer_id}/"]) >= {"get", "patch"}


def test_the_openapi_schema_validates_without_warnings(tmp_path):
    from django.core.management import call_command

    # --fail-on-warn: a view drf-spectacular cannot describe fails here, not in a client's generator
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/intake/senders/{peer_id}/" in (tmp_path / "schema.yaml").read_text()
