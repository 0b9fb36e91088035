"""Two analysts accepting the same study at once: the row lock lets one through, the other is told."""

import threading

import pytest
from django.db import connection, transaction

from intake.models import ImagingStudy
from qc.exceptions import StudyAlreadyDecided
from qc.models import QcDecision
from qc.services import qc_run, study_accept
from trials.models import Role

from ..trials.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_accepts_one_wins_the_other_gets_a_clear_error(make_study, trial, qc_analyst):
    second_analyst = UserFactory(username="qc2")
    MembershipFactory(user=second_analyst, trial=trial, role=Role.QC_ANALYST)
    study = make_study(count=5)
    qc_run(study_id=study.pk, trigger="deidentified")
    locked = threading.Event()
    outcomes: dict[str, object] = {}

    def first():
        try:
            with transaction.atomic():
                study_accept(analyst=qc_analyst, study=study)
                locked.set()  # holds the row lock until this transaction commits
                threading.Event().wait(0.8)
            outcomes["first"] = "accepted"
        except Exception as exc:  # noqa: BLE001
            outcomes["first"] = exc
            locked.set()
        finally:
            connection.close()

    def second():
        locked.wait(10)
        try:
            study_accept(analyst=second_analyst, study=study)  # waits on the lock, then finds it decided
            outcomes["second"] = "accepted"
        except Exception as exc:  # noqa: BLE001
            outcomes["second"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert outcomes["first"] == "accepted"
    assert isinstance(outcomes["second"], StudyAlreadyDecided)
    assert str(outcomes["second"]).startswith("this study was already accepted by qc at ")
    assert ImagingStudy.objects.get(pk=study.pk).status == ImagingStudy.Status.ACCEPTED
    assert list(QcDecision.objects.values_list("analyst__username", flat=True)) == ["qc"]
