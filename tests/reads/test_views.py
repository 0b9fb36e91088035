"""The reading pages: worklist, read form (live RECIST, draft, signature, lock, correction), adjudication and
the manager's reader pool, through Django's test client against real PostgreSQL."""

import datetime
import re

import pytest

from audit.models import AuditEvent, ElectronicSignature
from reads.blinding import reading_id
from reads.demo import demo_readers_add
from reads.models import Adjudication, BicrResult, Read, Reader, ReadTask
from reads.services import read_save_draft
from trials.models import Role

from .conftest import BASELINE, PASSWORD, followup, member, read_and_sign, task_of

pytestmark = pytest.mark.django_db

BASELINE_POST = {
    "t-0-organ": "liver", "t-0-long": "30", "t-0-modality": "CT", "t-0-slice": "5",
    "t-1-organ": "LUNG", "t-1-long": "20", "t-1-modality": "CT", "t-1-slice": "5",
    "nt-0-organ": "BONE", "nt-0-modality": "CT", "nt-0-slice": "5",
}


def followup_post(t1="18", t2="12", *, new="NO", nt="PRESENT") -> dict:
    return {"fu-T1-state": "measured", "fu-T1-mm": t1, "fu-T2-state": "measured", "fu-T2-mm": t2,
            "fu-NT1-status": nt, "new_lesions": new}


@pytest.fixture
def subject(reading, enroll, accept):
    subject = enroll("101-0001")
    for timepoint in ("BL", "W6"):
        accept(subject, timepoint)
    return subject


@pytest.fixture
def reader1_client(client, reader1):
    client.force_login(reader1)
    return client


def body(response) -> str:
    return response.content.decode()


# -- worklist and locking -------------------------------------------------------------------------------------

def test_the_worklist_lists_the_readers_tasks_with_what_is_locked_and_why(reader1_client, reading, subject):
    response = reader1_client.get(f"/reads/trials/{reading.trial.pk}/worklist")

    assert response.status_code == 200
    html = body(response)
    bl, w6 = task_of(subject, "BL", "A"), task_of(subject, "W6", "A")
    assert html.index(f'id="reads-task-{bl.pk}"') < html.index(f'id="reads-task-{w6.pk}"')
    row = html[html.index(f'id="reads-task-{w6.pk}"'):]
    assert "Locked" in row[:800] and "sign the earlier timepoint(s) first: Baseline" in row[:800]
    assert f'href="/reads/tasks/{bl.pk}"' in html and f'href="/reads/tasks/{w6.pk}"' not in html


def test_a_later_timepoint_cannot_be_opened_before_the_baseline_is_signed(reader1_client, subject):
    w6 = task_of(subject, "W6", "A")

    response = reader1_client.get(f"/reads/tasks/{w6.pk}")
    assert response.status_code == 409
    assert "Baseline" in body(response) and "locked" in body(response)
    assert reader1_client.post(f"/reads/tasks/{w6.pk}/open").status_code == 302
    w6.refresh_from_db()
    assert w6.status == ReadTask.Status.OPEN  # refused: still not started


@pytest.mark.parametrize("who", ["coordinator_site1", "sponsor", "qc_analyst", "outsider", "trial_manager"])
def test_people_who_do_not_read_get_404_on_reader_pages(client, request, reading, subject, who):
    client.force_login(request.getfixturevalue(who))
    task = task_of(subject, "BL", "A")
    if who != "trial_manager":
        assert client.get(f"/reads/trials/{reading.trial.pk}/worklist").status_code == 404
    assert client.get(f"/reads/tasks/{task.pk}").status_code == 404
    assert client.post(f"/reads/tasks/{task.pk}/open").status_code == 404
    assert client.post(f"/reads/tasks/{task.pk}/sign", {**BASELINE_POST, "password": PASSWORD}).status_code == 404
    assert not Read.objects.exists()


