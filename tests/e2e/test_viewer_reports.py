"""A study whose signed read has a stored measurement report (DICOM SR) opens in the QC study page's viewer as
before: DICOMweb lists the report's series to the analyst, and the viewer leaves it out of its series list
(a report has no images to show)."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from reads.models import MeasurementReport
from reads.reports import measurement_report_make

from .helpers import demo_login
from .test_adjudication_viewer import _geometry, _sign, _slices
from .test_read_measure import READY, _accepted_ct
from .test_viewer import stores  # noqa: F401  (the archive on disk)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_viewer_leaves_the_measurement_report_out_of_the_series(app_server, page, tmp_path,
                                                                    stores):  # noqa: F811
    call_command("load_demo")
    baseline = _accepted_ct(tmp_path, "BL", "20260130")
    target = {"id": "T1", "organ": "LIVER", "nodal": False, "mm": 30, "modality": "CT", "slice_thickness_mm": 5}
    _sign(baseline.subject, "BL", "A", {"targets": [target], "non_targets": [],
                                        "annotations": {"T1": _geometry(_slices(baseline)[2], 30)}})
    report = MeasurementReport.objects.get(read__task__subject=baseline.subject)
    report = measurement_report_make(report_id=report.pk)
    assert report.status == MeasurementReport.Status.STORED
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    demo_login(page, app_server, get_user_model().objects.get(username="qc").username)
    page.goto(f"{app_server.url}/qc/studies/{baseline.pk}/")
    page.wait_for_function(READY, timeout=30_000)

    viewer = page.locator("#corelab-viewer")
    expect(viewer).to_have_attribute("data-state", "ready")
    expect(viewer.locator("[data-viewer-series] button")).to_have_count(1)
    expect(viewer.get_by_role("button", name="Series 2 · CT · 5 images")).to_be_visible()
    assert errors == []
