"""The C-STORE gateway, driven over real sockets by DCMTK's storescu/echoscu and by pynetdicom as SCU.

The gateway serves from threads of this process (or, for the command, from child processes), each with
its own database connection, so these tests commit for real (transactional database).
"""

import datetime
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from django.core.files.storage import storages
from django.db import connection
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from intake.filer import Filer
from intake.gateway import Gateway
from intake.models import ImagingStudy, Instance, Submission
from intake.services import gateway_peer_register, submission_open
from intake.spool import Spool
from trials.services import qualification_decide, qualification_request, qualification_submit, subject_enroll

from ..conftest import database_url_for_children
from ..trials.factories import ProtocolVersionFactory, ScannerFactory
from .dicom import make_study

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
PEER = "SITE101PACS"
ENROLLED = datetime.date(2026, 3, 2)
BASELINE = datetime.date(2026, 3, 1)  # inside the baseline window (28 days before enrolment, up to it)
SCANNER = {"Manufacturer": "SIEMENS", "ManufacturerModelName": "SOMATOM Force", "DeviceSerialNumber": "75123",
           "SoftwareVersions": "syngo CT VA50A"}
SCANNER_FIELDS = {"manufacturer": "SIEMENS", "model": "SOMATOM Force", "serial": "75123",
                  "software_version": "syngo CT VA50A"}


@pytest.fixture(scope="module", autouse=True)
def _dcmtk():
    if not shutil.which("storescu") or not shutil.which("echoscu"):
        pytest.fail("DCMTK's storescu/echoscu are missing: `make debs` installs the dcmtk package")


@pytest.fixture
def enrolled(trial, site1, coordinator_site1, qc_analyst, trial_manager):
    """Site 1 qualified for CT_CAP and MR_BRAIN, one enrolled subject (MRN-1001), a registered DICOM sender."""
    ProtocolVersionFactory(trial=trial)
    for procedure, scanner in [("CT_CAP", ScannerFactory(site=site1, **SCANNER_FIELDS)),
                               ("MR_BRAIN", ScannerFactory(site=site1, modality="MR", manufacturer="GE",
                                                           model="SIGNA", serial="MR1"))]:
        qualification = qualification_request(actor=coordinator_site1, site=site1, scanner=scanner,
                                              procedure=procedure)
        qualification_submit(actor=coordinator_site1, qualification=qualification, study_reference="PH-1")
        qualification_decide(actor=qc_analyst, qualification=qualification, approve=True)
    subject = subject_enroll(actor=coordinator_site1, site=site1, code="101-0001", patient_id="MRN-1001",
                             enrollment_date=ENROLLED)
    gateway_peer_register(actor=trial_manager, site=site1, ae_title=PEER)
    return subject


@pytest.fixture
def gateway(tmp_path):
    gateway = Gateway(host="127.0.0.1", port=0, spool=Spool(tmp_path / "spool")).start()
    yield gateway
    gateway.stop(grace=1)


def _dcmtk_env() -> dict[str, str]:
    # Debian's DCMTK leaves Nagle's algorithm on unless told: ~40 ms per C-STORE otherwise
    return {**os.environ, "TCP_NODELAY": "1"}


