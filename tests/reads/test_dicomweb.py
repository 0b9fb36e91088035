"""Corelab's DICOMweb read side, driven by the dicomweb-client package against a live server over real
archived, de-identified instances: QIDO-RS matching, WADO-RS instances, frames, metadata and rendered images,
streaming, and who may see what (404 for anything out of scope, 401 without credentials)."""

import io
import json

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.core.cache import cache
from django.core.files.storage import storages
from django.http import StreamingHttpResponse
from PIL import Image
from rest_framework.authtoken.models import Token

from deid.models import DeidRecord
from qc.services import qc_run, study_accept
from reads.dicomweb.selectors import HEADER_CACHE_PREFIX
from reads.models import ReadTask
from reads.services import reader_add

from ..qc.conftest import deidentify, make_study, ready_site, stores, upload  # noqa: F401  (QC's fixtures)
from ..qc.files import ct_series

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def study(make_study):  # noqa: F811
    """A 5-slice CT of subject 101-0001 at baseline, de-identified, archived and awaiting QC."""
    study = make_study(count=5, StationName="CT-ROOM-3")
    qc_run(study_id=study.pk, trigger="deidentified")
    study.refresh_from_db()
    return study


def uids(study) -> tuple[str, str, list[str]]:
    records = DeidRecord.objects.filter(instance__study=study, outcome="released").order_by("instance_id")
    first = records.first()
    return first.study_uid, first.series_uid, [r.sop_uid for r in records]


def originals(study) -> set[str]:
    """Identifiers of the raw files in quarantine (the PHI the responses must never carry)."""
    found = set()
    for instance in study.instances.all():
        with storages["quarantine"].open(instance.raw_key, "rb") as stream:
            ds = pydicom.dcmread(stream, stop_before_pixels=True)
        found |= {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, str(ds.PatientID),
                  str(ds.PatientName)}
    return found


def dicomweb(live_server, user) -> DICOMwebClient:
    token, _ = Token.objects.get_or_create(user=user)
    return DICOMwebClient(url=f"{live_server.url}/dicomweb", headers={"Authorization": f"Token {token.key}"})


def get(live_server, user, path: str, **headers) -> requests.Response:
    token, _ = Token.objects.get_or_create(user=user)
    return requests.get(f"{live_server.url}/dicomweb{path}", timeout=30,
                        headers={"Authorization": f"Token {token.key}", **headers})


def tag(data: dict, key: str):
    value = data.get(key, {}).get("Value") or [None]
    return value[0]


# -- QIDO-RS ------------------------------------------------------------------------------------------------

def test_qido_finds_the_analysts_study_under_its_deidentified_uids(live_server, qc_analyst, study):
    study_uid, series_uid, sops = uids(study)
    client = dicomweb(live_server, qc_analyst)

    [found] = client.search_for_studies()

    assert tag(found, "0020000D") == study_uid
    assert tag(found, "00080061") == "CT"
    assert (tag(found, "00201206"), tag(found, "00201208")) == (1, 5)
    assert tag(found, "00100020") == "101-0001"  # the pseudonym, not the site's MRN
    # dicomweb-client sends its Host header without the port, and the URL is built from that header
    assert tag(found, "00081190").endswith(f"localhost/dicomweb/studies/{study_uid}")
    [series] = client.search_for_series(study_uid)
    assert (tag(series, "0020000E"), tag(series, "00080060"), tag(series, "00201209")) == (series_uid, "CT", 5)
    instances = client.search_for_instances(study_uid, series_uid)
    assert sorted(tag(i, "00080018") for i in instances) == sorted(sops)
    assert {tag(i, "00280010") for i in instances} == {128}
    assert not originals(study) & set(json.dumps(found).split('"'))


