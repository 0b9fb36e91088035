"""Measurement reports through DICOMweb: a stored DICOM SR is served under its study, in a series of its own,
to those who see the study unblinded (QC, managers, auditors), byte for byte as stored; readers never get one
(it would show them a reader's measurements)."""

import pytest
from django.core.files.storage import storages

from reads.models import MeasurementReport

from ..qc.conftest import deidentify, make_study, ready_site, stores, upload  # noqa: F401  (QC's fixtures)
from .conftest import task_of
from .test_dicomweb import dicomweb, get, tag
from .test_sr import ctx, make_all, measured_baseline, sign  # noqa: F401  (ctx: the fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def report(ctx) -> MeasurementReport:  # noqa: F811
    [made] = make_all(sign(task_of(ctx["subject"], "BL", "A"), measured_baseline(ctx["records"])))
    assert made.status == MeasurementReport.Status.STORED
    return made


def test_the_analyst_finds_the_report_as_an_sr_series_of_the_study(live_server, qc_analyst, auditor, ctx,  # noqa: F811
                                                                   report):
    images = ctx["records"][0]
    for user in (qc_analyst, auditor):
        client = dicomweb(live_server, user)

        series = {tag(s, "0020000E"): tag(s, "00080060") for s in client.search_for_series(report.study_uid)}
        ds = client.retrieve_instance(report.study_uid, report.series_uid, report.sop_uid)

        assert series == {images.series_uid: "CT", report.series_uid: "SR"}
        assert ds.SOPInstanceUID == report.sop_uid and ds.Modality == "SR"
        assert ds.StudyInstanceUID == images.study_uid
    response = get(live_server, qc_analyst, f"/studies/{report.study_uid}/series/{report.series_uid}/instances/"
                                            f"{report.sop_uid}", Accept='multipart/related; type="application/dicom"')
    assert storages["archive"].open(report.archive_key, "rb").read() in response.content  # as stored
    [study] = dicomweb(live_server, qc_analyst).search_for_studies()
    assert tag(study, "00201206") == 2  # NumberOfStudyRelatedSeries: the CT and the report


def test_readers_get_no_report(live_server, reader1, reader2, ctx, report):  # noqa: F811
    for user in (reader1, reader2):
        client = dicomweb(live_server, user)
        assert report.series_uid not in {tag(s, "0020000E") for s in client.search_for_series(report.study_uid)}
        assert get(live_server, user, f"/studies/{report.study_uid}/series/{report.series_uid}/metadata"
                   ).status_code == 404
