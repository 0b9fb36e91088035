"""Evaluate a subject's RECIST 1.1 reads from a JSON file with the same engine the reader forms use.

    manage.py recist_evaluate FILE.json                   # prints the evaluation as JSON
    manage.py recist_evaluate --baseline-check FILE.json  # prints {"valid": ..., "errors": [...]}

``-`` reads the JSON from standard input. The shapes are in ``reads/recist.py``. Malformed input is a
CommandError (message on stderr, exit status 1); a baseline that breaks the selection rules is not an
error of the command: it prints ``"valid": false`` with the codes.
"""

import json
import sys
from decimal import Decimal
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reads.recist import RecistInputError, baseline_check, evaluate


class Command(BaseCommand):
    help = "Evaluate RECIST 1.1 responses (or check a baseline selection) from a JSON file and print JSON."

    def add_arguments(self, parser):
        parser.add_argument("file", help="JSON input (see reads/recist.py), or - for standard input")
        parser.add_argument("--baseline-check", action="store_true",
                            help="check a baseline lesion selection instead of evaluating responses")

    def handle(self, *args, **opts):
        name = opts["file"]
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {name}: {exc}") from None
        try:
            # numbers as Decimal: 12.3 stays 12.3 all the way to the thresholds
            data = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{name} is not valid JSON: {exc}") from None
        try:
            result = baseline_check(data) if opts["baseline_check"] else evaluate(data)
        except RecistInputError as exc:
            raise CommandError(f"{name}: {exc}") from None
        self.stdout.write(json.dumps(result, indent=2))