def storescu(port: int, *paths: Path, calling: str = PEER, called: str = "CORELAB", options: tuple = (),
             wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    command = ["storescu", *options, "-aec", called, "-aet", calling, "127.0.0.1", str(port), *map(str, paths)]
    if not wait:
        return subprocess.Popen(command, env=_dcmtk_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(command, env=_dcmtk_env(), capture_output=True, text=True, timeout=60)


def push(gateway: Gateway, *paths: Path, **kwargs) -> subprocess.CompletedProcess:
    """storescu, then wait for the gateway to finish the association (the sender does not wait for that)
    and to file what it received."""
    result = storescu(gateway.port, *paths, **kwargs)
    assert gateway.wait_idle(10) and gateway.wait_filed(30)
    return result


def _scu_store(gateway: Gateway, dataset: pydicom.Dataset) -> pydicom.Dataset:
    """Send ``dataset`` over one pynetdicom association; the response status (pynetdicom shows its code)."""
    ae = AE(ae_title=PEER)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title="CORELAB")
    assert assoc.is_established
    try:
        return assoc.send_c_store(dataset)
    finally:
        assoc.release()
        assert gateway.wait_idle(10) and gateway.wait_filed(30)


def _study(folder: Path, count: int = 3, **kwargs) -> list[Path]:
    return make_study(folder, patient_id="MRN-1001", date=BASELINE, scanner=SCANNER, count=count, **kwargs)


def _dataset_bytes(raw: bytes) -> bytes:
    """The data set of a Part 10 file: everything after the File Meta Information group."""
    meta_length = int.from_bytes(raw[140:144], "little")  # (0002,0000) is the first element after "DICM"
    return raw[144 + meta_length:]


def test_echo_is_answered_and_opens_no_submission(gateway, enrolled):
    result = subprocess.run(["echoscu", "-aec", "CORELAB", "-aet", PEER, "127.0.0.1", str(gateway.port)],
                            env=_dcmtk_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not Submission.objects.exists()


def test_a_study_pushed_by_storescu_is_filed_and_matched_to_the_subject_and_visit(tmp_path, gateway, enrolled):
    paths = _study(tmp_path)
    result = push(gateway, *paths)
    assert result.returncode == 0, result.stdout + result.stderr

    study = ImagingStudy.objects.get()
    assert (study.subject, study.visit.timepoint, study.procedure, study.status) == (
        enrolled, "BL", "CT_CAP", ImagingStudy.Status.RECEIVED)
    assert study.instances.count() == 3
    submission = Submission.objects.get()
    assert (submission.channel, submission.calling_ae, submission.remote_address, submission.site_id) == (
        "dicom", PEER, "127.0.0.1", enrolled.site_id)
    assert (submission.accepted, submission.duplicates, submission.rejected) == (3, 0, 0)
    assert submission.finished_at is not None  # closed when the association was released
    # per-file results name the C-STORE, never an identifier from the header
    assert [r["file"] for r in submission.results] == ["C-STORE 1", "C-STORE 2", "C-STORE 3"]
    sent = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p).PixelData for p in paths}
    for instance in study.instances.all():
        stored = pydicom.dcmread(io.BytesIO(storages["quarantine"].open(instance.raw_key).read()))
        assert stored.PixelData == sent[stored.SOPInstanceUID]
        assert stored.file_meta.SourceApplicationEntityTitle == PEER  # who sent it, kept with the bytes


def test_a_study_pushed_over_two_associations_is_one_study(tmp_path, gateway, enrolled):
    paths = _study(tmp_path, count=4)
    assert push(gateway, *paths[:2]).returncode == 0
    assert push(gateway, *paths[2:]).returncode == 0

    study = ImagingStudy.objects.get()
    assert study.instances.count() == 4 and study.series.count() == 1
    assert Submission.objects.filter(finished_at__isnull=False).count() == 2


def test_a_study_pushed_again_is_acknowledged_and_not_stored_twice(tmp_path, gateway, enrolled):
    paths = _study(tmp_path, count=2)
    assert push(gateway, *paths).returncode == 0
    again = push(gateway, *paths)
    assert again.returncode == 0, again.stdout + again.stderr  # a duplicate is a success for the sender
    assert Instance.objects.count() == 2
    assert Submission.objects.order_by("started_at").last().duplicates == 2


