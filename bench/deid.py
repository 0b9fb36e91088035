"""De-identification bench: the engine against plain pydicom read + write and the public de-identifiers, same files.

Run: ``.venv/bin/python bench/deid.py`` (``--count N`` CT instances, ``--rounds R``, ``--tool-count M``
instances for the public tools, ``--skip-tools``).

The public tools are not project dependencies. Install them first (the bench skips, and says so,
whatever is missing): ``.venv/bin/pip install -e '.[bench]'`` (dicognito, dicom-anonymizer, deid,
pinned in pyproject.toml) and ``apt-get install libgdcm-tools`` (gdcmanon) plus ``openssl``. PyPI's deid
is a top-level package named like this project's app: every entry point puts the project root first,
so the app wins, but a separate venv (``--tools-python other-venv/bin/python``) avoids the question.

Speed. N copies of a 512x512 16-bit CT (``693_UNCI.dcm``, PyPI ``pydicom-data``) with synthetic PHI and
their own UIDs are written as files to a temporary folder (``/dev/shm`` when there is one). Each mode
goes from those files to output files, one instance at a time:

- *read+write*: ``dcmread`` + ``save_as``, nothing else: the floor any pydicom pipeline pays;
- *corelab basic, Dataset API*: ``dcmread`` + ``deidentify`` + ``save_as`` + ``verify`` under the Basic
  Profile, the engine's whole-dataset path (how callers used it before ``deidentify_bytes``);
- *corelab basic* / *corelab options*: ``deidentify_bytes`` (de-identify, verify, write) under the
  Basic Profile / with modified dates, clean descriptors, retained device, institution and patient
  characteristics and safe private; a file whose verification finds a problem fails the bench;
- *corelab pixels*: the options profile plus Clean Pixel Data blanking one 200x40 box (pixels decoded,
  blanked, re-encoded: the path files routed to pixel cleaning take);
- the public tools, each in its own process, on the first M files: ``gdcmanon -e`` (GDCM's PS3.15
  Basic Profile with a throw-away certificate), dicognito's ``Anonymizer``, dicom-anonymizer's
  ``anonymize_dataset`` and deid's ``replace_identifiers`` (default recipe, private tags removed),
  each with ``dcmread`` + ``save_as`` around it where the tool takes a dataset.

The in-process modes alternate for R rounds after a warm-up round and the median is reported. Rates
are per core: the CPU time of the process doing the work (for gdcmanon, of its process), so other
work on the machine changes them less than wall-clock rates.

Leaks. A small corpus of synthetic instances seeded with PHI (names in free-text descriptions,
private tags inside sequences, nested sequences, Other Patient IDs Sequence, Request Attributes
Sequence, attributes whose action is X; half of them also a name in an attribute the table does not
list) goes through
every tool. In each output, every element value at every nesting level and the file's raw bytes are
searched for each seeded value; a value found in a file counts once. Corelab's output counts only
when verification releases it; a held file is reported as held. Corelab runs the Basic Profile and a
cleaning profile (modified dates, clean descriptors and structured content, patient characteristics);
profiles that retain institution or device identity keep those values on purpose and are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
SAMPLE = "693_UNCI.dcm"
SUBJECT = "CL001-101-0007"
TOOLS = ["gdcmanon", "dicognito", "dicomanonymizer", "deid"]

# Seeded PHI: distinctive values, so that finding one in an output is never chance.
PHI = {
    "PatientName": "Quixfield^Marisol", "PatientID": "MRN-55501", "PatientBirthDate": "19610704",
    "AccessionNumber": "ACC-99317", "ReferringPhysicianName": "Vantongeren^Odile",
    "InstitutionName": "Wexmoor General Hospital", "InstitutionAddress": "12 Brackenridge Lane",
    "PatientAddress": "7 Thistlecombe Road", "PatientTelephoneNumbers": "555-014291",
    "OtherPatientIDs": "NHS-447120", "PatientBirthName": "Pellingham^Marisol", "RequestedProcedureID": "RP-778102",
    "OperatorsName": "Zabrowski^Tamsin", "StationName": "WEXMOOR-CT3",
}
# the values searched for in outputs: whole values and the name parts that free text carries
SEARCHED = sorted({*PHI.values(), "Quixfield", "Marisol", "Vantongeren", "Pellingham", "Zabrowski", "Wexmoor",
                   "Brackenridge", "Thistlecombe"}, key=str.lower)


def _engine():
    sys.path.insert(0, str(ROOT))
    from deid.engine import Keys, Profile

    keys = Keys(uid_key=b"bench-only-uid-key-not-for-any-trial", date_shift_days=-123)
    options = frozenset({"retain_longitudinal_modified_dates", "clean_descriptors", "retain_device_identity",
                         "retain_institution_identity", "retain_patient_characteristics", "retain_safe_private"})
    safe = frozenset({("BENCH CREATOR", 0x10)})
    profiles = {
        "corelab basic": (Profile(), None),
        "corelab options": (Profile(options=options, safe_private=safe), None),
        "corelab pixels": (Profile(options=options | {"clean_pixel_data"}, safe_private=safe), [(20, 20, 200, 40)]),
    }
    return keys, profiles


# ---- the corpus ---------------------------------------------------------------------------------------

def _write_ct(folder: Path, count: int) -> list[Path]:
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file(SAMPLE)
    if path is None:
        raise SystemExit(f"{SAMPLE} not found: install PyPI pydicom-data (pip install pydicom-data==1.0.0)")
    template = pydicom.dcmread(path)
    for keyword in ("PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence"):
        if keyword in template:  # the sample comes marked de-identified; what a site sends is not
            delattr(template, keyword)
    template.PatientName, template.PatientID, template.PatientBirthDate = "Doe^Jane", "MRN-55501", "19610704"
    template.StudyDate = template.SeriesDate = template.AcquisitionDate = template.ContentDate = "20240301"
    template.InstitutionName, template.StationName = "Synthetic General Hospital", "CT-ROOM-3"
    template.SeriesDescription, template.AccessionNumber = "Chest Doe baseline", "ACC-9931"
    template.private_block(0x0009, "BENCH CREATOR", create=True).add_new(0x10, "LO", "reconstruction note")
    folder.mkdir(parents=True)
    paths = []
    for number in range(count):
        template.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1.{number + 1}"
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.InstanceNumber = number + 1
        paths.append(folder / f"ct{number:05d}.dcm")
        template.save_as(paths[-1], enforce_file_format=True)
    return paths


def _write_leak_corpus(folder: Path) -> list[Path]:
    """Synthetic instances with PHI where de-identifiers tend to miss it."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.dataset import Dataset

    folder.mkdir(parents=True)
    paths = []
    names = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_implicit.dcm"]
    for number, name in enumerate(names * 2):
        ds = pydicom.dcmread(get_testdata_file(name))
        for tag in [t for t in ds.keys() if t >> 16 & 1]:
            del ds[tag]
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "ReferringPhysicianName",
                        "InstitutionName", "InstitutionAddress", "PatientAddress", "PatientTelephoneNumbers",
                        "OtherPatientIDs", "PatientBirthName", "OperatorsName", "StationName"):
            setattr(ds, keyword, PHI[keyword])
        # free text naming the patient
        ds.StudyDescription = "CT chest for Marisol Quixfield"
        ds.SeriesDescription = "Quixfield baseline"
        ds.ImageComments = "follow-up, patient QUIXFIELD MRN-55501"
        ds.AdditionalPatientHistory = "Mrs Quixfield, smoker, lives at 7 Thistlecombe Road"
        if number >= len(names):  # the second half: a name in an attribute Table E.1-1 does not list
            ds.ConvolutionKernel = "Quixfield"
        # Other Patient IDs Sequence and Request Attributes Sequence
        other = Dataset()
        other.PatientID, other.IssuerOfPatientID, other.TypeOfPatientID = "NHS-447120", "Wexmoor Trust", "TEXT"
        ds.OtherPatientIDsSequence = [other]
        request = Dataset()
        request.RequestedProcedureID, request.AccessionNumber = PHI["RequestedProcedureID"], PHI["AccessionNumber"]
        request.RequestedProcedureDescription = "CT for Marisol Quixfield"
        request.ScheduledProcedureStepDescription = "ordered by Dr Vantongeren"
        ds.RequestAttributesSequence = [request]
        # nested sequences two levels down, with a private block inside an item
        inner = Dataset()
        inner.PatientName, inner.PatientID = PHI["PatientName"], PHI["PatientID"]
        inner.ReferencedSOPClassUID, inner.ReferencedSOPInstanceUID = ds.SOPClassUID, f"1.2.826.0.1.3680043.10.9.{number}"
        inner.private_block(0x0011, "SITE PACS 2.1", create=True).add_new(0x10, "LO", "Quixfield^Marisol MRN-55501")
        outer = Dataset()
        outer.ReferencedSeriesSequence = [inner]
        outer.SeriesInstanceUID = ds.SeriesInstanceUID
        ds.ReferencedStudySequence = [outer]
        ds.private_block(0x0029, "SITE PACS 2.1", create=True).add_new(0x10, "LO", "Pellingham referral")
        paths.append(folder / f"leak{number}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def _leaks(path: Path) -> set[str]:
    """The seeded values found in ``path``: in any element value at any depth, or in its raw bytes."""
    import pydicom

    raw = path.read_bytes().lower()
    found = {value for value in SEARCHED if value.lower().encode() in raw}
    try:
        ds = pydicom.dcmread(path, force=True)
        texts = [str(elem.value) for elem in ds.iterall() if elem.VR != "SQ"]
        texts += [str(elem.value) for elem in ds.file_meta] if hasattr(ds, "file_meta") else []
    except Exception:  # an unreadable output: its bytes were searched already
        texts = []
    joined = "\n".join(texts).lower()
    return found | {value for value in SEARCHED if value.lower() in joined}


# ---- the modes --------------------------------------------------------------------------------------

def _plain(paths: list[Path], out: Path) -> None:
    import pydicom

    for path in paths:
        pydicom.dcmread(path).save_as(out / path.name, enforce_file_format=True)


def _corelab(paths: list[Path], out: Path, *, profile, boxes, keys, strict: bool = True) -> dict[str, list[str]]:
    from deid.engine import deidentify_bytes

    held = {}
    for path in paths:
        result = deidentify_bytes(path.read_bytes(), profile=profile, keys=keys, subject_code=SUBJECT,
                                  pixel_boxes=boxes)
        if result.problems:
            if strict:
                raise SystemExit(f"{path.name}: verification failed: {result.problems}")
            held[path.name] = result.problems
            continue  # held for review, never released
        (out / path.name).write_bytes(result.data)
    return held


def _whole_dataset(paths: list[Path], out: Path, *, profile, keys) -> None:
    """The engine's Dataset API, as callers used it before deidentify_bytes: dcmread, deidentify, save, verify."""
    import pydicom

    from deid.engine import deidentify, identifying_strings, verify

    for path in paths:
        ds = pydicom.dcmread(path)
        forbidden = identifying_strings(ds)
        deidentify(ds, profile=profile, keys=keys, subject_code=SUBJECT)
        ds.save_as(out / path.name, enforce_file_format=True)
        if verify(ds, profile=profile, subject_code=SUBJECT, forbidden=forbidden):
            raise SystemExit(f"{path.name}: verification failed")


def _timed(fn, *args, **kwargs) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn(*args, **kwargs)
    return time.process_time() - cpu, time.perf_counter() - wall


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _worker(tool: str, inputs: Path, out: Path, limit: int) -> None:
    """Run one Python tool over the first ``limit`` files, in this process; print CPU and wall seconds."""
    # PyPI deid and this project's deid app share a name: import the tool, never the app
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() not in (ROOT, HERE)]
    import pydicom

    paths = sorted(inputs.glob("*.dcm"))[:limit]
    if tool == "dicognito":
        from dicognito.anonymizer import Anonymizer

        anonymizer = Anonymizer()

        def one(path):
            ds = pydicom.dcmread(path)
            anonymizer.anonymize(ds)
            ds.save_as(out / path.name, enforce_file_format=True)
    elif tool == "dicomanonymizer":
        from dicomanonymizer import anonymize_dataset

        def one(path):
            ds = pydicom.dcmread(path)
            anonymize_dataset(ds, delete_private_tags=True)
            ds.save_as(out / path.name, enforce_file_format=True)
    elif tool == "deid":
        import logging

        from deid.dicom import replace_identifiers
        logging.disable(logging.WARNING)

        def one(path):
            replace_identifiers(dicom_files=[str(path)], save=True, overwrite=True, output_folder=str(out),
                                remove_private=True)
    else:
        raise SystemExit(f"unknown tool {tool}")
    failed = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for path in paths:
        try:
            one(path)
        except Exception:  # a tool that cannot take a file: counted, as a user would see it
            failed += 1
    print(json.dumps({"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall,
                      "count": len(paths), "failed": failed}))


