from .navigation import nav_for


def navigation(request):
    """The signed-in user's menu, filtered by their roles (see trials.navigation)."""
    user = getattr(request, "user", None)
    return {"nav_items": nav_for(user) if user is not None else []}
