"""manage.py reader_agreement: the report as JSON (the API's) and as readable tables; bad arguments."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from reads.metrics import agreement_report

from .test_metrics import seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(reading, enroll, accept):
    return seed(reading, enroll, accept)


def run(*args) -> str:
    out = io.StringIO()
    call_command("reader_agreement", *args, stdout=out)
    return out.getvalue()


def test_json_is_the_report_the_api_returns(seeded, reading):
    data = json.loads(run("--trial", "CL-TEST-001", "--json"))
    assert data == agreement_report(trial=reading.trial)
    assert data["overall"]["pairs"][0]["cohen_kappa"]["value"] == 0.375
    assert [m["month"] for m in data["months"]] == ["2026-04", "2026-05"]


def test_the_table_shows_the_whole_trial_and_each_month(seeded):
    text = run("--trial", "CL-TEST-001")
    assert "Reader agreement · CL-TEST-001" in text
    assert "percent agreement 60.0% over 5 paired timepoints" in text
    assert "adjudication rate 0.6667 (2/3)" in text
    assert "Month 2026-04" in text and "Month 2026-05" in text
    pair = next(line for line in text.splitlines() if "reader1 / reader2" in line)
    assert pair.split()[-1] == "0.375"
    reader1 = next(line for line in text.splitlines() if line.strip().startswith("reader1 ") and "(2/5)" in line)
    assert "0.4 (2/5)" in reader1 and "1.0 (2/2)" in reader1 and reader1.split()[-1] == "8"


def test_a_trial_without_reads_prints_why_kappa_is_missing(reading):
    text = run("--trial", "CL-TEST-001")
    assert "n/a (no items)" in text


def test_an_unknown_trial_is_an_error():
    with pytest.raises(CommandError, match="no trial with protocol number 'NOPE'"):
        run("--trial", "NOPE", "--json")


def test_the_trial_is_required():
    with pytest.raises(CommandError, match="--trial"):
        run("--json")
