"""The navigation registry: each app adds the pages it owns, each guarded by a permission.

The base template shows a user only the entries their roles allow, so nobody
sees a link that would answer 404.
"""

from dataclasses import dataclass

from django.urls import reverse

from .permissions import Perm, perms_in_any_trial


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    perm: Perm | tuple[Perm, ...] | None = None  # None: every signed-in user; a tuple: any of them
    staff_only: bool = False
    order: int = 100


_items: dict[str, NavItem] = {}


def register(item: NavItem) -> None:
    """Add (or replace, by url name) an entry; called from AppConfig.ready()."""
    _items[item.url_name] = item


def nav_for(user) -> list[dict]:
    if not user.is_authenticated:
        return []
    # one query for every entry (not one per entry and permission): the perms of any of the user's roles
    granted = perms_in_any_trial(user=user)
    entries = []
    for item in sorted(_items.values(), key=lambda i: (i.order, i.label)):
        if item.staff_only and not user.is_staff:
            continue
        perms = item.perm if isinstance(item.perm, tuple) else (item.perm,)
        if item.perm is not None and not any(perm in granted for perm in perms):
            continue
        entries.append({"label": item.label, "url": reverse(item.url_name), "url_name": item.url_name})
    return entries


# the dashboards' frame lives here (trials.dashboard); the panels come from the apps that own the data
register(NavItem("Dashboards", "dashboards", perm=Perm.VIEW_DASHBOARDS, order=30))