def test_the_other_reader_gets_404_on_my_task(client, reader2, subject):
    client.force_login(reader2)
    assert client.get(f"/reads/tasks/{task_of(subject, 'BL', 'A').pk}").status_code == 404


def test_anonymous_users_are_sent_to_sign_in(client, subject):
    response = client.get(f"/reads/tasks/{task_of(subject, 'BL', 'A').pk}")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# -- the read form ---------------------------------------------------------------------------------------------

def test_starting_a_read_opens_the_task_and_shows_the_form(reader1_client, subject):
    task = task_of(subject, "BL", "A")
    page = body(reader1_client.get(f"/reads/tasks/{task.pk}"))
    assert "Start this read" in page and 'id="read-form"' not in page

    reader1_client.post(f"/reads/tasks/{task.pk}/open")

    task.refresh_from_db()
    assert task.status == ReadTask.Status.IN_PROGRESS
    page = body(reader1_client.get(f"/reads/tasks/{task.pk}"))
    assert 'id="read-form"' in page and "Target 1 organ" in page and 'id="reads-viewer-slot"' in page


@pytest.fixture
def opened_baseline(reader1_client, subject):
    task = task_of(subject, "BL", "A")
    reader1_client.post(f"/reads/tasks/{task.pk}/open")
    return task


def test_live_baseline_validation_gives_the_sum_for_a_valid_selection(reader1_client, opened_baseline):
    response = reader1_client.post(f"/reads/tasks/{opened_baseline.pk}/assess", BASELINE_POST, HTTP_HX_REQUEST="true")

    html = body(response)
    assert response.status_code == 200 and html.lstrip().startswith('<section id="read-assessment"')
    assert "Valid RECIST 1.1 selection" in html and "50 mm" in html
    assert not Read.objects.exists()  # live validation saves nothing


def test_live_baseline_validation_explains_the_recist_codes(reader1_client, opened_baseline):
    data = {**BASELINE_POST, "t-1-organ": "LIVER", "t-2-organ": "LIVER", "t-2-long": "15", "t-2-modality": "CT",
            "t-3-organ": "LYMPH NODE", "t-3-nodal": "on", "t-3-short": "8", "t-3-modality": "CT",
            "t-4-organ": "LUNG", "t-4-long": "7", "t-4-modality": "CT"}

    html = body(reader1_client.post(f"/reads/tasks/{opened_baseline.pk}/assess", data))

    assert "MAX_PER_ORGAN_EXCEEDED:LIVER" in html and "More than 2 target lesions in Liver" in html
    assert "NORMAL_NODE:T4" in html and "normal lymph node" in html
    assert "NOT_MEASURABLE:T5" in html and "at least 10 mm" in html
    assert "Valid RECIST" not in html


def test_the_form_catches_malformed_input_before_the_engine(reader1_client, opened_baseline):
    data = {**BASELINE_POST, "t-0-long": "thirty", "t-1-organ": "", "t-1-long": "20"}

    html = body(reader1_client.post(f"/reads/tasks/{opened_baseline.pk}/assess", data))

    assert "Target 1 long axis: &#x27;thirty&#x27; is not a number of mm" in html
    assert "Target 2: choose the organ" in html


def test_a_draft_with_form_errors_is_not_saved(reader1_client, opened_baseline):
    response = reader1_client.post(f"/reads/tasks/{opened_baseline.pk}/draft", {"t-0-organ": "LIVER"})
    assert response.status_code == 400 and "enter the diameter in mm" in body(response)
    assert not Read.objects.exists()


