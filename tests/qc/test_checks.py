"""Each registered check on crafted files (pydicom's real CT and MR samples, edited): no database."""

import datetime

import pytest

from qc.checks import CHECKS, Finding, run_checks

from ..trials.factories import demo_charter
from .files import context, ct_series


def _only(ctx, rule) -> list[Finding]:
    return CHECKS[rule](ctx)


def _outcomes(findings) -> list[str]:
    return [f.outcome for f in findings]


def test_every_check_the_issue_asks_for_is_registered():
    assert set(CHECKS) >= {"modality", "body_part", "slice_thickness", "pixel_spacing", "kvp", "field_strength",
                           "slice_count", "contrast", "series_present", "visit_window", "scanner", "missing_slices",
                           "duplicate_slices", "integrity", "deid_held"}


def test_a_conforming_ct_passes_every_check(tmp_path):
    charter = demo_charter(CT_CAP={"min_slices": 5})
    ctx = context(ct_series(tmp_path, count=5, BodyPartExamined="CHEST"), charter=charter)
    findings = run_checks(ctx)
    assert [(f.rule, f.message) for f in findings if f.outcome != "pass"] == []
    assert {f.rule for f in findings} >= {"modality", "slice_thickness", "pixel_spacing", "kvp", "contrast",
                                          "missing_slices", "duplicate_slices", "integrity", "visit_window"}
    assert all(f.expected for f in findings)  # the record says what was expected, always


def test_wrong_modality_fails(tmp_path):
    ctx = context(ct_series(tmp_path, count=3, modality="MR"))
    [finding] = _only(ctx, "modality")
    assert (finding.outcome, finding.expected, finding.measured) == ("fail", "CT", "MR")


def test_body_part_outside_the_charter_fails_and_absent_warns(tmp_path):
    [wrong] = _only(context(ct_series(tmp_path / "a", count=3, BodyPartExamined="KNEE")), "body_part")
    [absent] = _only(context(ct_series(tmp_path / "b", count=3, BodyPartExamined=None)), "body_part")
    assert (wrong.outcome, wrong.measured) == ("fail", "KNEE")
    assert absent.outcome == "warn"


def test_wrong_slice_thickness_fails(tmp_path):
    [finding] = _only(context(ct_series(tmp_path, count=3, SliceThickness="7.5")), "slice_thickness")
    assert (finding.outcome, finding.expected, finding.measured) == ("fail", "≤ 5.0 mm", "7.5 mm")
    assert "7.5 mm outside" in finding.message


def test_pixel_spacing_checks_both_values(tmp_path):
    [finding] = _only(context(ct_series(tmp_path, count=3, PixelSpacing=[0.7, 1.4])), "pixel_spacing")
    assert finding.outcome == "fail" and "1.4" in finding.measured


def test_kvp_out_of_range_fails(tmp_path):
    [finding] = _only(context(ct_series(tmp_path, count=3, KVP="80")), "kvp")
    assert (finding.outcome, finding.measured) == ("fail", "80 kV")


def test_mr_field_strength_is_checked_for_mr_procedures(tmp_path):
    low = ct_series(tmp_path / "low", count=3, modality="MR", MagneticFieldStrength="1.0")
    [finding] = _only(context(low, procedure="MR_BRAIN"), "field_strength")
    assert (finding.outcome, finding.expected) == ("fail", "1.5–3.0 T")
    ok = ct_series(tmp_path / "ok", count=3, modality="MR", MagneticFieldStrength="3")
    assert _outcomes(_only(context(ok, procedure="MR_BRAIN"), "field_strength")) == ["pass"]
    assert _only(context(ok), "field_strength") == []  # CT_CAP sets no field strength: nothing recorded


def test_too_few_slices_fails(tmp_path):
    [finding] = _only(context(ct_series(tmp_path, count=4)), "slice_count")
    assert (finding.outcome, finding.expected, finding.measured) == ("fail", "≥ 50 images in a series", "4 (largest)")


def test_no_contrast_agent_fails_when_contrast_is_required(tmp_path):
    [finding] = _only(context(ct_series(tmp_path, count=3, ContrastBolusAgent=None)), "contrast")
    assert (finding.outcome, finding.measured) == ("fail", "absent")
    # the Basic Profile's dummy value still says an agent was recorded
    assert _outcomes(_only(context(ct_series(tmp_path / "b", count=3, ContrastBolusAgent="ANONYMIZED")),
                           "contrast")) == ["pass"]


def test_missing_required_series_fails(tmp_path):
    ctx = context(ct_series(tmp_path, count=3, description="CT ARTERIAL"))
    [finding] = _only(ctx, "series_present")
    assert (finding.outcome, finding.measured) == ("fail", "CT ARTERIAL")
    assert finding.expected.startswith("Portal venous phase")


def test_series_descriptions_removed_by_deidentification_are_not_verifiable(tmp_path):
    ctx = context(ct_series(tmp_path, count=3, SeriesDescription=None), deid_options=())
    [finding] = _only(ctx, "series_present")
    assert (finding.outcome, finding.measured) == ("warn", "not verifiable")
    assert "Clean Descriptors" in finding.message


