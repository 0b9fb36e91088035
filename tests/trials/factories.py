import datetime

import factory
from django.contrib.auth import get_user_model

from trials.models import Membership, ProtocolVersion, Role, Site, Trial

DEMO_SCHEDULE = [
    {"code": "BL", "label": "Baseline", "day": 0, "window_before": 28, "window_after": 0},
    {"code": "W8", "label": "Week 8", "day": 56, "window_before": 7, "window_after": 7},
]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class TrialFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Trial

    protocol_number = factory.Sequence(lambda n: f"CL-{n:04d}")
    title = factory.Sequence(lambda n: f"Imaging sub-study {n}")
    sponsor = "Example Pharma"
    phase = Trial.Phase.PHASE_3
    status = Trial.Status.ACTIVE


class ProtocolVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProtocolVersion

    trial = factory.SubFactory(TrialFactory)
    label = "1.0"
    effective_date = datetime.date(2026, 1, 15)
    is_current = True
    visit_schedule = factory.LazyFunction(lambda: [dict(v) for v in DEMO_SCHEDULE])


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    trial = factory.SubFactory(TrialFactory)
    number = factory.Sequence(lambda n: f"{100 + n}")
    name = factory.Sequence(lambda n: f"General Hospital {n}")
    country = "DE"
    time_zone = "Europe/Berlin"
    status = Site.Status.ACTIVE


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    trial = factory.SubFactory(TrialFactory)
    role = Role.QC_ANALYST
    site = None