def test_qido_matching_keys_limit_offset_and_includefield(live_server, qc_analyst, make_study, study):  # noqa: F811
    second = make_study(count=5, folder="second", Modality="MR")
    client = dicomweb(live_server, qc_analyst)
    first_uid, second_uid = uids(study)[0], uids(second)[0]

    assert {tag(s, "0020000D") for s in client.search_for_studies()} == {first_uid, second_uid}
    assert [tag(s, "0020000D") for s in client.search_for_studies(search_filters={"ModalityInStudy": "MR"})
            ] == [second_uid]
    assert [tag(s, "0020000D") for s in client.search_for_studies(search_filters={"ModalitiesInStudy": "CT"})
            ] == [first_uid]
    assert [tag(s, "0020000D") for s in client.search_for_studies(search_filters={"StudyInstanceUID": first_uid})
            ] == [first_uid]
    assert len(client.search_for_studies(search_filters={"PatientID": "101-*"})) == 2
    assert client.search_for_studies(search_filters={"PatientID": "MRN-1001"}) == []
    page_one = client.search_for_studies(limit=1)
    page_two = client.search_for_studies(limit=1, offset=1)
    assert len(page_one) == len(page_two) == 1 and page_one != page_two
    assert "00180015" not in page_one[0]
    assert tag(client.search_for_studies(fields=["BodyPartExamined"], limit=1)[0], "00180015") == "CHEST"
    assert "00280030" in client.search_for_instances(first_uid, fields=["all"])[0]  # PixelSpacing
    [one] = client.search_for_instances(first_uid, search_filters={"SOPInstanceUID": uids(study)[2][2]})
    assert tag(one, "00080018") == uids(study)[2][2]


@pytest.mark.parametrize(("query", "message"), [
    ("limit=abc", "limit is a whole number"),
    ("limit=5000", "limit is at most 1000"),
    ("offset=-1", "offset is a whole number"),
    ("NoSuchKeyword=1", "neither a DICOM keyword nor a tag"),
    ("SliceThickness=5", "cannot match on SliceThickness"),
    ("includefield=Bogus", "neither a DICOM keyword nor a tag"),
    ("fuzzymatching=maybe", "fuzzymatching is true or false"),
])
def test_qido_refuses_malformed_queries_with_the_reason(live_server, qc_analyst, study, query, message):
    response = get(live_server, qc_analyst, f"/studies?{query}")

    assert response.status_code == 400
    assert message in response.json()["detail"]


# -- WADO-RS ------------------------------------------------------------------------------------------------

def test_wado_retrieves_instances_series_and_studies_as_archived(live_server, qc_analyst, study):
    study_uid, series_uid, sops = uids(study)
    client = dicomweb(live_server, qc_analyst)

    ds = client.retrieve_instance(study_uid, series_uid, sops[0])

    record = DeidRecord.objects.get(sop_uid=sops[0])
    with storages["archive"].open(record.output_key, "rb") as stream:
        archived = pydicom.dcmread(stream)
    assert ds.SOPInstanceUID == sops[0] and ds.StudyInstanceUID == study_uid
    assert np.array_equal(ds.pixel_array, archived.pixel_array)
    assert sorted(d.SOPInstanceUID for d in client.retrieve_series(study_uid, series_uid)) == sorted(sops)
    assert len(client.retrieve_study(study_uid)) == 5
    assert str(ds.DeviceSerialNumber) == "75123"  # the profile retains device identity for QC


def test_wado_streams_instances_one_file_after_another(client, qc_analyst, study):
    study_uid = uids(study)[0]
    client.force_login(qc_analyst)

    response = client.get(f"/dicomweb/studies/{study_uid}", HTTP_ACCEPT='multipart/related; type="application/dicom"')

    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].startswith('multipart/related; type="application/dicom"; boundary=')
    body = b"".join(response.streaming_content)
    assert body.count(b"Content-Type: application/dicom\r\n") == 5


def test_wado_frames_are_the_stored_pixel_bytes(live_server, qc_analyst, study):
    study_uid, series_uid, sops = uids(study)
    client = dicomweb(live_server, qc_analyst)

    [frame] = client.retrieve_instance_frames(study_uid, series_uid, sops[1], frame_numbers=[1])

    record = DeidRecord.objects.get(sop_uid=sops[1])
    with storages["archive"].open(record.output_key, "rb") as stream:
        assert frame == pydicom.dcmread(stream).PixelData
    response = get(live_server, qc_analyst, f"/studies/{study_uid}/series/{series_uid}/instances/{sops[1]}/frames/1",
                   Accept='multipart/related; type="application/octet-stream"; transfer-syntax=*')
    assert response.status_code == 200
    assert "transfer-syntax=1.2.840.10008.1.2.1" in response.text[:400]


