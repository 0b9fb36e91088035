import pytest
from django.conf import settings

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_repeated_failed_logins_lock_the_account_and_are_audited(client, trial_manager):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": "manager", "password": "wrong"})

    response = client.post("/accounts/login/", {"username": "manager", "password": "correct-horse-battery"})

    assert response.status_code == 429
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert AuditEvent.objects.filter(action="auth.login_failed").count() >= settings.AXES_FAILURE_LIMIT
    assert not AuditEvent.objects.filter(action="auth.login").exists()


def test_password_validators_refuse_a_short_or_common_password(trial_manager):
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    for weak in ["short", "password1234", "123456789012"]:
        with pytest.raises(ValidationError):
            validate_password(weak, trial_manager)
    validate_password("a-long-unusual-phrase-for-corelab", trial_manager)


def test_logout_needs_a_post_with_csrf(client, trial_manager):
    client.force_login(trial_manager)
    assert client.get("/accounts/logout/").status_code == 405