def test_save_draft_then_sign_locks_the_read_with_its_signature(reader1_client, opened_baseline, reader1):
    task = opened_baseline
    assert reader1_client.post(f"/reads/tasks/{task.pk}/draft", BASELINE_POST).status_code == 302
    draft = Read.objects.get(task=task)
    assert draft.status == Read.Status.DRAFT
    assert [t["organ"] for t in draft.lesions["targets"]] == ["LIVER", "LUNG"] and draft.lesions["targets"][0]["mm"] == 30
    page = body(reader1_client.get(f"/reads/tasks/{task.pk}"))
    assert 'value="LIVER"' in page and "Valid RECIST 1.1 selection" in page  # the draft comes back, checked

    response = reader1_client.post(f"/reads/tasks/{task.pk}/sign", {**BASELINE_POST, "password": PASSWORD})

    assert response.status_code == 302
    read = Read.objects.get(task=task)
    assert read.status == Read.Status.SIGNED and read.signature.signer == reader1
    page = body(reader1_client.get(f"/reads/tasks/{task.pk}"))
    assert "Signed and locked" in page and 'id="read-form"' not in page
    assert "Read and assessed" in page and "Valid: the record is unchanged since signing" in page
    assert "Correct this read" in page
    # a signed read takes no draft: the services refuse it and the page says so
    response = reader1_client.post(f"/reads/tasks/{task.pk}/draft", BASELINE_POST)
    assert response.status_code == 409 and "signed and locked" in body(response)


def test_a_wrong_password_signs_nothing(reader1_client, opened_baseline, reader1):
    task = opened_baseline
    reader1_client.post(f"/reads/tasks/{task.pk}/draft", BASELINE_POST)

    response = reader1_client.post(f"/reads/tasks/{task.pk}/sign", {**BASELINE_POST, "password": "wrong"})

    assert response.status_code == 400
    assert "Not signed: the password did not match" in body(response)
    task.refresh_from_db()
    assert task.status == ReadTask.Status.IN_PROGRESS
    assert Read.objects.get(task=task).status == Read.Status.DRAFT
    assert not ElectronicSignature.objects.exists()
    assert not AuditEvent.objects.filter(action="reads.read_signed").exists()


def test_signing_an_invalid_baseline_is_refused_with_the_codes(reader1_client, opened_baseline):
    data = {**BASELINE_POST, "t-1-long": "6"}  # 6 mm on CT: not measurable
    response = reader1_client.post(f"/reads/tasks/{opened_baseline.pk}/sign", {**data, "password": PASSWORD})

    assert response.status_code == 400 and "NOT_MEASURABLE:T2" in body(response)
    assert not ElectronicSignature.objects.exists()


def test_a_malformed_stored_draft_gives_a_clear_error_not_a_500(reader1_client, opened_baseline, reader1):
    # an API client saved a baseline whose lesion has no modality; signing it must say what is wrong
    broken = {"targets": [{"id": "T1", "organ": "LIVER", "nodal": False, "mm": 30}], "non_targets": []}
    read_save_draft(task=opened_baseline, user=reader1, lesions=broken)

    page = reader1_client.get(f"/reads/tasks/{opened_baseline.pk}")
    assert page.status_code == 200 and "malformed" in body(page) and "modality" in body(page)


def test_a_draft_with_a_non_numeric_diameter_is_shown_with_the_engines_error(reader1_client, opened_baseline,
                                                                            reader1):
    broken = {"targets": [{"id": "T1", "organ": "LIVER", "nodal": False, "mm": "abc", "modality": "CT",
                           "slice_thickness_mm": 5}], "non_targets": []}
    read_save_draft(task=opened_baseline, user=reader1, lesions=broken)

    page = reader1_client.get(f"/reads/tasks/{opened_baseline.pk}")
    assert page.status_code == 200 and "malformed" in body(page)
    response = reader1_client.post(f"/reads/tasks/{opened_baseline.pk}/sign", {**BASELINE_POST, "password": "x"})
    assert response.status_code == 400  # the form's own lesions replace the draft; the password is still wrong
    assert not ElectronicSignature.objects.exists()


