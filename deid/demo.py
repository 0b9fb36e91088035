"""The demo trial's de-identification profile: what a core lab would set up before the first upload.

The Basic Profile alone removes series descriptions and the scanner's serial number, so QC's series
and scanner checks could only say "not verifiable". The demo therefore starts at version 1 with Clean
Descriptors (descriptions kept once cleaned of identifying text) and Retain Device Identity (the scanner
is not the patient). Sent by ``trials.signals.demo_loaded``; does nothing if the trial has a profile.
"""

from trials.models import Trial
from trials.signals import demo_loaded

from .models import DeidProfile
from .services import profile_create_version

DEMO_OPTIONS = ("clean_descriptors", "retain_device_identity")


def demo_profile_create(*, trial_id: int) -> DeidProfile | None:
    trial = Trial.objects.get(pk=trial_id)
    if DeidProfile.objects.filter(trial=trial).exists():
        return None
    return profile_create_version(
        actor=None, trial=trial, options=DEMO_OPTIONS,
        note="demo: Basic Profile with Clean Descriptors and Retain Device Identity, so QC can check series "
             "descriptions and scanners")


def _on_demo_loaded(sender, *, trial_id: int, **kwargs) -> None:
    demo_profile_create(trial_id=trial_id)


def connect() -> None:
    demo_loaded.connect(_on_demo_loaded, dispatch_uid="deid.demo_profile")
