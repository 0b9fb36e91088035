"""Roles decide access: nothing of trial B for a member of trial A, nothing of site 2 for site 1's coordinator."""

import pytest
from rest_framework.authtoken.models import Token

from trials.models import Role
from trials.permissions import Perm, has_perm, site_ids_with, trial_ids_with

from .factories import MembershipFactory, SiteFactory, TrialFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def trial_b(db):
    other = TrialFactory(protocol_number="CL-B-002", title="Trial B")
    SiteFactory(trial=other, number="201", name="Hospital of Trial B")
    return other


def _pages(trial, site):
    return [f"/trials/{trial.pk}/", f"/trials/{trial.pk}/sites/{site.pk}/",
            f"/api/trials/{trial.pk}/", f"/api/trials/{trial.pk}/sites/", f"/api/trials/{trial.pk}/sites/{site.pk}/"]


@pytest.mark.parametrize("role", [r for r in Role.values if r != Role.SITE_COORDINATOR])
def test_a_role_in_trial_a_opens_nothing_of_trial_b(client, trial, trial_b, role, django_user_model):
    user = django_user_model.objects.create_user("member-a", password="x")
    MembershipFactory(user=user, trial=trial, role=role)
    client.force_login(user)

    for url in _pages(trial_b, trial_b.sites.get()):
        assert client.get(url).status_code == 404, url
    listing = client.get("/api/trials/").json()
    assert [t["protocol_number"] for t in listing["results"]] == [trial.protocol_number]
    assert trial_b.protocol_number not in client.get("/").content.decode()


def test_coordinator_of_site1_sees_nothing_of_site2(client, trial, site1, site2, coordinator_site1):
    client.force_login(coordinator_site1)

    assert client.get(f"/trials/{trial.pk}/sites/{site2.pk}/").status_code == 404
    assert client.get(f"/api/trials/{trial.pk}/sites/{site2.pk}/").status_code == 404
    sites = client.get(f"/api/trials/{trial.pk}/sites/").json()
    assert [s["number"] for s in sites] == ["101"]
    page = client.get(f"/trials/{trial.pk}/").content.decode()
    assert site1.name in page and site2.name not in page
    assert client.get(f"/trials/{trial.pk}/sites/{site1.pk}/").status_code == 200


def test_readers_see_the_trial_but_no_site(client, trial, site1, reader1):
    client.force_login(reader1)

    assert client.get(f"/trials/{trial.pk}/").status_code == 200
    assert client.get(f"/api/trials/{trial.pk}/sites/").json() == []
    assert client.get(f"/trials/{trial.pk}/sites/{site1.pk}/").status_code == 404
    assert site1.name not in client.get(f"/trials/{trial.pk}/").content.decode()


def test_anonymous_is_sent_to_login_and_api_refuses(client, trial):
    response = client.get(f"/trials/{trial.pk}/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/api/trials/").status_code in (401, 403)


def test_token_authentication_is_scoped_like_the_session(client, trial, trial_b, trial_manager):
    token = Token.objects.create(user=trial_manager)
    headers = {"HTTP_AUTHORIZATION": f"Token {token.key}"}
    assert client.get(f"/api/trials/{trial.pk}/", **headers).status_code == 200
    assert client.get(f"/api/trials/{trial_b.pk}/", **headers).status_code == 404


def test_api_token_is_issued_for_valid_credentials_only(client, trial_manager):
    assert client.post("/api/auth/token/", {"username": "manager", "password": "wrong"}).status_code == 400
    response = client.post("/api/auth/token/", {"username": "manager", "password": "correct-horse-battery"})
    assert response.status_code == 200 and len(response.json()["token"]) == 40


def test_one_user_holds_different_roles_in_different_trials(trial, trial_b, django_user_model):
    user = django_user_model.objects.create_user("two-hats")
    MembershipFactory(user=user, trial=trial, role=Role.QC_ANALYST)
    MembershipFactory(user=user, trial=trial_b, role=Role.READER)

    assert trial_ids_with(user=user, perm=Perm.QC_REVIEW) == {trial.pk}
    assert trial_ids_with(user=user, perm=Perm.READ) == {trial_b.pk}
    assert not has_perm(user=user, perm=Perm.READ, trial_id=trial.pk)


def test_site_permissions_stop_at_the_coordinators_site(trial, site1, site2, coordinator_site1):
    assert site_ids_with(user=coordinator_site1, perm=Perm.SUBMIT_IMAGES, trial_id=trial.pk) == {site1.pk}
    assert has_perm(user=coordinator_site1, perm=Perm.SUBMIT_IMAGES, trial_id=trial.pk, site_id=site1.pk)
    assert not has_perm(user=coordinator_site1, perm=Perm.SUBMIT_IMAGES, trial_id=trial.pk, site_id=site2.pk)
    assert not has_perm(user=coordinator_site1, perm=Perm.QC_REVIEW, trial_id=trial.pk)


def test_inactive_user_has_no_permission(trial, trial_manager):
    trial_manager.is_active = False
    trial_manager.save()
    assert trial_ids_with(user=trial_manager, perm=Perm.VIEW_TRIAL) == set()


@pytest.mark.parametrize(("fixture", "visible", "hidden"), [
    ("trial_manager", {"Trials", "API"}, {"Admin"}),
    ("reader1", {"Trials", "API"}, {"Admin"}),
])
def test_navigation_shows_only_what_the_role_may_use(client, request, fixture, visible, hidden):
    client.force_login(request.getfixturevalue(fixture))
    labels = {item["label"] for item in client.get("/").context["nav_items"]}
    assert visible <= labels and not (hidden & labels)
