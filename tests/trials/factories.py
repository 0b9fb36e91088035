import copy
import datetime

import factory
from django.contrib.auth import get_user_model

from trials.charter import DEMO_CHARTER
from trials.models import Membership, ProtocolVersion, Role, Scanner, Site, Trial


def demo_charter(**procedure_changes) -> dict:
    """A fresh copy of the demo charter; ``CT_CAP={"requalify": True}`` edits one procedure."""
    charter = copy.deepcopy(DEMO_CHARTER)
    for code, changes in procedure_changes.items():
        next(p for p in charter["procedures"] if p["code"] == code).update(changes)
    return charter


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
    approved_on = datetime.date(2026, 1, 8)
    is_current = True
    charter = factory.LazyFunction(demo_charter)


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


class ScannerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Scanner

    site = factory.SubFactory(SiteFactory)
    manufacturer = "SIEMENS"
    model = "SOMATOM Force"
    serial = factory.Sequence(lambda n: f"7{n:05d}")
    software_version = "syngo CT VA50A"
    station_name = "CT01"
    modality = "CT"