def test_wado_metadata_has_no_bulk_data_and_nothing_from_quarantine(live_server, qc_analyst, study):
    study_uid, series_uid, sops = uids(study)
    client = dicomweb(live_server, qc_analyst)

    metadata = client.retrieve_series_metadata(study_uid, series_uid)

    assert sorted(tag(m, "00080018") for m in metadata) == sorted(sops)
    pixel = metadata[0]["7FE00010"]
    assert "InlineBinary" not in pixel and "/frames/1" in pixel["BulkDataURI"]
    words = set(json.dumps(metadata).replace('"', " ").split())
    assert not originals(study) & words
    assert "MRN-1001" not in json.dumps(metadata) and "Synthetic" not in json.dumps(metadata)
    record = DeidRecord.objects.get(sop_uid=sops[0])
    assert cache.get(HEADER_CACHE_PREFIX + record.output_sha256) is not None  # headers are read once
    assert len(client.retrieve_study_metadata(study_uid)) == 5
    one = client.retrieve_instance_metadata(study_uid, series_uid, sops[0])
    assert tag(one, "00080018") == sops[0]


def test_wado_rendered_png_and_jpeg_with_the_files_window_or_the_asked_one(live_server, qc_analyst, study):
    study_uid, series_uid, sops = uids(study)
    client = dicomweb(live_server, qc_analyst)

    png = client.retrieve_instance_rendered(study_uid, series_uid, sops[0], media_types=("image/png",))
    jpeg = client.retrieve_instance_rendered(study_uid, series_uid, sops[0], media_types=("image/jpeg",))
    narrow = client.retrieve_instance_rendered(study_uid, series_uid, sops[0], media_types=("image/png",),
                                               params={"window": "40,80"})

    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size, image.mode) == ("PNG", (128, 128), "L")
    assert len(np.unique(np.asarray(image))) > 10  # an image, not a blank square
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    assert Image.open(io.BytesIO(narrow)).tobytes() != image.tobytes()
    frame = get(live_server, qc_analyst, f"/studies/{study_uid}/series/{series_uid}/instances/{sops[0]}"
                "/frames/1/rendered", Accept="image/png")
    assert frame.status_code == 200 and frame.headers["Content-Type"] == "image/png"


@pytest.mark.parametrize(("suffix", "accept", "code", "message"), [
    ("", "application/zip", 406, 'ask for multipart/related; type="application/dicom"'),
    ("", 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50', 406,
     "does not transcode"),
    ("/frames/0", "*/*", 400, "frame numbers start at 1"),
    ("/frames/x", "*/*", 400, "frames are numbers from 1"),
    ("/frames/9", "*/*", 404, "frame 9 does not exist"),
    ("/rendered", "image/gif", 406, "image/jpeg or image/png"),
    ("/rendered?window=abc", "image/png", 400, "window is centre,width"),
    ("/rendered?window=40,0", "image/png", 400, "width is more than 0"),
    ("/rendered?quality=0", "image/jpeg", 400, "quality is from 1 to 100"),
    ("/frames/1,2/rendered", "image/png", 400, "names one frame"),
])
def test_wado_refuses_bad_requests_with_the_reason(live_server, qc_analyst, study, suffix, accept, code, message):
    study_uid, series_uid, sops = uids(study)

    response = get(live_server, qc_analyst, f"/studies/{study_uid}/series/{series_uid}/instances/{sops[0]}{suffix}",
                   Accept=accept)

    assert response.status_code == code
    assert message in response.json()["detail"]


# -- who may see what ---------------------------------------------------------------------------------------

def test_anonymous_requests_get_401(live_server, study):
    study_uid = uids(study)[0]
    for path in ("/studies", f"/studies/{study_uid}/series", f"/studies/{study_uid}/metadata"):
        assert requests.get(f"{live_server.url}/dicomweb{path}", timeout=30).status_code == 401


@pytest.mark.parametrize("who", ["outsider", "coordinator_site1", "sponsor", "reader1"])
def test_users_without_the_study_in_scope_get_404_and_find_nothing(live_server, request, study, who):
    user = request.getfixturevalue(who)
    study_uid, series_uid, sops = uids(study)
    client = dicomweb(live_server, user)

    assert client.search_for_studies() == []
    for path in (f"/studies/{study_uid}", f"/studies/{study_uid}/series", f"/studies/{study_uid}/metadata",
                 f"/studies/{study_uid}/series/{series_uid}/instances/{sops[0]}/frames/1",
                 f"/studies/{study_uid}/series/{series_uid}/instances/{sops[0]}/rendered",
                 f"/corelab/studies/{study.pk}"):
        assert get(live_server, user, path).status_code == 404, path