def test_a_followup_shows_the_computed_response_live_and_signs(reader1_client, subject):
    read_and_sign(subject, "BL", "A", BASELINE)
    w6 = task_of(subject, "W6", "A")
    reader1_client.post(f"/reads/tasks/{w6.pk}/open")
    page = body(reader1_client.get(f"/reads/tasks/{w6.pk}"))
    assert "fu-T1-mm" in page and "LIVER" in page and "NT1 status" in page

    html = body(reader1_client.post(f"/reads/tasks/{w6.pk}/assess", followup_post()))
    assert '<td id="resp-sum">30 mm</td>' in html and '<td id="resp-target">PR</td>' in html
    assert 'id="resp-overall" class="resp">PR<' in html

    html = body(reader1_client.post(f"/reads/tasks/{w6.pk}/assess", followup_post(new="YES")))
    assert 'id="resp-overall" class="resp">PD<' in html  # a new lesion is progression whatever the sum

    html = body(reader1_client.post(f"/reads/tasks/{w6.pk}/assess", {**followup_post("8 + 6", ""),
                                                                       "fu-T2-state": "TSTM"}))
    assert '<td id="resp-sum">19 mm</td>' in html  # a split lesion's parts summed, TSTM counts 5 mm

    assert reader1_client.post(f"/reads/tasks/{w6.pk}/sign", {**followup_post(), "password": PASSWORD}
                               ).status_code == 302
    read = Read.objects.get(task=w6)
    assert read.overall == "PR" and read.lesions["non_targets"] == {"NT1": "PRESENT"}


def test_a_followup_rejects_a_missing_measurement(reader1_client, subject):
    read_and_sign(subject, "BL", "A", BASELINE)
    w6 = task_of(subject, "W6", "A")
    reader1_client.post(f"/reads/tasks/{w6.pk}/open")

    html = body(reader1_client.post(f"/reads/tasks/{w6.pk}/assess", followup_post(t1="")))
    assert "T1 (LIVER): enter the diameter in mm" in html
    html = body(reader1_client.post(f"/reads/tasks/{w6.pk}/assess", {**followup_post(), "new_lesions": "MAYBE"}))
    assert "New lesions: answer no, yes or equivocal" in html


def test_a_correction_needs_a_reason_and_makes_a_new_signed_version(reader1_client, subject):
    read_and_sign(subject, "BL", "A", BASELINE)
    task = task_of(subject, "BL", "A")
    page = body(reader1_client.get(f"/reads/tasks/{task.pk}?correct=1"))
    assert "Reason for the correction" in page and 'value="LIVER"' in page

    corrected = {**BASELINE_POST, "t-0-long": "32"}
    response = reader1_client.post(f"/reads/tasks/{task.pk}/correct", {**corrected, "password": PASSWORD})
    assert response.status_code == 400 and "say why the read is corrected" in body(response)
    response = reader1_client.post(f"/reads/tasks/{task.pk}/correct",
                                   {**corrected, "password": "nope", "reason": "T1 remeasured"})
    assert response.status_code == 400 and "password did not match" in body(response)
    assert Read.objects.filter(task=task).count() == 1

    response = reader1_client.post(f"/reads/tasks/{task.pk}/correct",
                                   {**corrected, "password": PASSWORD, "reason": "T1 remeasured on thinner slices"})

    assert response.status_code == 302
    old, new = Read.objects.filter(task=task).order_by("version")
    assert old.status == Read.Status.CORRECTED and new.status == Read.Status.SIGNED
    assert new.lesions["targets"][0]["mm"] == 32 and new.correction_reason == "T1 remeasured on thinner slices"
    page = body(reader1_client.get(f"/reads/tasks/{task.pk}"))
    assert "Version 2" in page and "Version 1 · Corrected" in page and "T1 remeasured on thinner slices" in page


# -- adjudication -----------------------------------------------------------------------------------------------

@pytest.fixture
def disagreement(subject):
    read_and_sign(subject, "BL", "A", BASELINE)
    read_and_sign(subject, "BL", "B", BASELINE)
    read_and_sign(subject, "W6", "A", followup(18, 12))
    read_and_sign(subject, "W6", "B", followup(18, 12, new_lesions="YES"))
    return Adjudication.objects.get(subject=subject, status=Adjudication.Status.OPEN)