TOOLS_PYTHON = sys.executable  # --tools-python: an interpreter of another venv holding the bench extra


def _tool_available(tool: str) -> str | None:
    """None when ``tool`` can run here, else why not."""
    if tool == "gdcmanon":
        missing = [cmd for cmd in ("gdcmanon", "openssl") if shutil.which(cmd) is None]
        return f"not installed: {', '.join(missing)} (apt-get install libgdcm-tools openssl)" if missing else None
    module = {"dicognito": "dicognito", "dicomanonymizer": "dicomanonymizer", "deid": "deid.dicom"}[tool]
    probe = subprocess.run([TOOLS_PYTHON, "-c", f"import {module}"], cwd=tempfile.gettempdir(),
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else "not installed (pip install -e '.[bench]')"


def _run_tool(tool: str, inputs: Path, out: Path, limit: int, work: Path) -> dict:
    """Run ``tool`` on the first ``limit`` files of ``inputs`` into ``out``: cpu and wall seconds, counts."""
    _fresh(out)
    if tool == "gdcmanon":
        staged = _fresh(work / "gdcm-in")
        for path in sorted(inputs.glob("*.dcm"))[:limit]:
            os.link(path, staged / path.name) if path.stat().st_dev == staged.stat().st_dev \
                else shutil.copy(path, staged / path.name)
        cert = work / "cert.pem"
        if not cert.exists():
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(work / "key.pem"),
                            "-out", str(cert), "-days", "2", "-nodes", "-subj", "/CN=corelab-bench"],
                           check=True, capture_output=True)
        before, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run(["gdcmanon", "-e", "-c", str(cert), "--continue", "-i", str(staged), "-o", str(out)],
                       check=True, capture_output=True)
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - wall
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        count = len(list(staged.glob("*.dcm")))
        return {"cpu": cpu, "wall": wall, "count": count, "failed": count - len(list(out.glob("*.dcm")))}
    run = subprocess.run([TOOLS_PYTHON, str(Path(__file__).resolve()), "--worker", tool, "--input", str(inputs),
                          "--output", str(out), "--tool-count", str(limit)],
                         cwd=tempfile.gettempdir(), capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{tool} worker failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


# ---- main -------------------------------------------------------------------------------------------

def main(*, count: int, rounds: int, tool_count: int, skip_tools: bool) -> None:
    import pydicom

    keys, profiles = _engine()
    base_dir = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="corelab-bench-deid-", dir=base_dir))
    try:
        paths = _write_ct(work / "ct", count)
        size = paths[0].stat().st_size
        print(f"deid bench: {count} x {SAMPLE} ({size / 1e3:.0f} kB, 512x512x16 CT) x {rounds} rounds, files in "
              f"{work.parent}, pydicom {pydicom.__version__}, Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs")
        modes = {"read+write": lambda out: _plain(paths, out),
                 "corelab basic, Dataset API": lambda out: _whole_dataset(paths, out, profile=profiles["corelab basic"][0],
                                                                          keys=keys)}
        for name, (profile, boxes) in profiles.items():
            modes[name] = lambda out, p=profile, b=boxes: _corelab(paths, out, profile=p, boxes=b, keys=keys)
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        wall: dict[str, list[float]] = {mode: [] for mode in modes}
        for number in range(rounds + 1):
            for mode, fn in modes.items():
                spent, span = _timed(fn, _fresh(work / "out"))
                if number:  # round 0 warms up imports, the compiled table and caches in every mode
                    cpu[mode].append(spent)
                    wall[mode].append(span)
        base = count / statistics.median(cpu["read+write"])
        rows = []
        for mode in modes:
            rate = count / statistics.median(cpu[mode])
            rows.append((mode, count, rate, rate / base, count / statistics.median(wall[mode]), ""))

        tools = [] if skip_tools else TOOLS
        missing = {tool: why for tool in tools if (why := _tool_available(tool))}
        for tool in tools:
            if tool in missing:
                rows.append((tool, 0, None, None, None, missing[tool]))
                continue
            result = _run_tool(tool, work / "ct", work / "out", min(tool_count, count), work)
            rate = result["count"] / result["cpu"]
            note = f"{result['failed']} failed" if result["failed"] else ""
            rows.append((tool, result["count"], rate, rate / base, result["count"] / result["wall"], note))
        shutil.rmtree(work / "out", ignore_errors=True)

        print("\n| tool | instances | instances/s per core | ratio to read+write | wall instances/s | note |")
        print("|---|---|---|---|---|---|")
        for mode, n, rate, ratio, wall_rate, note in rows:
            if rate is None:
                print(f"| {mode} | — | — | — | — | {note} |")
            else:
                print(f"| {mode} | {n} | {rate:.0f} | {ratio:.2f} | {wall_rate:.0f} | {note} |")
        print("CPU s per round: " + "; ".join(f"{m}: {', '.join(f'{s:.2f}' for s in cpu[m])}" for m in modes))

        _leak_table(work, keys=keys, profiles=profiles, tools=[t for t in tools if t not in missing])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _leak_table(work: Path, *, keys, profiles, tools: list[str]) -> None:
    import pydicom

    corpus = _write_leak_corpus(work / "leak")
    seeded = {path.name: _leaks(path) for path in corpus}
    print(f"\nleaks: {len(corpus)} synthetic instances, {sum(map(len, seeded.values()))} seeded values "
          f"({len(SEARCHED)} distinct) searched in every element value, at every depth, and in the raw bytes")
    print("\n| tool | files out | held by verification | PHI values left | files with PHI | "
          "PatientIdentityRemoved=YES | values left, most common |")
    print("|---|---|---|---|---|---|---|")
    runs = {}
    from deid.engine import Profile

    cleaning = Profile(options=frozenset({"retain_longitudinal_modified_dates", "clean_descriptors",
                                          "clean_structured_content", "retain_patient_characteristics"}))
    for name, profile in (("corelab basic", profiles["corelab basic"][0]), ("corelab cleaning options", cleaning)):
        out = _fresh(work / "leak-out" / name.replace(" ", "-"))
        runs[name] = (out, _corelab(corpus, out, profile=profile, boxes=None, keys=keys, strict=False))
    for tool in tools:
        out = work / "leak-out" / tool
        _run_tool(tool, work / "leak", out, len(corpus), work)
        runs[tool] = (out, {})
    for name, (out, held) in runs.items():
        outputs = sorted(out.glob("*.dcm"))
        found = {path.name: _leaks(path) for path in outputs}
        left = sum(len(values) for values in found.values())
        marked = 0
        for path in outputs:
            try:
                marked += pydicom.dcmread(path, force=True).get("PatientIdentityRemoved") == "YES"
            except Exception:
                pass
        common: dict[str, int] = {}
        for values in found.values():
            for value in values:
                common[value] = common.get(value, 0) + 1
        top = ", ".join(f"{v} ({n})" for v, n in sorted(common.items(), key=lambda i: (-i[1], i[0]))[:4])
        print(f"| {name} | {len(outputs)} | {len(held)} | {left} | {sum(1 for v in found.values() if v)} | "
              f"{marked}/{len(outputs)} | {top or '—'} |")
        for file, problems in held.items():
            print(f"    held {file}: {'; '.join(problems)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="CT instances (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per in-process mode (default 3)")
    parser.add_argument("--tool-count", type=int, default=500, help="instances per public tool (default 500)")
    parser.add_argument("--skip-tools", action="store_true", help="leave the public tools out")
    parser.add_argument("--tools-python", default=sys.executable,
                        help="Python interpreter with the public tools installed (default: this one)")
    parser.add_argument("--worker", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    TOOLS_PYTHON = args.tools_python
    if args.worker:
        _worker(args.worker, args.input, args.output, args.tool_count)
    else:
        main(count=args.count, rounds=args.rounds, tool_count=args.tool_count, skip_tools=args.skip_tools)
