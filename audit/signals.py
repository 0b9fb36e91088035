"""Logins, logouts and failed logins are audit events."""

from django.contrib.auth import signals as auth_signals
from django.db import transaction
from django.dispatch import receiver

from .services import audit_record


def _ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


@receiver(auth_signals.user_logged_in, dispatch_uid="audit_login")
def _logged_in(sender, request, user, **kwargs):
    with transaction.atomic():
        audit_record(actor=user, action="auth.login", target=user, details={"ip": _ip(request)})


@receiver(auth_signals.user_logged_out, dispatch_uid="audit_logout")
def _logged_out(sender, request, user, **kwargs):
    if user is None:
        return  # session had already expired: nobody to attribute
    with transaction.atomic():
        audit_record(actor=user, action="auth.logout", target=user, details={"ip": _ip(request)})


@receiver(auth_signals.user_login_failed, dispatch_uid="audit_login_failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    # the attempted username is recorded (never the password: Django already masks it)
    with transaction.atomic():
        audit_record(actor=None, action="auth.login_failed",
                     details={"username": str(credentials.get("username", ""))[:150], "ip": _ip(request)})