def test_the_adjudicator_sees_a_and_b_with_the_triggers_in_words(client, adjudicator, reading, disagreement):
    client.force_login(adjudicator)
    listing = body(client.get(f"/reads/trials/{reading.trial.pk}/adjudications"))
    assert reading_id(subject=disagreement.subject) in listing and "Awaiting you" in listing
    assert "101-0001" not in listing  # the subject code names the site
    assert "overall response differs at W6: read A PR, read B PD" in listing

    page = body(client.get(f"/reads/adjudications/{disagreement.pk}"))
    assert "Read A" in page and "Read B" in page and "New lesions: YES" in page
    assert "Best overall response" in page and "Adjudicated: I select this read" in page


def test_resolving_needs_a_choice_a_rationale_and_the_password(client, adjudicator, disagreement, subject):
    client.force_login(adjudicator)
    url = f"/reads/adjudications/{disagreement.pk}/resolve"
    response = client.post(url, {"selected": "", "rationale": "x", "password": PASSWORD})
    assert response.status_code == 400 and "select read A or read B" in body(response)
    response = client.post(url, {"selected": "B", "rationale": " ", "password": PASSWORD})
    assert response.status_code == 400 and "say why this read is selected" in body(response)
    response = client.post(url, {"selected": "B", "rationale": "the new liver lesion is real", "password": "no"})
    assert response.status_code == 400 and "password did not match" in body(response)
    disagreement.refresh_from_db()
    assert disagreement.status == Adjudication.Status.OPEN and not disagreement.signature_id

    response = client.post(url, {"selected": "B", "rationale": "the new liver lesion is real", "password": PASSWORD})

    assert response.status_code == 302
    disagreement.refresh_from_db()
    assert disagreement.status == Adjudication.Status.RESOLVED and disagreement.selected == "B"
    assert BicrResult.objects.get(visit__timepoint="W6", subject=subject).overall == "PD"
    page = body(client.get(f"/reads/adjudications/{disagreement.pk}"))
    assert "Resolved: read B selected" in page and "the new liver lesion is real" in page and "Valid" in page
    assert client.post(url, {"selected": "A", "rationale": "again", "password": PASSWORD}).status_code == 409


