"""Write a trial's CDISC SDTM TU, TR and RS datasets (CSV and SAS XPORT v5) to a directory.

    manage.py export_sdtm --trial CL-001 --out /path/to/dir

Writes tu.csv, tr.csv, rs.csv, tu.xpt, tr.xpt, rs.xpt (the directory is created when missing) and records
the export, with each file's SHA-256, as an audit event of the system. Conventions: reads/sdtm.py.
"""

import hashlib
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reads.sdtm import FILES, sdtm_export
from trials.models import Trial


class Command(BaseCommand):
    help = "Export a trial's SDTM TU/TR/RS datasets as CSV and SAS XPORT v5 files."

    def add_arguments(self, parser):
        parser.add_argument("--trial", required=True, help="the trial's protocol number")
        parser.add_argument("--out", required=True, help="directory to write the six files to")

    def handle(self, *args, **opts):
        code = (opts["trial"] or "").strip()
        trial = Trial.objects.filter(protocol_number=code).first()
        if trial is None:
            raise CommandError(f"no trial with protocol number {code!r}")
        out = Path(opts["out"])
        if out.exists() and not out.is_dir():
            raise CommandError(f"{out} exists and is not a directory")
        try:
            files = sdtm_export(actor=None, trial=trial, out_dir=out)
        except OSError as exc:
            raise CommandError(f"cannot write to {out}: {exc}") from None
        for name in FILES:
            self.stdout.write(f"{out / name}  {len(files[name])} bytes  sha256 {hashlib.sha256(files[name]).hexdigest()}")
