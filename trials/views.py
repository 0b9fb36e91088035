from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from .models import Role
from .selectors import (
    membership_list_for_user,
    my_roles_by_trial,
    site_get_for_user,
    site_list_for_user,
    trial_get_for_user,
    trial_list_for_user,
)

ROLE_LABELS = dict(Role.choices)


@login_required
def home(request):
    roles = my_roles_by_trial(user=request.user)
    trials = [{"trial": trial, "roles": [ROLE_LABELS[r] for r in roles.get(trial.pk, [])]}
              for trial in trial_list_for_user(user=request.user)]
    return render(request, "trials/home.html", {"trials": trials})


@login_required
def trial_detail(request, trial_id: int):
    trial = trial_get_for_user(user=request.user, trial_id=trial_id)
    return render(request, "trials/trial_detail.html", {
        "trial": trial,
        "sites": site_list_for_user(user=request.user, trial=trial),
        "memberships": membership_list_for_user(user=request.user, trial=trial),
        "current_version": trial.protocol_versions.filter(is_current=True).first(),
    })


@login_required
def site_detail(request, trial_id: int, site_id: int):
    site = site_get_for_user(user=request.user, trial_id=trial_id, site_id=site_id)
    return render(request, "trials/site_detail.html", {"site": site, "trial": site.trial})
