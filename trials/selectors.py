"""Reads of trials and sites, always scoped by the user asking."""

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from .models import Membership, Site, Trial
from .permissions import Perm, require, site_ids_with, trial_ids_with


def trial_list_for_user(*, user) -> QuerySet[Trial]:
    return Trial.objects.filter(pk__in=trial_ids_with(user=user, perm=Perm.VIEW_TRIAL))


def trial_get_for_user(*, user, trial_id: int) -> Trial:
    """404 for missing and forbidden alike."""
    return get_object_or_404(trial_list_for_user(user=user), pk=trial_id)


def site_list_for_user(*, user, trial: Trial) -> QuerySet[Site]:
    """The trial's sites the user may see: all of them, their own, or none (blinded readers)."""
    sites = site_ids_with(user=user, perm=Perm.VIEW_TRIAL, trial_id=trial.pk)
    queryset = Site.objects.filter(trial=trial)
    return queryset if sites is None else queryset.filter(pk__in=sites)


def site_get_for_user(*, user, trial_id: int, site_id: int) -> Site:
    trial = trial_get_for_user(user=user, trial_id=trial_id)
    return get_object_or_404(site_list_for_user(user=user, trial=trial), pk=site_id)


def membership_list_for_user(*, user, trial: Trial) -> QuerySet[Membership]:
    """Who holds which role: visible to those who manage members or audit."""
    if trial.pk not in trial_ids_with(user=user, perm=Perm.MANAGE_MEMBERS) | trial_ids_with(
            user=user, perm=Perm.VIEW_AUDIT):
        return Membership.objects.none()
    return Membership.objects.filter(trial=trial).select_related("user", "site")


def my_roles_by_trial(*, user) -> dict[int, list[str]]:
    roles: dict[int, list[str]] = {}
    for trial_id, role in Membership.objects.filter(user=user).values_list("trial_id", "role"):
        roles.setdefault(trial_id, []).append(role)
    return roles


def trial_require(*, user, perm: Perm, trial: Trial) -> None:
    require(user=user, perm=perm, trial_id=trial.pk)
