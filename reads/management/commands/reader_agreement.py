"""Print a trial's reader agreement and performance report: the same numbers as the agreement page.

    manage.py reader_agreement --trial CL-001          # readable tables
    manage.py reader_agreement --trial CL-001 --json   # the API's JSON

Definitions are in reads/metrics.py. An unknown trial is a CommandError (exit status 1).
"""

import json

from django.core.management.base import BaseCommand, CommandError

from reads.metrics import agreement_report
from trials.models import Trial


def _stat(s: dict, suffix: str = "") -> str:
    return f"{s['value']}{suffix}" if s["value"] is not None else f"n/a ({s['reason']})"


def _rate(r: dict) -> str:
    return f"{r['value']} ({r['numerator']}/{r['denominator']})" if r["value"] is not None else "-"


class Command(BaseCommand):
    help = "Reader agreement (kappa, percent agreement), adjudication rate and reader performance of a trial."

    def add_arguments(self, parser):
        parser.add_argument("--trial", required=True, help="the trial's protocol number")
        parser.add_argument("--json", action="store_true", help="print the report as JSON (as the API returns it)")

    def handle(self, *args, **opts):
        code = (opts["trial"] or "").strip()
        trial = Trial.objects.filter(protocol_number=code).first()
        if trial is None:
            raise CommandError(f"no trial with protocol number {code!r}")
        report = agreement_report(trial=trial)
        if opts["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        self.stdout.write(f"Reader agreement · {report['trial']} · {report['criteria']}")
        for title, block in [("Whole trial", report["overall"])] + [(f"Month {m['month']}", m)
                                                                     for m in report["months"]]:
            self.stdout.write(f"\n{title}")
            self.stdout.write(f"  percent agreement {_stat(block['percent_agreement'], '%')}"
                              f" over {block['percent_agreement']['n']} paired timepoints;"
                              f" Fleiss' kappa {_stat(block['fleiss_kappa'])}")
            adj = block["adjudication"]
            self.stdout.write(f"  adjudication rate {_rate(adj['rate'])}: {adj['open']} open, {adj['resolved']} resolved")
            self.stdout.write(f"  {'pair':<30} {'n':>4}  {'agreement':>10}  kappa")
            for p in block["pairs"]:
                self.stdout.write(f"  {' / '.join(p['readers']):<30} {p['n']:>4}  "
                                  f"{_stat(p['percent_agreement'], '%'):>10}  {_stat(p['cohen_kappa'])}")
            self.stdout.write(f"  {'reader':<20} {'paired':>6} {'disagree':>8}  {'index':<18} "
                              f"{'adjudicator agreement':<22} signed")
            for r in block["readers"]:
                self.stdout.write(f"  {r['reader']:<20} {r['paired_timepoints']:>6} {r['disagreements']:>8}  "
                                  f"{_rate(r['disagreement_index']):<18} {_rate(r['adjudicator_agreement']):<22} "
                                  f"{r['signed_reads']}")