@pytest.mark.parametrize(("acquired", "outcome", "words"), [
    (datetime.date(2026, 3, 1), "pass", "inside"),
    (datetime.date(2026, 3, 9), "fail", "7 day(s) after the window closes"),
    (datetime.date(2026, 1, 1), "fail", "32 day(s) before the window opens"),
    (None, "fail", "no acquisition"),
])
def test_acquisition_date_must_fall_in_the_visit_window(tmp_path, acquired, outcome, words):
    [finding] = _only(context(ct_series(tmp_path, count=2), acquired=acquired), "visit_window")
    assert finding.outcome == outcome and words in finding.message
    assert finding.expected == "2026-02-02 – 2026-03-02"


def test_scanner_must_be_the_qualified_one(tmp_path):
    same = ct_series(tmp_path / "same", count=2)
    assert _outcomes(_only(context(same), "scanner")) == ["pass"]
    other = ct_series(tmp_path / "other", count=2, DeviceSerialNumber="99999")
    assert _outcomes(_only(context(other), "scanner")) == ["fail"]
    foreign = ct_series(tmp_path / "foreign", count=2, Manufacturer="GE MEDICAL SYSTEMS")
    assert _outcomes(_only(context(foreign), "scanner")) == ["fail"]
    # without Retain Device Identity the serial is a dummy: only make and model can be compared
    [unverifiable] = _only(context(same, deid_options=()), "scanner")
    assert unverifiable.outcome == "warn" and "not verifiable" in unverifiable.message
    [unqualified] = _only(context(same, qualified=()), "scanner")
    assert unqualified.outcome == "fail" and "no approved qualification" in unqualified.message


def test_a_missing_slice_is_a_gap_along_the_slice_normal(tmp_path):
    [finding] = _only(context(ct_series(tmp_path, count=8, skip=(4,))), "missing_slices")
    assert (finding.outcome, finding.measured, finding.expected) == ("fail", "1 missing slice(s)", "every 5 mm")
    assert "-60→-50 mm" in finding.message


def test_missing_slices_are_found_in_an_oblique_stack(tmp_path):
    # rows along x, columns tilted 30° in y/z: the normal is not z, positions move along it
    import math
    cos, sin = math.cos(math.radians(30)), math.sin(math.radians(30))
    paths = ct_series(tmp_path, count=6, ImageOrientationPatient=[1, 0, 0, 0, cos, sin])
    import pydicom
    for n, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        step = 0 if n < 3 else 1  # one position skipped after the third slice
        ds.ImagePositionPatient = [0, -sin * 4 * (n + step), cos * 4 * (n + step)]
        ds.save_as(path, enforce_file_format=True)
    [finding] = _only(context(paths), "missing_slices")
    assert (finding.outcome, finding.measured) == ("fail", "1 missing slice(s)")


def test_a_duplicated_slice_fails(tmp_path):
    ctx = context(ct_series(tmp_path, count=5, repeat=(2,)))
    [finding] = _only(ctx, "duplicate_slices")
    assert (finding.outcome, finding.measured) == ("fail", "1 duplicated")
    assert _outcomes(_only(ctx, "missing_slices")) == ["pass"]  # a duplicate is not a gap


def test_multi_echo_series_repeat_positions_without_duplicates(tmp_path):
    import pydicom
    paths = ct_series(tmp_path, count=3, repeat=(0, 1, 2))
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.EchoNumbers = 2 if path.name.startswith("dup-") else 1
        ds.save_as(path, enforce_file_format=True)
    assert _outcomes(_only(context(paths), "duplicate_slices")) == ["pass"]


def test_a_file_whose_pixel_data_does_not_decode_fails_integrity(tmp_path):
    import pydicom
    paths = ct_series(tmp_path, count=3)
    ds = pydicom.dcmread(paths[1])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]  # half the pixels: cannot be shaped into the image
    ds.save_as(paths[1], enforce_file_format=True)
    [finding] = _only(context(paths), "integrity")
    assert (finding.outcome, finding.measured) == ("fail", "2 of 3 decode")


def test_instances_held_by_deidentification_fail(tmp_path):
    held = [{"instance_id": 7, "outcome": "held", "findings": "(0028,0301) BurnedInAnnotation: YES"}]
    [finding] = _only(context(ct_series(tmp_path, count=2), deid_held=held), "deid_held")
    assert finding.outcome == "fail" and "BurnedInAnnotation" in finding.message
    assert _outcomes(_only(context(ct_series(tmp_path / "ok", count=2)), "deid_held")) == ["pass"]


def test_a_localizer_is_left_out_of_acquisition_rules(tmp_path):
    scout = ct_series(tmp_path / "scout", count=2, SliceThickness="10", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    ctx = context(ct_series(tmp_path / "ax", count=3), scout)
    assert _outcomes(_only(ctx, "slice_thickness")) == ["pass"]


def test_a_check_that_crashes_is_recorded_as_failed_not_lost(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("boom")
    monkeypatch.setitem(CHECKS, "zz_broken", broken)
    findings = run_checks(context(ct_series(tmp_path, count=2)))
    assert [(f.rule, f.outcome) for f in findings if f.rule == "zz_broken"] == [("zz_broken", "fail")]
