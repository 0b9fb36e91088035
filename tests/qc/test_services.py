"""qc_run, study_accept and study_reject on studies that went through intake and de-identification."""

import datetime

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied

from audit.models import AuditEvent
from intake.exceptions import InvalidTransition
from intake.models import ImagingStudy
from intake.services import study_transition
from qc import receivers
from qc.exceptions import QcError, StudyAlreadyDecided
from qc.models import QcDecision, QcRun
from qc.services import qc_run, study_accept, study_reject
from trials.models import SiteNotice

from .conftest import deidentify, upload
from .files import ct_series

pytestmark = pytest.mark.django_db
S = ImagingStudy.Status


def _results(run):
    return {(r.rule, r.outcome) for r in run.results.all()}


def test_a_deidentified_study_is_checked_and_queued_for_review(make_study):
    study = make_study(count=6)
    assert study.status == S.DEIDENTIFIED

    run = qc_run(study_id=study.pk, trigger="deidentified")

    study.refresh_from_db()
    assert study.status == S.QC_PENDING
    assert run.charter_version == "1.0" and run.instance_count == 6 and run.failed == 0, list(
        run.results.filter(outcome__in=["fail", "warn"]).values_list("rule", "message"))
    assert {rule for rule, _ in _results(run)} >= {"modality", "slice_thickness", "contrast", "series_present",
                                                  "visit_window", "scanner", "missing_slices", "integrity"}
    assert set(run.results.values_list("charter_version", flat=True)) == {"1.0"}
    event = AuditEvent.objects.get(action="qc.run_completed", target_id=str(run.pk))
    assert event.details["passed"] == run.passed and event.details["failed"] == 0
    assert ["slice thickness (mm)", "5.000000"] in run.series_metadata[0]["values"]


def test_a_study_with_a_missing_slice_and_thick_slices_fails_those_checks(make_study):
    study = make_study(count=8, skip=(3,), SliceThickness="6")
    run = qc_run(study_id=study.pk, trigger="deidentified")
    failed = {r.rule for r in run.results.filter(outcome="fail")}
    assert failed == {"missing_slices", "slice_thickness"}
    assert run.failed == 2


def test_an_out_of_window_study_fails_on_the_original_date_not_the_shifted_one(tmp_path, ready_site):
    paths = ct_series(tmp_path, count=5, BodyPartExamined="CHEST")
    import pydicom
    for path in paths:  # acquired a week after the baseline window closed
        ds = pydicom.dcmread(path)
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20260309"
        ds.save_as(path, enforce_file_format=True)
    study = deidentify(upload(ready_site, paths))
    run = qc_run(study_id=study.pk, trigger="deidentified")
    window = run.results.get(rule="visit_window")
    assert (window.outcome, window.measured) == ("fail", "2026-03-09")


def test_running_again_on_the_same_instances_is_the_same_run(make_study):
    study = make_study(count=5)
    first = qc_run(study_id=study.pk, trigger="deidentified")
    again = qc_run(study_id=study.pk, trigger="sweeper")
    assert again.pk == first.pk and QcRun.objects.count() == 1
    assert AuditEvent.objects.filter(action="qc.run_completed").count() == 1


def test_a_study_that_gains_instances_gets_a_new_run_and_the_latest_is_shown(tmp_path, ready_site):
    from pydicom.uid import generate_uid

    from qc.selectors import latest_run

    uid = generate_uid()
    study = deidentify(upload(ready_site, ct_series(tmp_path / "a", count=5, study_uid=uid,
                                                    BodyPartExamined="CHEST")))
    first = qc_run(study_id=study.pk, trigger="deidentified")
    more = ct_series(tmp_path / "b", count=3, study_uid=uid, series_number=3, description="CT AXIAL",
                     BodyPartExamined="CHEST")
    assert upload(ready_site, more).pk == study.pk
    study = deidentify(study)
    assert study.status == S.DEIDENTIFIED  # back through de-identification, as intake's machine says

    second = qc_run(study_id=study.pk, trigger="deidentified")
    assert second.pk != first.pk and second.instance_count == 8
    assert latest_run(study=study) == second


def test_studies_not_deidentified_are_not_checked(make_study):
    study = make_study(count=5)
    study_transition(actor=None, study=study, to=S.DEIDENTIFYING, reason="test")
    assert qc_run(study_id=study.pk, trigger="deidentified") is None
    assert qc_run(study_id=999999, trigger="deidentified") is None


