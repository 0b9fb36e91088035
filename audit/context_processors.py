from .selectors import chain_alert_for_user


def chain_alert(request):
    """The tamper banner: the newest chain verification failed, and this user answers for the trail."""
    user = getattr(request, "user", None)
    return {"audit_chain_alert": chain_alert_for_user(user=user) if user is not None else None}