@pytest.mark.parametrize("who", ["reader1", "reader2", "trial_manager", "sponsor", "outsider"])
def test_only_the_assigned_adjudicator_reaches_an_adjudication(client, request, reading, disagreement, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/reads/adjudications/{disagreement.pk}").status_code == 404
    assert client.post(f"/reads/adjudications/{disagreement.pk}/resolve",
                       {"selected": "A", "rationale": "x", "password": PASSWORD}).status_code == 404
    assert client.get(f"/reads/trials/{reading.trial.pk}/adjudications").status_code == 404


# -- the reader pool --------------------------------------------------------------------------------------------

def test_the_manager_adds_trains_and_deactivates_a_reader(client, trial_manager, reading):
    reader3 = member(reading.trial, Role.READER, "reader3")
    client.force_login(trial_manager)
    pool = f"/reads/trials/{reading.trial.pk}/pool"
    html = body(client.get(pool))
    assert "reader3" in html
    adjudicator_row = html[html.index(f'id="reads-reader-{reading.readers["adjudicator"].pk}"'):]
    assert "Qualified" in adjudicator_row[:1500].split("</tr>")[0]  # trained adjudicators qualify too

    assert client.post(f"{pool}/add", {"user": reader3.pk, "qualifications": "RECIST 1.1"}).status_code == 302
    reader = Reader.objects.get(user=reader3)
    assert "Not qualified yet" in body(client.get(pool))

    response = client.post(f"{pool}/readers/{reader.pk}/training",
                           {"topic": "RECIST 1.1", "trained_on": "2026-13-01", "trainer": "Dr Lead"})
    assert response.status_code == 400 and "YYYY-MM-DD" in body(response)
    response = client.post(f"{pool}/readers/{reader.pk}/training",
                           {"topic": "RECIST 1.1", "trained_on": "2026-03-01", "trainer": "Dr Lead"})
    assert response.status_code == 302 and reader.trainings.get().protocol_version == reading.version
    assert f'id="reads-reader-{reader.pk}"' in body(client.get(pool))

    response = client.post(f"{pool}/readers/{reader.pk}/deactivate", {"reason": ""})
    assert response.status_code == 400 and "say why the reader leaves the pool" in body(response)
    assert client.post(f"{pool}/readers/{reader.pk}/deactivate", {"reason": "left the core lab"}).status_code == 302
    reader.refresh_from_db()
    assert not reader.active and reader.deactivated_reason == "left the core lab"


def test_the_manager_reassigns_and_rereads_with_reasons(client, trial_manager, reading, subject, reader3):
    read_and_sign(subject, "BL", "A", BASELINE)
    client.force_login(trial_manager)
    pool = f"/reads/trials/{reading.trial.pk}/pool"
    bl_b = task_of(subject, "BL", "B")

    response = client.post(f"{pool}/tasks/{bl_b.pk}/reassign", {"reader": reader3.pk, "reason": ""})
    assert response.status_code == 400 and "say why the subject is reassigned" in body(response)
    assert client.post(f"{pool}/tasks/{bl_b.pk}/reassign",
                       {"reader": reader3.pk, "reason": "reader2 left"}).status_code == 302
    assert task_of(subject, "BL", "B").reader == reader3
    bl_b.refresh_from_db()
    assert bl_b.status == ReadTask.Status.REASSIGNED and bl_b.replaced_reason == "reader2 left"

    bl_a = task_of(subject, "BL", "A")
    assert client.post(f"{pool}/tasks/{bl_a.pk}/reread", {"reason": "wrong series measured"}).status_code == 302
    bl_a.refresh_from_db()
    assert bl_a.status == ReadTask.Status.SUPERSEDED
    assert Read.objects.get(task=bl_a).status == Read.Status.SUPERSEDED  # kept, marked
    html = body(client.get(pool))
    assert "wrong series measured" in html and "reader2 left" in html
    # the manager can tell which subject a reader's question is about
    row = re.search(rf'<tr id="reads-pool-task-{bl_a.pk}">.*?</tr>', html, re.S).group(0)
    assert subject.code in row and reading_id(subject=subject) in row


@pytest.mark.parametrize("who", ["reader1", "adjudicator", "coordinator_site1", "sponsor", "outsider"])
def test_only_trial_managers_reach_the_pool(client, request, reading, subject, who):
    client.force_login(request.getfixturevalue(who))
    pool = f"/reads/trials/{reading.trial.pk}/pool"
    task = task_of(subject, "BL", "A")
    assert client.get(pool).status_code == 404
    assert client.post(f"{pool}/tasks/{task.pk}/reread", {"reason": "x"}).status_code == 404
    task.refresh_from_db()
    assert task.status == ReadTask.Status.OPEN


def test_reading_home_and_navigation(client, reader1, trial_manager, coordinator_site1, reading):
    client.force_login(reader1)
    html = body(client.get("/reads/"))
    assert f"/reads/trials/{reading.trial.pk}/worklist" in html and "/pool" not in html
    assert 'href="/reads/"' in html  # the "Reading" navigation entry
    client.force_login(coordinator_site1)
    assert client.get("/reads/").status_code == 404
    assert 'href="/reads/"' not in body(client.get("/"))


def test_the_demo_puts_its_readers_in_the_pool(django_capture_on_commit_callbacks):
    from django.core.management import call_command

    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")

    readers = Reader.objects.filter(trial__protocol_number="CORE-DEMO-01").select_related("user")
    assert sorted(r.user.username for r in readers) == ["adjudicator", "reader1", "reader2"]
    assert all(r.trainings.filter(protocol_version__is_current=True).exists() for r in readers)
    assert demo_readers_add(trial_id=readers[0].trial_id) == []  # idempotent
    assert datetime.date.today() >= readers[0].trainings.get().trained_on
