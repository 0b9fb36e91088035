"""De-identification engine benchmark: what ``deidentify`` costs on top of reading and writing the file.

Run: ``.venv/bin/python bench/deid.py`` (``--count N`` instances per round, ``--rounds R``).

In-process, no database. The instance is a 512x512 CT (``693_UNCI.dcm``, 16-bit, uncompressed, from
PyPI ``pydicom-data``) given synthetic PHI; N distinct copies (own UIDs, names, dates) are prepared in
memory first, so the clock sees parsing, de-identification and encoding, not the disk. Modes, each
from bytes to bytes:

1. baseline: ``dcmread`` + ``save_as``, nothing else: the floor any stage pays;
2. basic: the same plus ``deidentify`` under the Basic Profile;
3. options: the same with modified dates, clean descriptors, device/institution identity, patient
   characteristics and safe private retained (the text scrubbing and date shifting paths);
4. pixels: the options profile plus Clean Pixel Data blanking one 200x40 box in native pixels.

Modes alternate for R rounds after a warm-up round and the median round is reported. Rates come from
the process's CPU time (one process, one core), so other work on the machine changes them less than
wall-clock rates, which are printed alongside.
"""

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deid.engine import Keys, Profile, deidentify  # noqa: E402 - after the path set-up above

SAMPLE = "693_UNCI.dcm"
KEYS = Keys(uid_key=b"bench-only-uid-key-not-for-any-trial", date_shift_days=-123)
OPTIONS = frozenset({"retain_longitudinal_modified_dates", "clean_descriptors", "retain_device_identity",
                     "retain_institution_identity", "retain_patient_characteristics", "retain_safe_private"})
PROFILES = {
    "basic": (Profile(), None),
    "options": (Profile(options=OPTIONS, safe_private=frozenset({("BENCH CREATOR", 0x10)})), None),
    "pixels": (Profile(options=OPTIONS | {"clean_pixel_data"}, safe_private=frozenset({("BENCH CREATOR", 0x10)})),
               [(20, 20, 200, 40)]),
}
MODES = ["baseline", *PROFILES]


def _copies(count: int) -> list[bytes]:
    """``count`` encoded instances of one study, each with its own UIDs and the PHI a site would send."""
    path = get_testdata_file(SAMPLE)
    if path is None:
        raise SystemExit(f"{SAMPLE} not found: install PyPI pydicom-data (pip install pydicom-data==1.0.0)")
    template = pydicom.dcmread(path)
    template.PatientName, template.PatientID, template.PatientBirthDate = "Doe^Jane", "MRN-55501", "19610704"
    template.StudyDate = template.SeriesDate = template.AcquisitionDate = template.ContentDate = "20240301"
    template.InstitutionName, template.StationName = "Synthetic General Hospital", "CT-ROOM-3"
    template.SeriesDescription, template.AccessionNumber = "Chest Doe baseline", "ACC-9931"
    template.private_block(0x0009, "BENCH CREATOR", create=True).add_new(0x10, "LO", "reconstruction note")
    blobs = []
    for number in range(count):
        template.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1.{number + 1}"
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.InstanceNumber = number + 1
        out = io.BytesIO()
        template.save_as(out, enforce_file_format=True)
        blobs.append(out.getvalue())
    return blobs


def _round(blobs: list[bytes], *, mode: str) -> tuple[float, float]:
    """One pass over every copy in ``mode``: (CPU seconds of this process, wall seconds)."""
    profile, boxes = PROFILES.get(mode, (None, None))
    cpu, wall = time.process_time(), time.perf_counter()
    for blob in blobs:
        ds = pydicom.dcmread(io.BytesIO(blob))
        if profile is not None:
            deidentify(ds, profile=profile, keys=KEYS, subject_code="CL001-101-0007", pixel_boxes=boxes)
        ds.save_as(io.BytesIO(), enforce_file_format=True)
    return time.process_time() - cpu, time.perf_counter() - wall


def main(*, count: int, rounds: int) -> None:
    blobs = _copies(count)
    megabytes = sum(len(b) for b in blobs) / 1e6
    print(f"deid engine bench: {count} x {SAMPLE} ({len(blobs[0]) / 1e3:.0f} kB, 512x512x16 CT) x {rounds} rounds "
          f"per mode, pydicom {pydicom.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    wall: dict[str, list[float]] = {mode: [] for mode in MODES}
    for number in range(rounds + 1):
        for mode in MODES:
            spent, span = _round(blobs, mode=mode)
            if number:  # round 0 warms up imports, the table and caches in every mode
                cpu[mode].append(spent)
                wall[mode].append(span)
    # one process on one core: its CPU time is what the work costs, whatever else runs on the machine
    base = statistics.median(cpu["baseline"])
    for mode in MODES:
        median = statistics.median(cpu[mode])
        print(f"  {mode:<9} {count / median:5.0f} instances/s {megabytes / median:6.1f} MB/s per core  "
              f"ratio to baseline {base / median:4.2f}  +{(median - base) / count * 1e3:4.2f} ms/instance  "
              f"(wall: {count / statistics.median(wall[mode]):4.0f} instances/s; CPU s per round: "
              f"{', '.join(f'{s:.2f}' for s in cpu[mode])})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="instances per round (default 500)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per mode (default 5)")
    args = parser.parse_args()
    main(count=args.count, rounds=args.rounds)
