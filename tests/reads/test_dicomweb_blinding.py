"""What DICOMweb tells a blinded reader about the subject: de-identification wrote the subject code into
PatientID and PatientName, and subject codes usually carry the site number, so a reader gets the subject's
reading ID there instead, in QIDO results, metadata and the files themselves; oversight gets the code."""

import pytest

from qc.services import qc_run, study_accept
from reads.blinding import reading_id
from reads.models import ReadTask
from reads.services import reader_add

from ..qc.conftest import deidentify, make_study, ready_site, stores, upload  # noqa: F401  (QC's fixtures)
from .test_dicomweb import dicomweb, tag, uids

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def read_study(make_study, qc_analyst, trial_manager, reader1):  # noqa: F811
    study = make_study(count=2)
    qc_run(study_id=study.pk, trigger="deidentified")
    study.refresh_from_db()
    study_accept(analyst=qc_analyst, study=study)
    reader = reader_add(actor=trial_manager, trial=study.trial, user=reader1)
    ReadTask.objects.create(trial=study.trial, subject=study.subject, visit=study.visit, reader=reader, slot="A",
                            scan_date=study.acquisition_date)
    return study


def test_a_reader_gets_the_reading_id_where_the_subject_code_was(live_server, reader1, qc_analyst, read_study):
    study_uid, series_uid, sops = uids(read_study)
    alias = reading_id(subject=read_study.subject)
    code = read_study.subject.code
    client = dicomweb(live_server, reader1)

    [found] = client.search_for_studies()
    metadata = client.retrieve_series_metadata(study_uid, series_uid)
    ds = client.retrieve_instance(study_uid, series_uid, sops[0])

    assert alias.startswith("R-") and len(alias) == 10
    assert tag(found, "00100020") == alias
    assert {tag(data, "00100020") for data in metadata} == {alias}
    assert {tag(data, "00100010")["Alphabetic"] for data in metadata} == {alias}
    assert ds.PatientID == alias and str(ds.PatientName) == alias
    assert code not in str(found) + str(metadata)
    # a reader finds the study by its reading ID, not by the subject code
    assert len(client.search_for_studies(search_filters={"PatientID": alias})) == 1
    assert client.search_for_studies(search_filters={"PatientID": code}) == []
    # the QC analyst sees the subject code de-identification wrote
    oversight = dicomweb(live_server, qc_analyst)
    assert tag(oversight.retrieve_instance_metadata(study_uid, series_uid, sops[0]), "00100020") == code
    assert oversight.retrieve_instance(study_uid, series_uid, sops[0]).PatientID == code