def test_the_receiver_enqueues_qc_when_a_study_is_deidentified(monkeypatch):
    enqueued = []
    monkeypatch.setattr(receivers, "qc_enqueue", lambda **kw: enqueued.append(kw))
    receivers.on_study_status_changed(ImagingStudy, study_id=5, before="deidentifying", after="deidentified")
    receivers.on_study_status_changed(ImagingStudy, study_id=6, before="received", after="deidentifying")
    assert enqueued == [{"study_id": 5, "trigger": "deidentified"}]


def test_the_sweeper_finds_studies_left_deidentified(make_study, settings):
    from django.utils import timezone

    from config import sweeper

    study = make_study(count=5)
    assert "qc.studies" in sweeper.registered()
    assert receivers.stuck_studies(timezone.now() - settings.STUCK_WORK_AFTER) == []
    assert receivers.stuck_studies(timezone.now() + datetime.timedelta(seconds=1)) == [study.pk]


def test_the_task_runs_the_service(make_study):
    from qc.tasks import qc_run_task

    study = make_study(count=5)
    run_id = qc_run_task.run(study.pk, "sweeper")
    assert QcRun.objects.get(pk=run_id).trigger == "sweeper"


# -- decisions ----------------------------------------------------------------------------------------------

@pytest.fixture
def pending(make_study):
    def make(**options):
        study = make_study(count=5, **options)
        qc_run(study_id=study.pk, trigger="deidentified")
        study.refresh_from_db()
        return study
    return make


def test_accepting_supersedes_the_earlier_versions(pending, qc_analyst):
    first = pending(folder="v1")
    study_reject(analyst=qc_analyst, study=first, reason="slice gap")
    second = pending(folder="v2")
    third = pending(folder="v3")
    assert [first.version, second.version, third.version] == [1, 2, 3]

    study_accept(analyst=qc_analyst, study=third, note="good rescan")

    statuses = dict(ImagingStudy.objects.values_list("version", "status"))
    assert statuses == {1: S.SUPERSEDED, 2: S.SUPERSEDED, 3: S.ACCEPTED}
    decision = QcDecision.objects.get(study=third)
    assert (decision.decision, decision.reason, sorted(decision.superseded)) == ("accept", "good rescan",
                                                                                 [first.pk, second.pk])
    assert decision.run == QcRun.objects.get(study=third)
    event = AuditEvent.objects.get(action="qc.study_accepted", target_id=str(third.pk))
    assert sorted(event.details["superseded"]) == [first.pk, second.pk] and event.actor == qc_analyst
    # history saw each change (save(), not update())
    assert first.history.filter(status=S.SUPERSEDED).exists() and second.history.filter(status=S.SUPERSEDED).exists()


def test_accept_is_only_from_qc_pending_and_only_once(pending, make_study, qc_analyst):
    study = pending()
    study_accept(analyst=qc_analyst, study=study)
    with pytest.raises(StudyAlreadyDecided, match="already accepted by qc"):
        study_accept(analyst=qc_analyst, study=study)
    fresh = make_study(count=5, folder="fresh")
    with pytest.raises(InvalidTransition, match="not awaiting QC"):
        study_accept(analyst=qc_analyst, study=fresh)


def test_reject_needs_a_reason_and_notifies_the_site(pending, qc_analyst, coordinator_site1):
    study = pending()
    with pytest.raises(QcError, match="say why"):
        study_reject(analyst=qc_analyst, study=study, reason="  ")
    study_reject(analyst=qc_analyst, study=study, reason="Portal venous phase missing")

    study.refresh_from_db()
    assert study.status == S.REJECTED
    notice = SiteNotice.objects.get(site=study.site)
    assert "rejected at QC" in notice.subject and "Portal venous phase missing" in notice.body
    event = AuditEvent.objects.get(action="qc.study_rejected", target_id=str(study.pk))
    assert event.reason == "Portal venous phase missing"


def test_the_site_is_emailed_when_a_study_is_rejected(pending, qc_analyst, coordinator_site1,
                                                      django_capture_on_commit_callbacks):
    study = pending()
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        study_reject(analyst=qc_analyst, study=study, reason="wrong subject")
    assert [m.to for m in mail.outbox] == [[coordinator_site1.email]]
    assert "wrong subject" in mail.outbox[0].body


@pytest.mark.parametrize("who", ["coordinator_site1", "reader1", "outsider", "trial_manager"])
def test_only_qc_analysts_decide(pending, request, who):
    study = pending()
    user = request.getfixturevalue(who)
    with pytest.raises(PermissionDenied):
        study_accept(analyst=user, study=study)
    with pytest.raises(PermissionDenied):
        study_reject(analyst=user, study=study, reason="no")
