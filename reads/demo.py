"""The demo trial's reader pool: its reader and adjudicator users, trained on the current charter version.

``trials.demo.demo_load`` builds the demo trial but may not import reads; it sends ``trials.signals.demo_loaded``
once the trial has committed, and ``demo_readers_add`` answers it. ``manage.py load_demo`` (and so
``make run``) therefore loads a demo whose readers can read.
"""

import datetime

from django.db import transaction

from trials.demo import DEMO_USERS
from trials.models import ProtocolVersion, Role, Trial
from trials.signals import demo_loaded

DEMO_TRAINED_ON = datetime.date(2026, 1, 22)


@transaction.atomic
def demo_readers_add(*, trial_id: int) -> list:
    """Put the demo's reader and adjudicator users in the pool with training on the current version.
    Idempotent: users already in the pool are left as they are. The system's act (actor None)."""
    from django.contrib.auth import get_user_model

    from .models import Reader
    from .services import reader_add, reader_training_add

    trial = Trial.objects.get(pk=trial_id)
    version = ProtocolVersion.objects.filter(trial=trial, is_current=True).first()
    users = get_user_model().objects.filter(
        username__in=[u for u, role, _, _ in DEMO_USERS if role in (Role.READER, Role.ADJUDICATOR)])
    added = []
    for user in users.order_by("username"):
        if version is None or Reader.objects.filter(trial=trial, user=user).exists():
            continue
        reader = reader_add(actor=None, trial=trial, user=user)
        reader_training_add(actor=None, reader=reader, protocol_version=version,
                            topic="RECIST 1.1 and the imaging charter's reading rules", trained_on=DEMO_TRAINED_ON,
                            trainer="Corelab medical lead (demo)")
        added.append(reader)
    return added


def _on_demo_loaded(sender, *, trial_id: int, **kwargs) -> None:
    demo_readers_add(trial_id=trial_id)


def connect() -> None:
    demo_loaded.connect(_on_demo_loaded, dispatch_uid="reads.demo_readers")
