"""DICOM senders: which calling AE titles (and source addresses) the C-STORE gateway accepts, per site.

Trial managers register, correct, deactivate and reactivate senders; a site's coordinators see their own
site's senders read-only, with what to type into their PACS. Everyone else gets 404. Every form posts with
htmx and gets the page's own partial back.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.http.request import split_domain_port
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from config.errors import DomainError
from trials.models import Trial
from trials.permissions import Perm, has_perm, require

from .. import selectors, services
from ..forms import GatewayPeerActiveForm, GatewayPeerEditForm, GatewayPeerForm
from ..gateway import DEFAULT_AE_TITLE, DEFAULT_PORT
from ..models import GatewayPeer


def _trial(request, trial_id: int) -> Trial:
    """A trial whose senders page the user may open; 404 otherwise."""
    return get_object_or_404(selectors.gateway_peer_trial_list_for_user(user=request.user), pk=trial_id)


def _edit_form(peer: GatewayPeer, data=None) -> GatewayPeerEditForm:
    return GatewayPeerEditForm(data, prefix=f"edit-{peer.pk}",
                               initial={"ae_title": peer.ae_title, "source_address": peer.source_address or ""})


def _active_form(peer: GatewayPeer, data=None) -> GatewayPeerActiveForm:
    return GatewayPeerActiveForm(data, prefix=f"active-{peer.pk}")


def _gateway_host(request) -> str:
    """The host name sites reach us by, as the browser did (the gateway listens on the same machine)."""
    host, _ = split_domain_port(request.get_host())
    return host or "corelab.example"


def _page(request, trial: Trial, *, register_form: GatewayPeerForm | None = None,
          failed: dict | None = None):
    """The page (or, for htmx, its partial). ``failed`` carries one row's forms back with their errors."""
    user = request.user
    can_manage = has_perm(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    sites = selectors.gateway_peer_site_list_for_user(user=user, trial=trial)
    peers = list(selectors.gateway_peer_list_for_user(user=user, trial=trial))
    failed = failed or {}
    groups = []
    for site in sites:
        rows = []
        for peer in (p for p in peers if p.site_id == site.pk):
            edit_form, active_form = failed.get(peer.pk, (None, None))
            rows.append({"peer": peer, "edit_form": edit_form or _edit_form(peer),
                         "active_form": active_form or _active_form(peer),
                         "open": bool(edit_form is not None and edit_form.errors),
                         "active_errors": active_form.errors if active_form is not None else {}})
        groups.append({"site": site, "rows": rows})
    context = {
        "trial": trial, "trials": selectors.gateway_peer_trial_list_for_user(user=user), "groups": groups,
        "can_manage": can_manage,
        "register_form": register_form or (GatewayPeerForm(sites=sites) if can_manage else None),
        "gateway": {"ae_title": DEFAULT_AE_TITLE, "port": DEFAULT_PORT, "host": _gateway_host(request)},
        "example_ae": next((p.ae_title for p in peers if p.active), "YOUR_AE"),
    }
    template = "intake/peers.html#peers-page" if request.htmx else "intake/peers.html"
    return render(request, template, context)


def _after_write(request, trial: Trial, done: str):
    messages.success(request, done)
    if request.htmx:
        return _page(request, trial)
    return redirect("intake-peers-trial", trial.pk)


@login_required
def peers(request):
    """The senders page of the user's one trial, or a choice of trials; 404 for users without any."""
    trials = list(selectors.gateway_peer_trial_list_for_user(user=request.user))
    if not trials:
        raise Http404("No such page")
    if len(trials) == 1:
        return redirect("intake-peers-trial", trials[0].pk)
    return render(request, "intake/peers_trials.html", {"trials": trials})


@login_required
def peers_trial(request, trial_id: int):
    return _page(request, _trial(request, trial_id))


@login_required
@require_POST
def peer_register(request, trial_id: int):
    trial = _trial(request, trial_id)
    require(user=request.user, perm=Perm.MANAGE_TRIAL, trial_id=trial.pk)
    sites = selectors.gateway_peer_site_list_for_user(user=request.user, trial=trial)
    form = GatewayPeerForm(request.POST, sites=sites)
    if form.is_valid():
        try:
            peer = services.gateway_peer_register(actor=request.user, **form.cleaned_data)
            return _after_write(request, trial, f"{peer.ae_title} may now send for site {peer.site.number}.")
        except DomainError as exc:
            form.add_error(None, str(exc))
    return _page(request, trial, register_form=form)


def _peer(request, peer_id: int) -> GatewayPeer:
    """A sender the user may change: visible (else 404) and in a trial they manage (else 404 too)."""
    peer = selectors.gateway_peer_get_for_user(user=request.user, peer_id=peer_id)
    require(user=request.user, perm=Perm.MANAGE_TRIAL, trial_id=peer.site.trial_id)
    return peer


@login_required
@require_POST
def peer_edit(request, peer_id: int):
    peer = _peer(request, peer_id)
    form = _edit_form(peer, request.POST)
    if form.is_valid():
        try:
            peer = services.gateway_peer_update(actor=request.user, peer=peer, **form.cleaned_data)
            return _after_write(request, peer.site.trial, f"Sender {peer.ae_title} updated.")
        except DomainError as exc:
            form.add_error(None, str(exc))
    return _page(request, peer.site.trial, failed={peer.pk: (form, None)})


@login_required
@require_POST
def peer_set_active(request, peer_id: int):
    """Deactivate (``active=0``) or reactivate (``active=1``) a sender, with a reason."""
    peer = _peer(request, peer_id)
    active = request.POST.get("active") == "1"
    form = _active_form(peer, request.POST)
    if form.is_valid():
        try:
            peer = services.gateway_peer_set_active(actor=request.user, peer=peer, active=active,
                                                    reason=form.cleaned_data["reason"])
            done = (f"Sender {peer.ae_title} reactivated." if active else
                    f"Sender {peer.ae_title} deactivated: the gateway refuses its next association.")
            return _after_write(request, peer.site.trial, done)
        except DomainError as exc:
            form.add_error(None, str(exc))
    return _page(request, peer.site.trial, failed={peer.pk: (None, form)})
