"""The adjudicator's images: DICOMweb serves an adjudicator the accepted studies of the timepoints compared in
the adjudications assigned to them, blinded like a reader's, and the adjudication page opens them in the
viewer with both readers' signed measurements, labelled by slot only."""

import html
import json
import re

import pytest

from qc.services import qc_run, study_accept
from reads.models import Adjudication, Read, ReadTask
from reads.services import reader_add
from trials.models import Role

from ..conftest import _member
from ..qc.conftest import deidentify, make_study, ready_site, stores, upload  # noqa: F401  (QC's fixtures)
from .test_dicomweb import dicomweb, get, tag, uids

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def adjudicated(make_study, qc_analyst, trial_manager, reader1, reader2, adjudicator):  # noqa: F811
    """A baseline CT accepted, read and signed by readers A and B, and an open adjudication assigned."""
    study = make_study(count=3, StationName="CT-ROOM-3")
    qc_run(study_id=study.pk, trigger="deidentified")
    study.refresh_from_db()
    study_accept(analyst=qc_analyst, study=study)
    study_uid, series_uid, sops = uids(study)
    reads = {}
    for slot, user, mm in (("A", reader1, 31.5), ("B", reader2, 24.0)):
        reader = reader_add(actor=trial_manager, trial=study.trial, user=user)
        task = ReadTask.objects.create(trial=study.trial, subject=study.subject, visit=study.visit, reader=reader,
                                       slot=slot, scan_date=study.acquisition_date, status=ReadTask.Status.SIGNED)
        geometry = {"study_uid": study_uid, "series_uid": series_uid, "sop_uid": sops[1], "frame": 1,
                    "tool": "length", "points": [[10, 10], [40, 10]], "long_mm": mm}
        reads[slot] = Read.objects.create(task=task, status=Read.Status.SIGNED, created_by=user,
                                          lesions={"targets": [], "annotations": {"T1": geometry}})
    judge = reader_add(actor=trial_manager, trial=study.trial, user=adjudicator)
    adjudication = Adjudication.objects.create(trial=study.trial, subject=study.subject, adjudicator=judge,
                                               reads_a=[reads["A"].pk], reads_b=[reads["B"].pk],
                                               visits=[study.visit.timepoint])
    return study, adjudication


def test_the_assigned_adjudicator_sees_the_compared_timepoint_without_site_identity(
        live_server, adjudicator, adjudicated):
    study, _ = adjudicated
    study_uid, series_uid, sops = uids(study)
    client = dicomweb(live_server, adjudicator)

    [found] = client.search_for_studies()
    metadata = client.retrieve_series_metadata(study_uid, series_uid)

    assert tag(found, "0020000D") == study_uid
    assert len(metadata) == 3
    for data in metadata:
        assert "00081010" not in data and "00181000" not in data  # StationName, DeviceSerialNumber


def test_another_adjudicator_and_a_superseded_adjudication_see_nothing(live_server, trial, adjudicator, adjudicated):
    study, adjudication = adjudicated
    study_uid = uids(study)[0]
    other = _member(trial, Role.ADJUDICATOR, "adjudicator2")

    assert dicomweb(live_server, other).search_for_studies() == []
    assert get(live_server, other, f"/studies/{study_uid}/metadata").status_code == 404

    adjudication.status = Adjudication.Status.SUPERSEDED
    adjudication.save(update_fields=["status"])

    assert dicomweb(live_server, adjudicator).search_for_studies() == []
    assert get(live_server, adjudicator, f"/studies/{study_uid}/metadata").status_code == 404


def test_the_adjudication_page_opens_the_images_with_both_readers_measurements(client, adjudicator, adjudicated):
    study, adjudication = adjudicated
    client.force_login(adjudicator)

    page = client.get(f"/reads/adjudications/{adjudication.pk}").content.decode()

    [study_uids] = re.findall(r'data-study-uids="([^"]*)"', page)
    assert json.loads(html.unescape(study_uids)) == [uids(study)[0]]
    drawn = {label: json.loads(html.unescape(value)) for label, value in
             re.findall(r'data-annotation-lesion="[^"]*" data-label="([^"]*)" data-locked value="([^"]*)"', page)}
    assert {label: g["long_mm"] for label, g in drawn.items()} == {"A · BL · T1": 31.5, "B · BL · T1": 24.0}
    assert "reader1" not in page and "reader2" not in page  # readers appear as A and B only
