"""DICOMweb STOW-RS: a real client (dicomweb-client) against the running app, plus the edges of the door."""

import datetime
import io
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import CTImageStorage
from rest_framework.authtoken.models import Token

from intake.models import ImagingStudy, Submission
from intake.stow import (
    CANNOT_UNDERSTAND,
    DATA_SET_MISMATCH,
    PROCESSING_FAILURE,
    MultipartError,
    body_reader,
    parts_from_stream,
)
from trials.models import Role
from trials.services import subject_enroll

from ..trials.factories import MembershipFactory, ProtocolVersionFactory
from . import test_receive
from .dicom import make_study

ENROLLED = datetime.date(2026, 3, 2)  # make_study's default date falls in the baseline window
live = pytest.mark.django_db(transaction=True)  # the live server reads what the test has committed
CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary="b0undary"'


ready_site = test_receive.ready_site  # site 1 qualified for CT_CAP on its CT, coordinator trained


@pytest.fixture
def enrolled(ready_site):
    return ready_site["subject"]


def _client(live_server, user=None, *, token: str | None = None, statuses: list | None = None) -> DICOMwebClient:
    if user is not None:
        token = Token.objects.get_or_create(user=user)[0].key
    headers = {"Authorization": f"Token {token}"} if token else {}

    def record(response, *args, **kwargs):
        if statuses is not None:
            statuses.append(response.status_code)
        return response

    return DICOMwebClient(url=f"{live_server.url}/dicomweb", headers=headers, callback=record)


def _datasets(folder: Path, **kwargs) -> list[pydicom.Dataset]:
    kwargs.setdefault("scanner", test_receive.SCANNER)  # the qualified scanner
    return [pydicom.dcmread(path) for path in make_study(folder, **kwargs)]


def _refused(client: DICOMwebClient, datasets, **kwargs) -> requests.Response:
    with pytest.raises(requests.HTTPError) as raised:
        client.store_instances(datasets, **kwargs)
    return raised.value.response


# -- through a real DICOMweb client -------------------------------------------------------------------------

@live
def test_a_coordinator_stores_a_study_and_every_instance_is_acknowledged(live_server, tmp_path, enrolled,
                                                                         coordinator_site1):
    datasets = _datasets(tmp_path, patient_id="MRN-1001", count=3)
    statuses: list[int] = []
    client = _client(live_server, coordinator_site1, statuses=statuses)

    response = client.store_instances(datasets)

    assert statuses == [200]
    assert [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence] == [
        ds.SOPInstanceUID for ds in datasets]
    assert {item.ReferencedSOPClassUID for item in response.ReferencedSOPSequence} == {CTImageStorage}
    assert "FailedSOPSequence" not in response
    study = ImagingStudy.objects.get()
    assert (study.subject, study.visit.timepoint, study.procedure, study.status, study.instances.count()) == (
        enrolled, "BL", "CT_CAP", "received", 3)
    submission = Submission.objects.get()
    assert (submission.channel, submission.submitted_by, submission.accepted, submission.rejected) == (
        "stowrs", coordinator_site1, 3, 0)
    assert submission.finished_at is not None

    # sending the same instances again changes nothing and is still a success
    again = client.store_instances(datasets)
    assert statuses == [200, 200] and len(again.ReferencedSOPSequence) == 3
    assert Submission.objects.order_by("-pk").first().duplicates == 3
    assert study.instances.count() == 3


@live
def test_an_unknown_patient_is_stored_for_the_unassigned_inbox(live_server, tmp_path, enrolled, coordinator_site1):
    datasets = _datasets(tmp_path, patient_id="MRN-NOT-ENROLLED", count=1)
    response = _client(live_server, coordinator_site1).store_instances(datasets)
    assert len(response.ReferencedSOPSequence) == 1
    study = ImagingStudy.objects.get()
    assert (study.status, study.unassigned_reason) == ("unassigned", "no enrolled subject matches the Patient ID")


@live
def test_a_broken_part_fails_alone_with_its_reason(live_server, tmp_path, enrolled, coordinator_site1):
    datasets = _datasets(tmp_path, patient_id="MRN-1001", count=3)
    broken = datasets[1]
    broken.PixelData = broken.PixelData[:100]
    statuses: list[int] = []

    response = _client(live_server, coordinator_site1, statuses=statuses).store_instances(datasets)

    assert statuses == [202]
    assert [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence] == [
        datasets[0].SOPInstanceUID, datasets[2].SOPInstanceUID]
    (failed,) = response.FailedSOPSequence
    assert (failed.ReferencedSOPClassUID, failed.ReferencedSOPInstanceUID, failed.FailureReason) == (
        CTImageStorage, broken.SOPInstanceUID, CANNOT_UNDERSTAND)
    assert failed.ErrorComment.startswith("truncated: pixel data holds 100 bytes")
    submission = Submission.objects.get()
    assert (submission.accepted, submission.rejected) == (2, 1)
    assert ImagingStudy.objects.get().instances.count() == 2