def test_auditors_and_managers_see_the_trials_archive(live_server, auditor, trial_manager, study):
    for user in (auditor, trial_manager):
        assert [tag(s, "0020000D") for s in dicomweb(live_server, user).search_for_studies()] == [uids(study)[0]]


def test_a_reader_sees_only_the_accepted_study_of_their_unlocked_task_without_site_identity(
        live_server, qc_analyst, trial_manager, reader1, reader2, study, ready_site):  # noqa: F811
    study_accept(analyst=qc_analyst, study=study)
    reader = reader_add(actor=trial_manager, trial=study.trial, user=reader1)
    ReadTask.objects.create(trial=study.trial, subject=study.subject, visit=study.visit, reader=reader, slot="A",
                            scan_date=study.acquisition_date)
    study_uid, series_uid, sops = uids(study)

    client = dicomweb(live_server, reader1)
    [found] = client.search_for_studies()
    metadata = client.retrieve_series_metadata(study_uid, series_uid)
    ds = client.retrieve_instance(study_uid, series_uid, sops[0])

    assert tag(found, "0020000D") == study_uid
    assert len(metadata) == 5
    for data in metadata:
        assert "00181000" not in data and "00081010" not in data  # DeviceSerialNumber, StationName
    assert "DeviceSerialNumber" not in ds and "StationName" not in ds
    assert ds.SOPInstanceUID == sops[0]
    # the QC analyst still sees the device identity the profile retained
    qc_meta = dicomweb(live_server, qc_analyst).retrieve_instance_metadata(study_uid, series_uid, sops[0])
    assert tag(qc_meta, "00181000") == "75123" and tag(qc_meta, "00081010") == "CT-ROOM-3"
    # reader2 has no task at this timepoint
    assert dicomweb(live_server, reader2).search_for_studies() == []
    assert get(live_server, reader2, f"/studies/{study_uid}/metadata").status_code == 404


def test_a_reader_loses_access_when_the_task_is_replaced(live_server, qc_analyst, trial_manager, reader1, study):
    study_accept(analyst=qc_analyst, study=study)
    reader = reader_add(actor=trial_manager, trial=study.trial, user=reader1)
    task = ReadTask.objects.create(trial=study.trial, subject=study.subject, visit=study.visit, reader=reader,
                                   slot="A", scan_date=study.acquisition_date)
    study_uid = uids(study)[0]
    assert get(live_server, reader1, f"/studies/{study_uid}/metadata").status_code == 200

    task.status = ReadTask.Status.REASSIGNED
    task.save(update_fields=["status"])

    assert get(live_server, reader1, f"/studies/{study_uid}/metadata").status_code == 404


def test_the_viewer_entry_gives_the_deidentified_study_uid(live_server, qc_analyst, study):
    response = get(live_server, qc_analyst, f"/corelab/studies/{study.pk}")

    assert response.status_code == 200
    assert response.json()["study_uids"] == [uids(study)[0]]


def test_a_readers_later_timepoint_stays_hidden_until_the_baseline_is_signed(
        live_server, qc_analyst, trial_manager, reader1, study, ready_site, tmp_path):  # noqa: F811
    week6 = ready_site["subject"].visits.get(timepoint="W6")
    later = deidentify(upload({**ready_site, "baseline": week6}, ct_series(tmp_path / "w6", count=5)))
    for accepted in (study, later):
        qc_run(study_id=accepted.pk, trigger="deidentified")
        accepted.refresh_from_db()
        study_accept(analyst=qc_analyst, study=accepted)
    reader = reader_add(actor=trial_manager, trial=study.trial, user=reader1)
    baseline_task = ReadTask.objects.create(trial=study.trial, subject=study.subject, visit=study.visit,
                                            reader=reader, slot="A", scan_date=study.acquisition_date)
    ReadTask.objects.create(trial=study.trial, subject=study.subject, visit=week6, reader=reader, slot="A",
                            scan_date=later.acquisition_date)
    client = dicomweb(live_server, reader1)

    assert [tag(s, "0020000D") for s in client.search_for_studies()] == [uids(study)[0]]
    assert get(live_server, reader1, f"/studies/{uids(later)[0]}/metadata").status_code == 404

    baseline_task.status = ReadTask.Status.SIGNED  # the baseline signed: week 6 unlocks, baseline stays visible
    baseline_task.save(update_fields=["status"])

    assert {tag(s, "0020000D") for s in client.search_for_studies()} == {uids(study)[0], uids(later)[0]}


