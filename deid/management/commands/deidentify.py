"""De-identify a folder of DICOM files with the same engine and checks as the intake pipeline.

    manage.py deidentify --trial CODE --input DIR --output DIR [--profile-option NAME ...] [--report FILE]
    manage.py deidentify --profile basic --key-file FILE --input DIR --output DIR [--profile-option NAME ...]

With --trial, the trial's current profile (plus any --profile-option), its keys, and the subject code of
the enrolled subject whose Patient ID matches each file; the run is an audit event. Without a trial, the
Basic Profile keyed by the key file: Patient ID/Name become ``ANON-`` + a keyed hash of the Patient ID.

Each file is released (written to the output folder), held (verification found something: not written)
or refused (unreadable, no matching subject, the engine cannot do it); the JSON report says which and
why, with action counts. Existing output files are never overwritten: the run refuses to start.
"""

import datetime
import getpass
import hashlib
import json
from pathlib import Path

import pydicom
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.services import audit_record
from deid import pipeline
from deid.engine import OPTIONS, TABLE_EDITION, Profile
from deid.keys import standalone_keys, subject_keys
from deid.services import engine_profile, profile_current
from trials.keys import patient_id_hash
from trials.models import Subject, Trial

REPORT_NAME = "deid-report.json"


class Command(BaseCommand):
    help = "De-identify a folder of DICOM files (PS3.15 Annex E) and write a JSON report."

    def add_arguments(self, parser):
        parser.add_argument("--trial", help="trial protocol number: its profile, keys and subjects")
        parser.add_argument("--profile", choices=["basic"], help="without a trial: the Basic Profile")
        parser.add_argument("--key-file", type=Path, help="with --profile: a file holding the key (16+ bytes)")
        parser.add_argument("--input", type=Path, required=True, help="folder of files to de-identify")
        parser.add_argument("--output", type=Path, required=True, help="folder for de-identified files")
        parser.add_argument("--profile-option", action="append", default=[], choices=sorted(OPTIONS),
                            metavar="NAME", help=f"switch an option on (repeatable): {', '.join(sorted(OPTIONS))}")
        parser.add_argument("--report", type=Path, help=f"report path (default: OUTPUT/{REPORT_NAME})")

    def handle(self, *args, **opts):
        source, target = opts["input"].resolve(), opts["output"].resolve()
        if not source.is_dir():
            raise CommandError(f"--input {opts['input']} is not a folder")
        if target == source or source in target.parents or target in source.parents:
            raise CommandError("--output must be a folder outside --input (and not containing it)")
        report_path = (opts["report"] or target / REPORT_NAME).resolve()
        files = sorted(p for p in source.rglob("*") if p.is_file())
        clashes = [p for p in [*(target / f.relative_to(source) for f in files), report_path] if p.exists()]
        if clashes:
            shown = ", ".join(str(p) for p in clashes[:5]) + (" ..." if len(clashes) > 5 else "")
            raise CommandError(f"refusing to overwrite {len(clashes)} existing file(s): {shown}")

        trial, stored_profile, setup = None, None, {}
        if opts["trial"]:
            if opts["profile"] or opts["key_file"]:
                raise CommandError("--trial uses the trial's profile and keys: leave out --profile and --key-file")
            trial = Trial.objects.filter(protocol_number=opts["trial"]).first()
            if trial is None:
                raise CommandError(f"no trial with protocol number {opts['trial']}")
            stored_profile = profile_current(trial=trial)
            base = engine_profile(stored_profile)
            regions = stored_profile.pixel_regions
        elif opts["profile"] == "basic":
            if opts["key_file"] is None:
                raise CommandError("--profile basic needs --key-file")
            try:
                key = opts["key_file"].read_bytes().strip()
            except OSError as exc:
                raise CommandError(f"cannot read --key-file: {exc.strerror}") from None
            if len(key) < 16:
                raise CommandError("the key file must hold at least 16 bytes")
            base, regions = Profile(), []
            setup["key"] = key
        else:
            raise CommandError("give --trial CODE, or --profile basic with --key-file")
        try:
            profile = Profile(options=base.options | set(opts["profile_option"]), safe_private=base.safe_private)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        target.mkdir(parents=True, exist_ok=True)
        started = datetime.datetime.now(datetime.UTC)
        entries = [self._one(path, source=source, target=target, trial=trial, profile=profile, regions=regions,
                             key=setup.get("key")) for path in files]
        totals = {outcome: sum(e["outcome"] == outcome for e in entries) for outcome in ("released", "held", "error")}
        report = {
            "engine": {"table_edition": TABLE_EDITION},
            "profile": {"trial": trial.protocol_number if trial else None,
                        "profile_version": stored_profile.version if stored_profile else None,
                        "options": sorted(profile.options),
                        "added_options": sorted(set(opts["profile_option"]) - base.options),
                        "safe_private": sorted([c, o] for c, o in profile.safe_private)},
            "input": str(source), "output": str(target),
            "started_at": started.isoformat(), "finished_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "totals": {"files": len(entries), **totals},
            "files": entries,
        }
        report_path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(report, indent=2).encode()
        with report_path.open("xb") as stream:
            stream.write(body)
        if trial is not None:
            with transaction.atomic():
                audit_record(actor=None, action="deid.cli_run", target=trial, trial_id=trial.pk,
                             details={"os_user": getpass.getuser(), "profile_version": stored_profile.version,
                                      "options": sorted(profile.options), "files": len(entries), **totals,
                                      "report_sha256": hashlib.sha256(body).hexdigest()})
        for entry in entries:
            if entry["outcome"] != "released":
                self.stderr.write(f"{entry['file']}: {entry['outcome']}: {entry['error'] or 'verification failed'}")
        summary = (f"{totals['released']} released, {totals['held']} held, {totals['error']} refused "
                   f"of {len(entries)} file(s); report {report_path}")
        if totals["held"] or totals["error"]:
            raise CommandError(summary)
        self.stdout.write(summary)

    def _one(self, path: Path, *, source: Path, target: Path, trial, profile: Profile, regions, key) -> dict:
        relative = path.relative_to(source)
        entry = {"file": str(relative), "outcome": "error", "error": "", "output": None, "sha256": None,
                 "actions": {}, "removed_private": 0, "uids_mapped": 0, "dates_shifted": 0, "pixel_boxes": 0,
                 "verification": {"passed": None, "findings": []}, "duration_ms": 0}
        try:
            raw = path.read_bytes()
        except OSError as exc:
            entry["error"] = f"cannot read the file: {exc.strerror}"
            return entry
        try:
            patient_id = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
                             .get("PatientID", "") or "")
        except Exception as exc:  # anything pydicom raises on a bad file is this file's problem only
            entry["error"] = f"not a readable DICOM file ({type(exc).__name__})"
            return entry
        if trial is not None:
            subject = (Subject.objects.filter(trial=trial, patient_id_hash=patient_id_hash(
                trial=trial, patient_id=patient_id)).first() if patient_id.strip() else None)
            if subject is None:
                entry["error"] = "no enrolled subject of the trial matches the file's Patient ID"
                return entry
            code, keys = subject.code, subject_keys(trial=trial, subject_code=subject.code)
        else:
            keys, code = standalone_keys(key=key, patient_id=patient_id)
        result = pipeline.run(raw, profile=profile, keys=keys, subject_code=code, pixel_regions=regions)
        entry.update({"actions": result.action_counts, "removed_private": result.removed_private,
                      "uids_mapped": result.uids_mapped, "dates_shifted": result.dates_shifted,
                      "pixel_boxes": result.pixel_boxes, "duration_ms": result.duration_ms, "error": result.error,
                      "verification": {"passed": result.passed if result.output is not None else None,
                                       "findings": result.findings}})
        if result.output is None:
            return entry
        if not result.passed:
            entry["outcome"] = "held"
            return entry
        out = target / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with out.open("xb") as stream:  # exclusive: never over an existing file
                stream.write(result.output)
        except FileExistsError:
            entry["error"] = "the output file appeared during the run; not overwritten"
            return entry
        entry.update({"outcome": "released", "output": str(relative), "sha256": result.sha256})
        return entry