@live
def test_a_patient_of_another_site_is_refused_with_409(live_server, tmp_path, enrolled, site2, coordinator_site1,
                                                       coordinator_site2):
    subject_enroll(actor=coordinator_site2, site=site2, code="102-0001", patient_id="MRN-2002",
                   enrollment_date=ENROLLED)
    datasets = _datasets(tmp_path, patient_id="MRN-2002", count=2)

    response = _refused(_client(live_server, coordinator_site1), datasets)

    assert response.status_code == 409 and response.headers["Content-Type"] == "application/dicom+json"
    body = pydicom.Dataset.from_json(response.json())
    assert "ReferencedSOPSequence" not in body
    assert [item.ReferencedSOPInstanceUID for item in body.FailedSOPSequence] == [ds.SOPInstanceUID
                                                                                   for ds in datasets]
    assert all(item.FailureReason == PROCESSING_FAILURE and "another site" in item.ErrorComment
               for item in body.FailedSOPSequence)
    assert not ImagingStudy.objects.exists()


@live
def test_instances_of_another_study_than_the_url_names_are_refused(live_server, tmp_path, enrolled,
                                                                   coordinator_site1):
    mine = _datasets(tmp_path / "a", patient_id="MRN-1001", count=1)
    other = _datasets(tmp_path / "b", patient_id="MRN-1001", count=1)
    statuses: list[int] = []

    response = _client(live_server, coordinator_site1, statuses=statuses).store_instances(
        mine + other, study_instance_uid=mine[0].StudyInstanceUID)

    assert statuses == [202]
    assert [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence] == [mine[0].SOPInstanceUID]
    (failed,) = response.FailedSOPSequence
    assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (other[0].SOPInstanceUID, DATA_SET_MISMATCH)
    assert (Submission.objects.get().accepted, Submission.objects.get().rejected) == (1, 1)


@live
def test_only_a_coordinator_of_the_site_may_store(live_server, tmp_path, enrolled, site1, coordinator_site2,
                                                  qc_analyst, trial_manager, outsider):
    datasets = _datasets(tmp_path, patient_id="MRN-1001", count=1)
    # another site's coordinator naming this site meets the same 404 as a site that does not exist
    assert _refused(_client(live_server, coordinator_site2), datasets,
                    additional_params={"site": site1.pk}).status_code == 404
    for user in (qc_analyst, trial_manager, outsider):
        response = _refused(_client(live_server, user), datasets)
        assert response.status_code == 403, user
        assert _refused(_client(live_server, user), datasets,
                        additional_params={"site": site1.pk}).status_code == 404, user
    assert not Submission.objects.exists()


@live
def test_without_a_valid_token_nothing_is_stored(live_server, tmp_path, enrolled):
    datasets = _datasets(tmp_path, patient_id="MRN-1001", count=1)
    for client in (_client(live_server), _client(live_server, token="0" * 40)):
        response = _refused(client, datasets)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Token"
    assert not Submission.objects.exists()


# -- the edges of the door (Django's test client) -----------------------------------------------------------

def _multipart(*parts: bytes | tuple[bytes, str], boundary: str = "b0undary") -> bytes:
    """A body as DICOMweb clients send it; a part is its bytes, or (bytes, content type)."""
    body = b""
    for part in parts:
        data, part_type = part if isinstance(part, tuple) else (part, "application/dicom")
        body += b"--" + boundary.encode() + f"\r\nContent-Type: {part_type}\r\n\r\n".encode() + data + b"\r\n"
    return body + b"--" + boundary.encode() + b"--\r\n"


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", [
    "application/dicom", "multipart/form-data; boundary=x", "multipart/related; boundary=x",
    'multipart/related; type="application/dicom+json"; boundary=x'])
def test_anything_but_multipart_related_dicom_is_415(client, coordinator_site1, content_type):
    client.force_login(coordinator_site1)
    response = client.post("/dicomweb/studies", data=b"x", content_type=content_type)
    assert response.status_code == 415 and "application/dicom" in response.json()["detail"]


@pytest.mark.django_db
def test_an_empty_or_partless_body_is_400_and_opens_no_submission(client, coordinator_site1):
    client.force_login(coordinator_site1)
    # the test client leaves an empty body without a Content-Type unless told
    assert client.generic("POST", "/dicomweb/studies", b"", CONTENT_TYPE=CONTENT_TYPE).status_code == 400
    assert client.post("/dicomweb/studies", data=b"no boundary here", content_type=CONTENT_TYPE).status_code == 400
    assert client.post("/dicomweb/studies", data=b"--b0undary--\r\n", content_type=CONTENT_TYPE).status_code == 400
    assert not Submission.objects.exists()


