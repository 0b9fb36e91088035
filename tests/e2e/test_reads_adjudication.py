"""Two readers read a demo subject's baseline and week 6 in a real browser (the responses appear as they
measure), sign with their passwords and disagree (reader B sees a new lesion); the adjudicator opens the
adjudication, sees reads A and B, selects B with a rationale and signs; the BICR result is then read B's."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from qc.services import study_accept
from reads.blinding import reading_id
from reads.models import Adjudication, BicrResult, ReadTask
from trials.models import Subject

from ..reads.conftest import pending_study
from .helpers import PASSWORDS, demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SUBJECT = "101-0001"


def _accept_timepoints() -> Subject:
    """QC accepts every study the charter requires at BL and W6 (intake itself is tested elsewhere)."""
    subject = Subject.objects.get(code=SUBJECT)
    qc = get_user_model().objects.get(username="qc")
    for timepoint in ("BL", "W6"):
        visit = subject.visits.get(timepoint=timepoint)
        for procedure in visit.procedures:
            study_accept(analyst=qc, study=pending_study(subject, visit, procedure))
    return subject


def _sign(page, username: str) -> None:
    page.get_by_role("button", name="Sign…").click()
    dialog = page.locator("#read-sign-dialog")
    expect(dialog).to_contain_text("Read and assessed")
    dialog.get_by_label("Password").fill(PASSWORDS[username])
    dialog.get_by_role("button", name="Sign", exact=True).click()
    expect(page.locator("#read-status")).to_have_text("Signed and locked")


def _read_subject(browser, server, username: str, *, new_lesions: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        demo_login(page, server, username)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Reading").click()
        page.get_by_role("link", name="Worklist").click()
        worklist = page.locator("#reads-worklist")
        expect(worklist.locator('tr[data-timepoint="W6"]')).to_contain_text("Locked")
        worklist.get_by_role("link", name="Baseline").click()
        page.get_by_role("button", name="Start this read").click()

        page.get_by_label("Target 1 organ", exact=True).fill("LIVER")
        page.get_by_label("Target 1 long axis (mm)", exact=True).fill("30")
        page.get_by_label("Target 2 organ", exact=True).fill("LUNG")
        page.get_by_label("Target 2 long axis (mm)", exact=True).fill("6")
        expect(page.locator("#read-assessment")).to_contain_text("NOT_MEASURABLE:T2")  # live RECIST check
        page.get_by_label("Target 2 long axis (mm)", exact=True).fill("20")
        page.get_by_label("Non-target 1 organ", exact=True).fill("BONE")
        expect(page.locator("#resp-sum")).to_have_text("50 mm")
        page.get_by_role("button", name="Save draft").click()
        expect(page.get_by_role("status").first).to_contain_text("Draft saved")
        _sign(page, username)
        expect(page.locator(".signatures")).to_contain_text("Valid: the record is unchanged since signing")

        page.get_by_role("link", name="← Worklist").click()
        page.locator("#reads-worklist").get_by_role("link", name="Week 6").click()
        page.get_by_role("button", name="Start this read").click()
        page.get_by_label("T1 diameter (mm)").fill("18")
        page.get_by_label("T2 diameter (mm)").fill("12")
        page.get_by_label("NT1 status").select_option("PRESENT")
        page.locator("#read-new-lesions").get_by_label("No", exact=True).check()
        expect(page.locator("#resp-overall")).to_have_text("PR")  # computed, never typed
        expect(page.locator("#resp-sum")).to_have_text("30 mm")
        if new_lesions == "YES":
            page.locator("#read-new-lesions").get_by_label("Yes", exact=True).check()
            expect(page.locator("#resp-overall")).to_have_text("PD")
        _sign(page, username)
    finally:
        context.close()


def test_two_readers_disagree_and_the_adjudicator_resolves(app_server, browser, page):
    call_command("load_demo")  # reads.demo puts the demo readers in the pool, trained
    subject = _accept_timepoints()
    assert ReadTask.objects.filter(subject=subject).count() == 4

    _read_subject(browser, app_server, "reader1", new_lesions="NO")
    _read_subject(browser, app_server, "reader2", new_lesions="YES")
    adjudication = Adjudication.objects.get(subject=subject, status=Adjudication.Status.OPEN)

    demo_login(page, app_server, "adjudicator")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reading").click()
    page.get_by_role("link", name="Adjudications").click()
    expect(page.locator(f"#reads-adjudication-{adjudication.pk}")).to_contain_text("overall response differs at W6")
    page.get_by_role("link", name=reading_id(subject=subject)).click()  # the reading ID, never the subject code
    reads = page.locator("#adj-reads")
    expect(reads.locator('tr[data-timepoint="W6"] .adj-a')).to_contain_text("overall PR")
    expect(reads.locator('tr[data-timepoint="W6"] .adj-b')).to_contain_text("overall PD")
    expect(reads).not_to_contain_text("reader1")
    page.get_by_label("Read B").check()
    page.get_by_label("Rationale").fill("The new liver lesion is unequivocal on the portal venous phase.")
    page.get_by_role("button", name="Sign…").click()
    dialog = page.locator("#adj-sign-dialog")
    dialog.get_by_label("Password").fill(PASSWORDS["adjudicator"])
    dialog.get_by_role("button", name="Sign", exact=True).click()

    result = page.locator("#adj-result")
    expect(result).to_contain_text("Resolved: read B selected")
    expect(result.locator("#adj-bicr")).to_contain_text("PD")
    expect(result.locator(".signatures")).to_contain_text("Adjudicated")
    bicr = BicrResult.objects.get(subject=subject, visit__timepoint="W6")
    assert bicr.overall == "PD" and bicr.source == "adjudication" and bicr.read.task.slot == "B"

    manager = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        mpage = manager.new_page()
        mpage.set_default_timeout(10_000)
        demo_login(mpage, app_server, "manager")
        mpage.goto(f"{app_server.url}/reads/trials/{subject.trial_id}/pool")
        expect(mpage.locator(f'#reads-bicr tr[data-subject="{SUBJECT}"][data-timepoint="W6"]')).to_contain_text(
            "adjudication (read B)")
    finally:
        manager.close()
