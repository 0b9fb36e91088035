"""manage.py deidentify: a folder through the same engine, a JSON report, never over existing files."""

import hashlib
import io
import json

import pydicom
import pytest
from django.core.files.storage import storages
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from deid.services import series_deidentify

from .conftest import PATIENT_ID, phi_study, upload

PHI = [b"MRN-1001", b"Doe^Jane", b"19610704", b"ACC-9931", b"Roe^Richard", b"NHS-4471"]


@pytest.fixture
def folder(tmp_path):
    source = tmp_path / "in"
    phi_study(source / "patient one", count=2)
    phi_study(source / "nested" / "deeper", count=1, patient_id="MRN-2002")
    (source / "notes.txt").write_text("not a DICOM file")
    return source


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(b"a-site-audit-key-0123456789abcdef\n")
    return path


def _run(*args):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("deidentify", *map(str, args), stdout=out, stderr=err)
        return out.getvalue(), err.getvalue(), None
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), exc


def test_basic_profile_with_a_key_file_writes_outputs_and_a_report(tmp_path, folder, key_file):
    target = tmp_path / "out"
    _, err, failure = _run("--profile", "basic", "--key-file", key_file, "--input", folder, "--output", target)

    assert "3 released, 0 held, 1 refused of 4 file(s)" in str(failure)  # non-zero exit, after finishing
    assert "notes.txt: error: not a readable DICOM file" in err
    report = json.loads((target / "deid-report.json").read_text())
    assert report["totals"] == {"files": 4, "released": 3, "held": 0, "error": 1}
    assert report["profile"] == {"trial": None, "profile_version": None, "options": [], "added_options": [],
                                 "safe_private": []}
    by_file = {entry["file"]: entry for entry in report["files"]}
    outputs = sorted(p for p in target.rglob("*.dcm"))
    assert len(outputs) == 3 and all(by_file[str(p.relative_to(target))]["outcome"] == "released" for p in outputs)
    entry = by_file[str(outputs[0].relative_to(target))]
    assert entry["verification"] == {"passed": True, "findings": []} and entry["actions"]["X"] > 0
    codes = {}
    for path in outputs:
        data = path.read_bytes()
        assert not [phi for phi in PHI if phi in data]
        ds = pydicom.dcmread(path)
        assert ds.PatientID == ds.PatientName and ds.PatientID.startswith("ANON-")
        codes.setdefault(path.parent.name, set()).add(ds.PatientID)
    # one pseudonym per patient, stable; two patients, two pseudonyms
    assert len(codes["patient one"]) == 1 and codes["patient one"] != codes["deeper"]

    again = tmp_path / "again"
    _run("--profile", "basic", "--key-file", key_file, "--input", folder, "--output", again)
    for path in outputs:  # the same key gives the same output, byte for byte
        assert (again / path.relative_to(target)).read_bytes() == path.read_bytes()


def test_existing_output_files_are_never_overwritten(tmp_path, folder, key_file):
    target = tmp_path / "out"
    _run("--profile", "basic", "--key-file", key_file, "--input", folder, "--output", target)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}

    _, _, failure = _run("--profile", "basic", "--key-file", key_file, "--input", folder, "--output", target,
                         "--profile-option", "retain_uids")

    assert "refusing to overwrite 4 existing file(s)" in str(failure)
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("args, message", [
    (["--profile", "basic"], "needs --key-file"),
    ([], "give --trial CODE, or --profile basic with --key-file"),
    (["--trial", "NO-SUCH-TRIAL"], "no trial with protocol number NO-SUCH-TRIAL"),
])
@pytest.mark.django_db
def test_clear_errors_for_a_wrong_invocation(tmp_path, folder, args, message):
    _, _, failure = _run(*args, "--input", folder, "--output", tmp_path / "out")
    assert message in str(failure)
    assert not (tmp_path / "out").exists()


def test_a_short_key_and_an_output_inside_the_input_are_refused(tmp_path, folder):
    short = tmp_path / "short"
    short.write_bytes(b"tiny")
    assert "at least 16 bytes" in str(_run("--profile", "basic", "--key-file", short, "--input", folder,
                                           "--output", tmp_path / "out")[2])
    assert "outside --input" in str(_run("--profile", "basic", "--key-file", short, "--input", folder,
                                         "--output", folder / "out")[2])


@pytest.mark.django_db
def test_a_trial_run_matches_the_pipeline_byte_for_byte_and_is_audited(
        tmp_path, stores, trial, site1, coordinator_site1, ready_site):
    paths = phi_study(tmp_path / "in", count=2)
    phi_study(tmp_path / "in", count=1, patient_id="MRN-2002")  # nobody enrolled with this Patient ID
    study = upload(coordinator=coordinator_site1, site=site1, ready=ready_site, paths=paths)
    series_deidentify(series_id=study.series.get().pk)
    archived = {i.raw_sha256: storages["archive"].open(i.deid_key).read() for i in study.instances.all()}
    target = tmp_path / "out"

    _, err, failure = _run("--trial", trial.protocol_number, "--input", tmp_path / "in", "--output", target)

    assert "2 released, 0 held, 1 refused of 3 file(s)" in str(failure)
    assert "no enrolled subject of the trial matches" in err
    for path in paths:  # the CLI and the Celery path release the very same bytes
        out = (target / path.name).read_bytes()
        assert out == archived[hashlib.sha256(path.read_bytes()).hexdigest()]
        assert pydicom.dcmread(io.BytesIO(out)).PatientID == "101-0001" != PATIENT_ID
    event = AuditEvent.objects.get(action="deid.cli_run")
    assert event.trial_id == trial.pk and event.details["released"] == 2 and event.details["error"] == 1
    assert event.details["profile_version"] == 1
    report = (target / "deid-report.json").read_bytes()
    assert event.details["report_sha256"] == hashlib.sha256(report).hexdigest()


@pytest.mark.django_db
def test_a_profile_option_is_added_to_the_trials_profile_and_reported(
        tmp_path, stores, trial, site1, ready_site):
    phi_study(tmp_path / "in", count=1)
    target = tmp_path / "out"

    out, _, failure = _run("--trial", trial.protocol_number, "--input", tmp_path / "in", "--output", target,
                           "--profile-option", "retain_longitudinal_modified_dates")

    assert failure is None and "1 released" in out
    report = json.loads((target / "deid-report.json").read_text())
    assert report["profile"]["added_options"] == ["retain_longitudinal_modified_dates"]
    assert report["files"][0]["dates_shifted"] > 0
    ds = pydicom.dcmread(next(target.glob("*.dcm")))
    assert ds.StudyDate != "20260301" and len(ds.StudyDate) == 8
