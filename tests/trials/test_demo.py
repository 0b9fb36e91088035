import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from trials.demo import DEMO_USERS
from trials.models import Membership, ProtocolVersion, Role, Trial

pytestmark = pytest.mark.django_db


def test_load_demo_creates_a_trial_two_sites_a_schedule_and_every_role(capsys, rf):
    call_command("load_demo")

    trial = Trial.objects.get()
    assert trial.sites.count() == 2
    charter = ProtocolVersion.objects.get(trial=trial, is_current=True).charter
    assert [v["code"] for v in charter["visits"]] == ["BL", "W6", "W12", "W18"]
    assert {p["code"] for p in charter["procedures"]} == {"CT_CAP", "MR_BRAIN"}
    assert set(Membership.objects.values_list("role", flat=True)) == set(Role.values)
    out = capsys.readouterr().out
    for username, _, _, password in DEMO_USERS:
        assert f"{username}" in out and password in out
        assert authenticate(rf.get("/"), username=username, password=password) is not None
    assert AuditEvent.objects.filter(action="trials.role_granted").count() == len(DEMO_USERS)


def test_load_demo_if_empty_leaves_an_existing_database_alone(trial, capsys):
    call_command("load_demo", "--if-empty")
    assert Trial.objects.count() == 1
    assert "not loaded" in capsys.readouterr().out


def test_load_demo_twice_is_refused():
    call_command("load_demo")
    with pytest.raises(CommandError, match="already exists"):
        call_command("load_demo")