@pytest.mark.django_db
def test_session_auth_and_a_site_parameter_for_a_coordinator_of_several_sites(tmp_path, client, trial, site1,
                                                                              site2, coordinator_site1):
    ProtocolVersionFactory(trial=trial)
    MembershipFactory(user=coordinator_site1, trial=trial, role=Role.SITE_COORDINATOR, site=site2)
    body = _multipart(make_study(tmp_path, patient_id="MRN-ANY", count=1)[0].read_bytes())
    client.force_login(coordinator_site1)

    response = client.post("/dicomweb/studies", data=body, content_type=CONTENT_TYPE)
    assert response.status_code == 400 and "?site=" in response.json()["site"][0]

    response = client.post(f"/dicomweb/studies?site={site2.pk}", data=body, content_type=CONTENT_TYPE)
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom+json"
    assert Submission.objects.get().site == site2


@pytest.mark.django_db
def test_a_non_dicom_part_and_a_cut_off_body_fail_with_reasons(tmp_path, client, trial, site1, coordinator_site1):
    ProtocolVersionFactory(trial=trial)
    good = make_study(tmp_path, patient_id="MRN-ANY", count=1)[0].read_bytes()
    client.force_login(coordinator_site1)

    body = _multipart(good, (b"{}", "application/json"))
    response = client.post("/dicomweb/studies", data=body, content_type=CONTENT_TYPE)
    assert response.status_code == 202
    failed = response.json()["00081198"]["Value"]
    assert failed == [{"00000902": {"vr": "LO", "Value": ["part 2 is application/json, not application/dicom"]},
                       "00081197": {"vr": "US", "Value": [CANNOT_UNDERSTAND]}}]
    # the submission's record holds the refused part too
    submission = Submission.objects.get()
    assert (submission.accepted, submission.rejected) == (1, 1)
    assert submission.results[1] == {"file": "part 2", "outcome": "rejected",
                                     "reason": "part 2 is application/json, not application/dicom"}

    cut = _multipart(good)[:-len("--b0undary--\r\n")] + b"--b0undary\r\nContent-Type: application/dicom\r\n\r\nDI"
    response = client.post("/dicomweb/studies", data=cut, content_type=CONTENT_TYPE)
    assert response.status_code == 202  # the first part was filed (a duplicate by now), the cut one was not
    assert "closing boundary is missing" in response.json()["00081198"]["Value"][0]["00000902"]["Value"][0]


@pytest.mark.django_db
def test_a_chunked_body_the_server_cannot_deliver_is_411(client, coordinator_site1):
    client.force_login(coordinator_site1)
    response = client.generic("POST", "/dicomweb/studies", b"", CONTENT_TYPE=CONTENT_TYPE,
                              HTTP_TRANSFER_ENCODING="chunked")
    assert response.status_code == 411


def test_the_multipart_splitter_streams_whatever_the_chunking(tmp_path):
    first, second = b"\x00DICM" + bytes(range(256)) * 40, b"--b0undar" * 50  # the second nearly holds the boundary
    body = (b"preamble to ignore\r\n--b0undary  \r\nContent-Type: application/dicom\r\n\r\n" + first
            + b"\r\n--b0undary\r\n\r\n" + second + b"\r\n--b0undary--\r\nepilogue")
    for chunk_bytes in (1, 7, 64, 1 << 20):
        stream = io.BytesIO(body)
        folder = tmp_path / str(chunk_bytes)
        folder.mkdir()
        parts = list(parts_from_stream(read=stream.read, boundary="b0undary", folder=folder, max_bytes=10**6,
                                       chunk_bytes=chunk_bytes))
        assert [p.path.read_bytes() for p in parts] == [first, second], chunk_bytes
        assert [p.content_type for p in parts] == ["application/dicom", "application/dicom"]


def test_the_splitter_flags_an_oversize_part_and_refuses_a_cut_body(tmp_path):
    body = b"--b\r\n\r\n" + b"x" * 5000 + b"\r\n--b--"
    (part,) = parts_from_stream(read=io.BytesIO(body).read, boundary="b", folder=tmp_path, max_bytes=4096,
                                chunk_bytes=1000)
    assert part.oversize and part.size == 5000 and part.path.stat().st_size <= 4096
    with pytest.raises(MultipartError, match="closing boundary is missing"):
        list(parts_from_stream(read=io.BytesIO(body[:-8]).read, boundary="b", folder=tmp_path, max_bytes=10**6))
    with pytest.raises(MultipartError, match="boundary never occurs"):
        list(parts_from_stream(read=io.BytesIO(b"x" * 100).read, boundary="b", folder=tmp_path, max_bytes=10))


def test_a_chunked_body_is_read_to_its_end_when_the_server_has_de_chunked_it():
    class Request:
        META = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True,
                "wsgi.input": io.BytesIO(b"body")}

    assert body_reader(Request())(1024) == b"body"
    Request.META = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b"body")}
    assert body_reader(Request()) is None


@live
def test_a_site_not_qualified_for_the_procedure_is_refused(live_server, tmp_path, enrolled, coordinator_site1):
    datasets = _datasets(tmp_path, patient_id="MRN-1001", count=1, modality="MR", body_part="BRAIN")
    response = _refused(_client(live_server, coordinator_site1), datasets)
    assert response.status_code == 409
    assert "not qualified for MR_BRAIN" in Submission.objects.get().results[0]["reason"]
