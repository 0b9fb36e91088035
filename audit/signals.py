"""Logins, logouts and failed logins are audit events; history rows are noted for ``audit_record``."""

from django.contrib.auth import signals as auth_signals
from django.db import transaction
from django.dispatch import receiver
from simple_history.signals import post_create_historical_record

from .services import audit_record, innermost_atomic_block


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


@receiver(post_create_historical_record, dispatch_uid="audit_history_record")
def _history_created(sender, instance, history_instance, **kwargs):
    # the event recorded next for this instance completes the row's reason and user (services._history_complete)
    instance.__dict__["_audit_history_record"] = (history_instance, innermost_atomic_block())