def test_concurrent_associations_all_succeed_and_assemble_one_study(tmp_path, gateway, enrolled):
    # as PACS do when they split a study over parallel associations: each starts on the same new study
    paths = _study(tmp_path, count=12)
    senders = [storescu(gateway.port, *paths[n::4], wait=False) for n in range(4)]
    for sender in senders:
        output, _ = sender.communicate(timeout=60)
        assert sender.returncode == 0, output
    assert gateway.wait_idle(10) and gateway.wait_filed(30)

    study = ImagingStudy.objects.get()
    assert study.instances.count() == 12 and study.version == 1
    assert list(Submission.objects.values_list("accepted", flat=True)) == [3, 3, 3, 3]


@pytest.mark.parametrize(("calling", "called", "message"), [
    ("STRANGER", "CORELAB", "Calling AE Title Not Recognized"),
    (PEER, "OTHERLAB", "Called AE Title Not Recognized"),
])
def test_an_unknown_sender_is_refused_at_association(tmp_path, gateway, enrolled, calling, called, message):
    result = push(gateway, *_study(tmp_path, count=1), calling=calling, called=called)
    assert result.returncode != 0
    assert "Association Rejected" in result.stderr + result.stdout
    assert message in result.stderr + result.stdout
    assert not Submission.objects.exists() and not Instance.objects.exists()


def test_a_peer_registered_with_a_source_address_is_refused_from_elsewhere(tmp_path, gateway, enrolled, site1,
                                                                          trial_manager):
    gateway_peer_register(actor=trial_manager, site=site1, ae_title="SITE101MOD", source_address="192.0.2.10")
    result = push(gateway, *_study(tmp_path, count=1), calling="SITE101MOD")
    assert result.returncode != 0 and "Calling AE Title Not Recognized" in result.stderr + result.stdout
    assert not Submission.objects.exists()


def test_a_compressed_image_is_stored_as_received(tmp_path, gateway, enrolled):
    ds = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))  # MR Image Storage, JPEG 2000 lossless
    ds.PatientID, ds.PatientName = "MRN-1001", "Synthetic^Patient"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = BASELINE.strftime("%Y%m%d")
    ds.BodyPartExamined = "BRAIN"
    path = tmp_path / "j2k.dcm"
    ds.save_as(path, enforce_file_format=True)

    # -xv: propose JPEG 2000 lossless, so storescu sends the file as it is instead of decompressing it
    result = push(gateway, path, options=["-xv"])
    assert result.returncode == 0, result.stdout + result.stderr

    instance = Instance.objects.get()
    assert instance.transfer_syntax_uid == JPEG2000Lossless
    stored = pydicom.dcmread(io.BytesIO(storages["quarantine"].open(instance.raw_key).read()))
    assert stored.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert stored.PixelData == ds.PixelData  # the JPEG 2000 code stream byte for byte: never decoded
    assert (instance.study.subject, instance.study.procedure) == (enrolled, "MR_BRAIN")


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda ds: delattr(ds, "PixelData"), "no pixel data"),
    (lambda ds: setattr(ds, "PixelData", ds.PixelData[:1000]), "truncated"),
])
def test_a_broken_data_set_is_refused_with_its_reason_and_nothing_is_stored(tmp_path, gateway, enrolled, damage,
                                                                            reason):
    ds = pydicom.dcmread(_study(tmp_path, count=1)[0])
    damage(ds)
    status = _scu_store(gateway, ds)

    assert status.Status == 0x0000  # answered once spooled: the filer refuses it, the Submission says why
    assert not Instance.objects.exists() and not ImagingStudy.objects.exists()
    submission = Submission.objects.get()
    assert submission.rejected == 1 and submission.results[0]["reason"].startswith(reason)


def test_a_patient_of_another_site_is_refused_with_the_reason(tmp_path, gateway, enrolled, site2,
                                                             coordinator_site2):
    subject_enroll(actor=coordinator_site2, site=site2, code="102-0001", patient_id="MRN-2002",
                   enrollment_date=ENROLLED)
    ds = pydicom.dcmread(make_study(tmp_path, patient_id="MRN-2002", date=BASELINE, scanner=SCANNER, count=1)[0])
    status = _scu_store(gateway, ds)

    assert status.Status == 0x0000
    assert not Instance.objects.exists() and not gateway.spool.pending()  # nothing kept, anywhere
    submission = Submission.objects.get()
    assert submission.rejected == 1 and "another site" in submission.results[0]["reason"]
    assert submission.finished_at is not None


