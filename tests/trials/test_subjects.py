import datetime

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection

from audit.models import AuditEvent
from trials.exceptions import EnrollmentError
from trials.keys import patient_id_hash
from trials.models import Subject, SubjectArm
from trials.selectors import subject_arm_for_user, subject_list_for_user
from trials.services import subject_arm_assign, subject_enroll

from .factories import ProtocolVersionFactory, TrialFactory

pytestmark = pytest.mark.django_db

ENROLLED = datetime.date(2026, 3, 2)


@pytest.fixture
def version(trial):
    return ProtocolVersionFactory(trial=trial)


def _enroll(actor, site, code="101-0001", patient_id="MRN-0042-ALPHA"):
    return subject_enroll(actor=actor, site=site, code=code, patient_id=patient_id, enrollment_date=ENROLLED)


def test_enrollment_lays_out_the_visits_from_the_charter(version, site1, coordinator_site1):
    subject = _enroll(coordinator_site1, site1)

    visits = {v.timepoint: v for v in subject.visits.all()}
    assert list(visits) == ["BL", "W6", "W12", "W18"]
    assert (visits["BL"].window_start, visits["BL"].window_end) == (ENROLLED - datetime.timedelta(days=28), ENROLLED)
    assert visits["W6"].nominal_date == ENROLLED + datetime.timedelta(days=42)
    assert visits["W6"].window_end == ENROLLED + datetime.timedelta(days=49)
    event = AuditEvent.objects.get(action="trials.subject_enrolled")
    assert event.subject_id == subject.pk and event.subject_code == "101-0001" and event.site_id == site1.pk


def test_the_local_patient_id_is_stored_only_as_a_keyed_hash(version, site1, coordinator_site1, trial):
    subject = _enroll(coordinator_site1, site1)

    assert subject.patient_id_hash == patient_id_hash(trial=trial, patient_id="MRN-0042-ALPHA")
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(s)::text FROM trials_subject s UNION ALL "
                       "SELECT row_to_json(h)::text FROM trials_historicalsubject h UNION ALL "
                       "SELECT row_to_json(a)::text FROM audit_auditevent a")
        assert not any("MRN-0042" in row for (row,) in cursor.fetchall())


def test_the_same_patient_hashes_differently_in_another_trial(version, trial):
    other = TrialFactory()
    assert patient_id_hash(trial=trial, patient_id="MRN-1") != patient_id_hash(trial=other, patient_id="MRN-1")


def test_subject_codes_are_unique_per_trial(version, site1, site2, coordinator_site1, trial_manager):
    _enroll(coordinator_site1, site1)
    with pytest.raises(EnrollmentError, match="already used"):
        _enroll(trial_manager, site2, patient_id="MRN-OTHER")
    with pytest.raises(EnrollmentError, match="already enrolled as 101-0001"):
        _enroll(trial_manager, site2, code="102-0001")
    assert Subject.objects.count() == 1


def test_a_coordinator_enrolls_only_at_their_own_site(version, site2, coordinator_site1):
    with pytest.raises(PermissionDenied):
        _enroll(coordinator_site1, site2, code="102-0001")
    assert not Subject.objects.exists()


def test_coordinators_see_only_their_sites_subjects(version, trial, site1, site2, coordinator_site1,
                                                    coordinator_site2, reader1):
    _enroll(coordinator_site1, site1)
    _enroll(coordinator_site2, site2, code="102-0001", patient_id="MRN-B")

    assert [s.code for s in subject_list_for_user(user=coordinator_site1, trial=trial)] == ["101-0001"]
    assert not subject_list_for_user(user=reader1, trial=trial).exists()


def test_the_arm_is_visible_only_to_unblinded_roles(version, site1, coordinator_site1, trial_manager, qc_analyst,
                                                     auditor, sponsor):
    subject = _enroll(coordinator_site1, site1)
    subject_arm_assign(actor=trial_manager, subject=subject, arm="Drug X 200 mg")

    assert subject_arm_for_user(user=trial_manager, subject=subject) == "Drug X 200 mg"
    assert subject_arm_for_user(user=auditor, subject=subject) == "Drug X 200 mg"
    for blinded in (coordinator_site1, qc_analyst, sponsor):
        assert subject_arm_for_user(user=blinded, subject=subject) is None
    with pytest.raises(PermissionDenied):
        subject_arm_assign(actor=qc_analyst, subject=subject, arm="Placebo")
    assert "Drug X" not in str(AuditEvent.objects.get(action="trials.subject_arm_assigned").details)
    assert SubjectArm.objects.count() == 1
