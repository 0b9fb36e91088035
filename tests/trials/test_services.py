import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError

from audit.exceptions import ReasonRequired
from audit.models import AuditEvent
from trials.exceptions import MembershipError
from trials.models import Membership, ProtocolVersion, Role
from trials.services import (
    membership_grant,
    membership_revoke,
    protocol_version_release,
    site_create,
    trial_create,
    trial_update,
)

from .factories import UserFactory, demo_charter

pytestmark = pytest.mark.django_db


def test_trial_create_records_an_audit_event_and_history(admin_user):
    trial = trial_create(actor=admin_user, protocol_number="CL-NEW-1", title="New", sponsor="ACME")

    event = AuditEvent.objects.get(action="trials.trial_created", target_id=str(trial.pk))
    assert event.actor == admin_user and event.trial_id == trial.pk
    assert event.target_type == "trials.trial" and event.details["sponsor"] == "ACME"
    assert trial.history.count() == 1


def test_trial_update_requires_a_reason_and_keeps_it_in_history(trial, trial_manager):
    with pytest.raises(ReasonRequired):
        trial_update(actor=trial_manager, trial=trial, reason=" ", title="Renamed")
    trial.refresh_from_db()
    assert trial.title == "Test trial"

    trial_update(actor=trial_manager, trial=trial, reason="sponsor renamed the study", title="Renamed")

    latest = trial.history.first()
    assert latest.title == "Renamed" and latest.history_change_reason == "sponsor renamed the study"
    event = AuditEvent.objects.get(action="trials.trial_updated")
    assert event.actor_role == Role.TRIAL_MANAGER
    assert event.details == {"before": {"title": "Test trial"}, "after": {"title": "Renamed"}}


def test_site_create_rejects_a_duplicate_number_with_nothing_written(trial, site1, trial_manager):
    before = AuditEvent.objects.count()
    with pytest.raises(ValidationError):
        site_create(actor=trial_manager, trial=trial, number=site1.number, name="Again", country="us")
    assert AuditEvent.objects.count() == before


def test_membership_grant_and_revoke_are_audited(trial, site1, trial_manager):
    user = UserFactory()
    membership = membership_grant(actor=trial_manager, user=user, trial=trial, role=Role.SITE_COORDINATOR,
                                  site=site1)
    granted = AuditEvent.objects.get(action="trials.role_granted", target_id=str(membership.pk))
    assert granted.site_id == site1.pk and granted.details["role"] == Role.SITE_COORDINATOR

    with pytest.raises(MembershipError):
        membership_revoke(actor=trial_manager, membership=membership, reason="")
    membership_revoke(actor=trial_manager, membership=membership, reason="left the site")

    assert not Membership.objects.filter(pk=membership.pk).exists()
    revoked = AuditEvent.objects.get(action="trials.role_revoked")
    assert revoked.reason == "left the site"
    assert Membership.history.filter(id=membership.pk, history_type="-").get().history_change_reason == "left the site"


def test_coordinator_needs_a_site_and_others_must_not_have_one(trial, site1, trial_manager):
    with pytest.raises(ValidationError):
        membership_grant(actor=trial_manager, user=UserFactory(), trial=trial, role=Role.SITE_COORDINATOR)
    with pytest.raises(ValidationError):
        membership_grant(actor=trial_manager, user=UserFactory(), trial=trial, role=Role.READER, site=site1)


def test_the_database_refuses_a_coordinator_without_site(trial):
    with pytest.raises(IntegrityError):
        Membership.objects.create(user=UserFactory(), trial=trial, role=Role.SITE_COORDINATOR)


def test_granting_the_same_role_twice_is_refused(trial, trial_manager):
    with pytest.raises(MembershipError, match="already holds"):
        membership_grant(actor=trial_manager, user=trial_manager, trial=trial, role=Role.TRIAL_MANAGER)


def _release(actor, trial, label, charter=None):
    return protocol_version_release(actor=actor, trial=trial, label=label, charter=charter or demo_charter(),
                                    effective_date=datetime.date(2026, 1, 1), approved_on=datetime.date(2026, 1, 1))


def test_a_new_protocol_version_becomes_the_only_current_one(trial, trial_manager):
    first = _release(trial_manager, trial, "1.0")
    second = _release(trial_manager, trial, "2.0")

    assert list(ProtocolVersion.objects.filter(trial=trial, is_current=True)) == [second]
    first.refresh_from_db()
    assert first.label == "1.0" and not first.is_current
    assert AuditEvent.objects.filter(action="trials.protocol_version_released").count() == 2


def test_a_version_label_is_never_reused(trial, trial_manager):
    _release(trial_manager, trial, "1.0")
    with pytest.raises(ValidationError, match="already exists"):
        _release(trial_manager, trial, "1.0")


def test_a_visit_schedule_with_duplicate_codes_is_refused(trial, trial_manager):
    charter = demo_charter()
    charter["visits"][1]["code"] = "BL"
    with pytest.raises(ValidationError, match="used twice"):
        _release(trial_manager, trial, "1.0", charter)
    assert not ProtocolVersion.objects.filter(trial=trial).exists()


def test_only_the_trial_manager_releases_versions(trial, qc_analyst):
    with pytest.raises(PermissionDenied):
        _release(qc_analyst, trial, "1.0")


def test_only_staff_register_trials(trial_manager):
    with pytest.raises(PermissionDenied):
        trial_create(actor=trial_manager, protocol_number="CL-NEW-2", title="New", sponsor="ACME")