def test_an_instance_over_the_size_limit_is_refused_as_out_of_resources(tmp_path, gateway, enrolled, settings):
    settings.INTAKE_MAX_FILE_BYTES = 10_000  # CT_small is about 39 kB
    status = _scu_store(gateway, pydicom.dcmread(_study(tmp_path, count=1)[0]))

    assert status.Status == 0xA700 and "byte limit" in status.ErrorComment
    assert not Instance.objects.exists()
    submission = Submission.objects.get()
    assert submission.rejected == 1 and "byte limit" in submission.results[0]["reason"]


def test_filing_waits_out_a_lost_database_connection_and_loses_nothing(tmp_path, gateway, enrolled):
    first, second, third = (pydicom.dcmread(p) for p in _study(tmp_path))
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        before = cursor.fetchone()[0]
    ae = AE(ae_title=PEER)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title="CORELAB")
    try:
        assert assoc.send_c_store(first).Status == 0x0000
        assert gateway.wait_filed(30) is False  # the association is open: its Submission is not closed yet
        # the database drops the gateway's connections (a restart, a failover): those opened since
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND pid <> pg_backend_pid() AND backend_start > %s", [before])
            assert cursor.fetchall()
        # the receiver needs no database after the first instance, and the filer connects afresh
        assert assoc.send_c_store(second).Status == 0x0000
        assert assoc.send_c_store(third).Status == 0x0000
    finally:
        assoc.release()
        assert gateway.wait_idle(10) and gateway.wait_filed(30)
    assert Instance.objects.count() == 3
    assert Submission.objects.get().accepted == 3


