"""manage.py recist_evaluate: the engine's JSON in and out, from call_command and from a real process."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from reads.recist import evaluate

ROOT = Path(__file__).resolve().parents[2]

SUBJECT = {
    "options": {"confirmation_required": True, "min_confirm_days": 28, "max_ne_between": 1, "min_sd_days": 42,
                "reference_date": None},
    "baseline": {"date": "2024-01-08",
                 "targets": [{"id": "T1", "organ": "LIVER", "nodal": False, "mm": 42.5},
                             {"id": "T2", "organ": "LYMPH NODE", "nodal": True, "mm": 18}],
                 "non_targets": [{"id": "NT1", "organ": "BONE", "nodal": False}]},
    "followups": [
        {"visit": "WEEK 6", "date": "2024-02-19", "targets": {"T1": 24.1, "T2": 12}, "non_target": "NON-CR/NON-PD",
         "new_lesions": "NO"},
        {"visit": "WEEK 12", "date": "2024-04-01", "targets": {"T1": [10.2, 6], "T2": 11},
         "non_targets": {"NT1": "PRESENT"}, "new_lesions": "EQUIVOCAL"},
        {"visit": "WEEK 18", "date": "2024-05-13", "targets": {"T1": 16, "T2": 11}, "non_target": "NON-CR/NON-PD",
         "new_lesions": "YES", "new_lesion_first_seen_visit": "WEEK 12"},
    ],
}

EXPECTED = {
    "timepoints": [
        {"visit": "WEEK 6", "sum_mm": 36.1, "target": "PR", "non_target": "NON-CR/NON-PD", "overall": "PR"},
        {"visit": "WEEK 12", "sum_mm": 27.2, "target": "PR", "non_target": "NON-CR/NON-PD", "overall": "PR"},
        {"visit": "WEEK 18", "sum_mm": 27, "target": "PR", "non_target": "NON-CR/NON-PD", "overall": "PD"},
    ],
    # progression is back-dated to week 12, where the new lesion was first seen: the week 6 PR is left
    # unconfirmed, and counts as SD (42 days after baseline)
    "bor": "SD",
    "pd_visit": "WEEK 12",
    "pd_date": "2024-04-01",
}

BASELINE = {"targets": [{"id": "T1", "organ": "LIVER", "nodal": False, "mm": 12, "modality": "CT",
                         "slice_thickness_mm": 7.5}],
            "non_targets": [{"id": "NT1", "organ": "NECK", "nodal": True, "mm": 8, "modality": "CT",
                             "slice_thickness_mm": 5}]}


def _write(tmp_path, data, name="subject.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _call(*args):
    out = io.StringIO()
    call_command("recist_evaluate", *map(str, args), stdout=out)
    return json.loads(out.getvalue())


def test_prints_the_evaluation(tmp_path):
    assert _call(_write(tmp_path, SUBJECT)) == EXPECTED


def test_the_cli_result_is_the_engine_result(tmp_path):
    assert _call(_write(tmp_path, SUBJECT)) == evaluate(SUBJECT)


def test_pr_confirmed_before_progression_counts():
    # without the back-dating the week 6 PR is confirmed by week 12 (6 weeks later)
    data = json.loads(json.dumps(SUBJECT))
    del data["followups"][2]["new_lesion_first_seen_visit"]
    result = evaluate(data)
    assert (result["bor"], result["pd_visit"], result["pd_date"]) == ("PR", "WEEK 18", "2024-05-13")


def test_baseline_check(tmp_path):
    assert _call("--baseline-check", _write(tmp_path, BASELINE)) == {
        "valid": False, "errors": ["NOT_MEASURABLE:T1", "NORMAL_NODE:NT1"]}


def test_decimal_numbers_reach_the_engine_exactly(tmp_path):
    # 33.3 mm baseline, 23.31 mm follow-up: exactly -30 %
    data = {"baseline": {"date": "2024-01-01", "targets": [{"id": "T1", "organ": "LUNG", "nodal": False, "mm": 33.3}]},
            "followups": [{"visit": "V1", "date": "2024-03-01", "targets": {"T1": 23.31}, "new_lesions": "NO"}]}
    assert _call(_write(tmp_path, data))["timepoints"][0]["target"] == "PR"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON"),
    (json.dumps({**SUBJECT, "followups": [{**SUBJECT["followups"][0], "targets": {"T1": 20, "T7": 3}}]}),
     "unknown lesion id(s) T7"),
    (json.dumps({**SUBJECT, "followups": [{**SUBJECT["followups"][0], "date": "2023-12-01"}]}),
     "is not after the baseline date"),
    ("[]", "input must be an object"),
])
def test_bad_input_is_a_command_error(tmp_path, content, message):
    with pytest.raises(CommandError) as caught:
        _call(_write(tmp_path, content))
    assert message in str(caught.value)


def test_missing_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        _call(tmp_path / "absent.json")


def test_bad_baseline_check_input_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="missing 'modality'"):
        _call("--baseline-check", _write(tmp_path, {"targets": [{"id": "T1", "organ": "LUNG", "nodal": False,
                                                                  "mm": 20, "slice_thickness_mm": 5}]}))


def _run(*args, stdin=None):
    return subprocess.run([sys.executable, "manage.py", "recist_evaluate", *map(str, args)], cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_subprocess_prints_json_and_exits_0(tmp_path):
    result = _run(_write(tmp_path, SUBJECT))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == EXPECTED


def test_subprocess_reads_standard_input():
    result = _run("--baseline-check", "-", stdin=json.dumps(BASELINE))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["valid"] is False


def test_subprocess_bad_input_exits_non_zero_with_the_reason_on_stderr(tmp_path):
    data = {**SUBJECT, "baseline": {**SUBJECT["baseline"], "targets": [{**SUBJECT["baseline"]["targets"][0], "mm": -4}]}}
    result = _run(_write(tmp_path, data))
    assert result.returncode != 0
    assert result.stdout == ""
    assert "baseline.targets[0].mm must not be negative" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_readme_example_is_this_subject():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### RECIST 1.1 engine"):]
    example = section[section.index("```json") + len("```json"):]
    assert json.loads(example[:example.index("```")]) == SUBJECT
