"""The adjudicator looks at the images in a real Chromium: readers A and B measured T1 of demo subject 101-0001
on different slices of the same baseline CT and disagree at week 6; the adjudication page opens the baseline
beside week 6 with both readers' measurements drawn, locked and labelled by slot, on the slices they chose."""

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from deid.models import DeidRecord
from reads.models import Adjudication, ReadTask
from reads.services import read_save_draft, read_sign, task_open

from .helpers import PASSWORDS, demo_login
from .test_read_measure import READY, STATE, _accepted_ct
from .test_viewer import stores  # noqa: F401  (the archive on disk)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _slices(study) -> list[DeidRecord]:
    """The study's released instances in filing order (the viewer sorts these 5 slices the same way)."""
    return sorted(DeidRecord.objects.filter(instance__study=study, outcome="released").select_related("instance"),
                  key=lambda r: r.instance.pk)


def _geometry(record: DeidRecord, mm: float) -> dict:
    return {"study_uid": record.study_uid, "series_uid": record.series_uid, "sop_uid": record.sop_uid,
            "frame": 1, "tool": "length", "points": [[30, 60], [90, 60]], "long_mm": mm}


def _sign(subject, timepoint: str, slot: str, lesions: dict) -> None:
    task = ReadTask.objects.get(subject=subject, visit__timepoint=timepoint, slot=slot, status__in=ReadTask.LIVE)
    user = task.reader.user
    task_open(task=task, user=user)
    read_save_draft(task=task, user=user, lesions=lesions)
    read_sign(task=task, user=user, password=PASSWORDS[user.username])


def test_the_adjudicator_sees_both_readers_measurements_on_their_slices(app_server, page, tmp_path,
                                                                       stores):  # noqa: F811
    call_command("load_demo")
    baseline = _accepted_ct(tmp_path, "BL", "20260130")
    week6 = _accepted_ct(tmp_path, "W6", "20260313")
    subject = baseline.subject
    bl, w6 = _slices(baseline), _slices(week6)
    target = {"id": "T1", "organ": "LIVER", "nodal": False, "mm": 30, "modality": "CT", "slice_thickness_mm": 5}
    non_target = {"id": "NT1", "organ": "BONE", "nodal": False, "modality": "CT", "slice_thickness_mm": 5}
    for slot, bl_slice, w6_mm in (("A", 3, 18), ("B", 1, 29)):  # A: partial response; B: stable disease
        _sign(subject, "BL", slot, {"targets": [target], "non_targets": [non_target],
                                    "annotations": {"T1": _geometry(bl[bl_slice], 30)}})
        _sign(subject, "W6", slot, {"targets": {"T1": w6_mm}, "non_target": "NON-CR/NON-PD", "new_lesions": "NO",
                                    "annotations": {"T1": _geometry(w6[bl_slice], w6_mm)}})
    adjudication = Adjudication.objects.get(subject=subject, status=Adjudication.Status.OPEN)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    demo_login(page, app_server, adjudication.adjudicator.user.username)
    page.goto(f"{app_server.url}/reads/adjudications/{adjudication.pk}")
    page.wait_for_function(READY, timeout=30_000)
    viewer = page.locator("#corelab-viewer")
    expect(viewer).to_have_attribute("data-state", "ready")
    left, right = viewer.locator('[data-viewport="left"]'), viewer.locator('[data-viewport="right"]')
    expect(left.locator("[data-viewport-label]")).to_contain_text("Baseline · Series 2")
    expect(right.locator("[data-viewport-label]")).not_to_contain_text("Baseline")

    expected = {"A · BL · T1": (3, True), "B · BL · T1": (1, True), "A · W6 · T1": (3, True), "B · W6 · T1": (1, True)}
    page.wait_for_function("() => window.corelabViewers[0].state().measurements.length >= 4")  # all restored
    measurements = page.locator("[data-viewer-measurements] li")
    expect(measurements).to_have_count(4)
    for label in expected:  # each listed under the viewer with its slot, timepoint and lesion
        expect(measurements.filter(has_text=f"{label}: Length")).to_have_count(1)
    shown = {m["label"]: (m["index"], m["locked"]) for m in page.evaluate(STATE)["measurements"]}
    assert shown == expected
    assert errors == []