def test_stopping_aborts_an_open_association_and_closes_its_submission(tmp_path, enrolled):
    gateway = Gateway(host="127.0.0.1", port=0, spool=Spool(tmp_path / "spool")).start()
    ae = AE(ae_title=PEER)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", gateway.port, ae_title="CORELAB")
    assert assoc.send_c_store(pydicom.dcmread(_study(tmp_path, count=1)[0])).Status == 0x0000

    gateway.stop(grace=0.2)  # the sender never releases

    assert assoc.is_aborted or not assoc.is_established
    submission = Submission.objects.get()
    assert submission.finished_at is not None and submission.accepted == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_command_spreads_concurrent_associations_over_its_workers_and_stops_on_sigterm(tmp_path, enrolled):
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url_for_children(), "PYTHONUNBUFFERED": "1",
           "INTAKE_SPOOL_DIR": str(tmp_path / "spool")}
    gateway = subprocess.Popen([sys.executable, "manage.py", "dicom_gateway", "--host", "127.0.0.1", "--port",
                                str(port), "--processes", "2"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["echoscu", "-aec", "CORELAB", "-aet", PEER, "127.0.0.1", str(port)],
                             env=_dcmtk_env(), capture_output=True).returncode != 0:
            assert gateway.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        paths = _study(tmp_path, count=12)
        senders = [storescu(port, *paths[n::4], wait=False) for n in range(4)]
        for sender in senders:
            output, _ = sender.communicate(timeout=60)
            assert sender.returncode == 0, output
    finally:
        gateway.send_signal(signal.SIGTERM)
        output, _ = gateway.communicate(timeout=30)
    assert gateway.returncode == 0, output
    assert ImagingStudy.objects.get().instances.count() == 12
    assert Submission.objects.filter(accepted=3, finished_at__isnull=False).count() == 4
    stores = [line for line in output.splitlines() if "3 spooled for filing" in line]
    assert len(stores) == 4, output
    workers = sorted(line.split("worker ")[1][0] for line in stores)
    assert workers == ["0", "0", "1", "1"], output  # two each: both cores take an equal share


def test_what_a_killed_gateway_left_in_the_spool_is_filed_at_the_next_start(tmp_path, enrolled):
    """Instances answered as stored are in the spool: a filer that starts later files them and closes."""
    spool = Spool(tmp_path / "spool")
    submission = submission_open(actor=None, site=enrolled.site, channel=Submission.Channel.DICOM,
                                 calling_ae=PEER)
    for sequence, path in enumerate(_study(tmp_path, count=3), start=1):
        spool.put(submission_id=submission.pk, sequence=sequence, chunks=[path.read_bytes()])
    spool.close(submission.pk)
    partial = spool.folder(submission.pk) / ".partial-000000004"  # killed while writing the fourth
    partial.write_bytes(b"\x00" * 100)

    assert spool.discard_partials() == 1 and not partial.exists()
    assert Filer(spool=spool).drain(timeout=30)

    submission.refresh_from_db()
    assert (submission.accepted, submission.rejected, submission.finished_at is not None) == (3, 0, True)
    assert [r["file"] for r in submission.results] == ["C-STORE 1", "C-STORE 2", "C-STORE 3"]
    assert ImagingStudy.objects.get().instances.count() == 3
    assert not spool.pending() and not spool.folder(submission.pk).exists()


def test_a_filer_that_files_a_batch_again_acknowledges_duplicates_and_stores_nothing_twice(tmp_path, enrolled):
    """A filer killed after its batch committed, before removing the files, files them again on restart."""
    spool = Spool(tmp_path / "spool")
    submission = submission_open(actor=None, site=enrolled.site, channel=Submission.Channel.DICOM,
                                 calling_ae=PEER)
    paths = _study(tmp_path, count=2)
    for sequence, path in enumerate(paths, start=1):
        spool.put(submission_id=submission.pk, sequence=sequence, chunks=[path.read_bytes()])
    Filer(spool=spool).file_once()
    for sequence, path in enumerate(paths, start=1):  # as if never removed
        spool.put(submission_id=submission.pk, sequence=sequence, chunks=[path.read_bytes()])
    spool.close(submission.pk)
    assert Filer(spool=spool).drain(timeout=30)

    submission.refresh_from_db()
    assert (submission.accepted, submission.duplicates) == (2, 2)
    stored = {instance.raw_key for instance in Instance.objects.all()}
    assert len(stored) == 2 and all(storages["quarantine"].exists(key) for key in stored)
    # the second filing linked no new objects: every file under the study's folder is one of the two
    folder = Path(storages["quarantine"].path(next(iter(stored)))).parent
    assert len(list(folder.iterdir())) == 2


@pytest.mark.parametrize("source_ae", ["SITE101PACS", "ODD", ""])
def test_the_part10_header_is_what_pydicoms_writer_would_write(source_ae):
    """The gateway encodes File Meta Information itself (for speed): byte for byte what pydicom writes."""
    from pynetdicom.dsutils import create_file_meta, encode_file_meta

    from intake.gateway import part10_header

    sop_class, sop_instance, syntax = CTImageStorage, generate_uid(), JPEG2000Lossless
    meta = create_file_meta(sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax=syntax)
    if source_ae:
        meta.SourceApplicationEntityTitle = source_ae
    expected = b"\x00" * 128 + b"DICM" + encode_file_meta(meta)
    assert part10_header(sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax_uid=syntax,
                         source_ae=source_ae) == expected


def test_the_spool_recreates_a_folder_removed_under_it(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.put(submission_id=7, sequence=1, chunks=[b"one"])
    shutil.rmtree(spool.folder(7))  # emptied by hand (or a restored database reusing the id)
    path = spool.put(submission_id=7, sequence=2, chunks=[b"two"])
    assert path.read_bytes() == b"two" and [s.files for s in spool.pending()] == [[path]]