# -- compression, the cached metadata answer, the OpenAPI schema ---------------------------------------------

def test_json_answers_are_gzipped_for_clients_that_accept_it_and_frames_are_not(client, qc_analyst, study):
    import gzip

    study_uid, series_uid, sops = uids(study)
    client.force_login(qc_analyst)
    path = f"/dicomweb/studies/{study_uid}/series/{series_uid}/metadata"

    plain = client.get(path)
    packed = client.get(path, HTTP_ACCEPT_ENCODING="gzip, deflate")
    qido = client.get(f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances?includefield=all",
                      HTTP_ACCEPT_ENCODING="gzip")
    frame = client.get(f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sops[0]}/frames/1",
                       HTTP_ACCEPT_ENCODING="gzip")

    assert "Content-Encoding" not in plain and plain["Content-Type"] == "application/dicom+json"
    assert packed["Content-Encoding"] == "gzip" and "Accept-Encoding" in packed["Vary"]
    assert len(packed.content) < len(plain.content) / 3
    assert json.loads(gzip.decompress(packed.content)) == json.loads(plain.content)
    assert qido["Content-Encoding"] == "gzip" and len(json.loads(gzip.decompress(qido.content))) == 5
    assert frame.status_code == 200 and "Content-Encoding" not in frame
    missing = client.get(f"/dicomweb/studies/{study_uid}/series/2.25.1/metadata", HTTP_ACCEPT_ENCODING="gzip")
    assert missing.status_code == 404 and "Content-Encoding" not in missing  # small answers stay as they are


def test_the_cached_metadata_answer_names_the_asking_servers_own_urls(client, qc_analyst, study):
    study_uid, series_uid, sops = uids(study)
    client.force_login(qc_analyst)
    path = f"/dicomweb/studies/{study_uid}/series/{series_uid}/metadata"

    first = client.get(path, HTTP_HOST="127.0.0.1").json()
    second = client.get(path, HTTP_HOST="localhost").json()  # the same answer, now from the cache

    assert first[0]["7FE00010"]["BulkDataURI"].startswith("http://127.0.0.1/dicomweb/studies/")
    assert second[0]["7FE00010"]["BulkDataURI"].startswith("http://localhost/dicomweb/studies/")
    assert json.dumps(second).replace("localhost", "127.0.0.1") == json.dumps(first)
    assert "dicomweb-base" not in json.dumps(second)


def test_the_openapi_schema_lists_the_dicomweb_read_endpoints(client, qc_analyst):
    client.force_login(qc_analyst)

    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]

    series = "/dicomweb/studies/{study}/series/{series}"
    instance = series + "/instances/{sop}"
    for path, media in [("/dicomweb/studies", "application/dicom+json"),
                        ("/dicomweb/studies/{study}/series", "application/dicom+json"),
                        (series + "/instances", "application/dicom+json"),
                        ("/dicomweb/studies/{study_uid}", "multipart/related"),
                        (series, "multipart/related"),
                        (series + "/metadata", "application/dicom+json"),
                        (instance + "/frames/{frames}", "multipart/related"),
                        (instance + "/rendered", "image/png")]:
        operation = paths[path]["get"]
        assert media in operation["responses"]["200"]["content"], path
        assert {"401", "404"} <= set(operation["responses"]), path
    assert "post" in paths["/dicomweb/studies"]  # STOW-RS on the same URL keeps its own entry
    qido = {p["name"] for p in paths["/dicomweb/studies"]["get"]["parameters"]}
    assert {"limit", "offset", "includefield", "PatientID", "StudyInstanceUID"} <= qido
    frames = paths[instance + "/frames/{frames}"]["get"]
    assert {"Accept", "frames"} <= {p["name"] for p in frames["parameters"]} and "406" in frames["responses"]
