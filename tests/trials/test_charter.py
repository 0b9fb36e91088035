"""The imaging charter as checkable data: parsing, field-level errors, diffs, windows. No database."""

import copy
import datetime
import json
import math

import pytest
from django.core.exceptions import ValidationError

from trials.charter import (
    DEMO_CHARTER,
    Change,
    Range,
    SeriesPattern,
    charter_diff,
    charter_parse,
    procedures_needing_requalification,
)


def _demo() -> dict:
    return copy.deepcopy(DEMO_CHARTER)


def _errors(data) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        charter_parse(data)
    return caught.value.message_dict


# -- the demo charter and the canonical form ------------------------------------------------------------------

def test_the_demo_charter_parses_and_round_trips_exactly():
    charter = charter_parse(_demo())

    assert charter.to_dict() == DEMO_CHARTER
    assert json.loads(json.dumps(charter.to_dict())) == DEMO_CHARTER
    assert charter_parse(charter.to_dict()) == charter


def test_the_demo_charter_describes_an_oncology_schedule():
    charter = charter_parse(_demo())

    ct, mr = charter.procedure("CT_CAP"), charter.procedure("MR_BRAIN")
    assert ct.modalities == ("CT",) and ct.contrast_required and ct.min_slices == 50
    assert ct.slice_thickness_mm == Range(min=None, max=5.0, unit="mm")
    assert ct.kvp.describe() == "100–140 kV"
    assert mr.field_strength_t.describe() == "1.5–3.0 T" and mr.kvp is None and mr.min_slices == 100
    assert [(v.code, v.day, v.window_before, v.window_after) for v in charter.visits] == [
        ("BL", 0, 28, 0), ("W6", 42, 7, 7), ("W12", 84, 7, 7), ("W18", 126, 7, 7)]
    assert all(v.procedures == ("CT_CAP", "MR_BRAIN") for v in charter.visits)


def test_parsing_leaves_the_input_untouched():
    data = _demo()
    charter_parse(data)
    assert data == DEMO_CHARTER


def test_optional_keys_default_to_not_checked_and_are_written_out_canonically():
    charter = charter_parse({
        "procedures": [{"code": "US_LIVER", "name": "Liver ultrasound", "modalities": ["US"],
                        "slice_thickness_mm": {"max": 5}}],
        "visits": [{"code": "SCR", "label": "Screening", "day": -14, "window_before": 7, "window_after": 0,
                    "procedures": ["US_LIVER"]}],
    })

    procedure = charter.to_dict()["procedures"][0]
    assert procedure == {
        "code": "US_LIVER", "name": "Liver ultrasound", "modalities": ["US"], "body_parts": [],
        "slice_thickness_mm": {"min": None, "max": 5}, "pixel_spacing_mm": None, "kvp": None,
        "field_strength_t": None, "min_slices": None, "contrast_required": False, "series_patterns": [],
        "requalify": False}
    assert charter_parse(charter.to_dict()) == charter


def test_lookups_answer_none_for_an_unknown_code():
    charter = charter_parse(_demo())
    assert charter.procedure("PET_WB") is None
    assert charter.visit("W99") is None
    assert charter.visit("W6").label == "Week 6"


# -- field-level errors ---------------------------------------------------------------------------------------

def _ct(**changes):
    def mutate(data):
        data["procedures"][0].update(changes)
    return mutate


def _mr(**changes):
    def mutate(data):
        data["procedures"][1].update(changes)
    return mutate


def _visit(index, **changes):
    def mutate(data):
        data["visits"][index].update(changes)
    return mutate


def _drop(index, key):
    def mutate(data):
        data["procedures"][index].pop(key)
    return mutate


def _set(key, value):
    def mutate(data):
        data[key] = value
    return mutate


BAD_CHARTERS = [
    # ranges
    ("min above max", _ct(slice_thickness_mm={"min": 5.0, "max": 1.0}),
     "procedures[0].slice_thickness_mm", "min (5.0) is greater than max (1.0)"),
    ("number as text", _ct(slice_thickness_mm={"min": None, "max": "5"}),
     "procedures[0].slice_thickness_mm", "max must be a number, not '5'"),
    ("boolean as number", _ct(kvp={"min": True, "max": 140}), "procedures[0].kvp", "min must be a number"),
    ("not a finite number", _ct(kvp={"min": 100, "max": math.inf}), "procedures[0].kvp", "max must be a number"),
    ("zero spacing", _ct(pixel_spacing_mm={"min": 0, "max": 1.0}),
     "procedures[0].pixel_spacing_mm", "min must be greater than 0, not 0"),
    ("negative field strength", _mr(field_strength_t={"min": -1.5, "max": 3.0}),
     "procedures[1].field_strength_t", "min must be greater than 0"),
    ("range with no bound", _ct(kvp={"min": None, "max": None}), "procedures[0].kvp", "give min, max or both"),
    ("range as a bare number", _ct(slice_thickness_mm=5.0), "procedures[0].slice_thickness_mm", "give a range as"),
    ("typo inside a range", _ct(kvp={"min": 100, "maximum": 140}), "procedures[0].kvp.maximum",
     "unknown key (did you mean max?)"),
    ("field strength on CT", _ct(field_strength_t={"min": 1.5, "max": 3.0}), "procedures[0].field_strength_t",
     "field strength applies to MR procedures only"),
    ("kVp on MR", _mr(kvp={"min": 100, "max": 140}), "procedures[1].kvp", "kVp applies to X-ray modalities only, not MR"),
    # procedure fields
    ("typo in a procedure key", _ct(slice_thicknes_mm={"max": 5.0}), "procedures[0].slice_thicknes_mm",
     "unknown key (did you mean slice_thickness_mm?)"),
    ("name missing", _drop(0, "name"), "procedures[0].name", "this field is required"),
    ("modalities missing", _drop(1, "modalities"), "procedures[1].modalities", "this field is required"),
    ("blank name", _ct(name="  "), "procedures[0].name", "give the procedure a name"),
    ("lower-case code", _ct(code="ct_cap"), "procedures[0].code", "upper-case letters"),
    ("one-letter code", _ct(code="C"), "procedures[0].code", "use 2–32"),
    ("code too long", _ct(code="C" * 33), "procedures[0].code", "use 2–32"),
    ("not a DICOM modality", _mr(modalities=["MRI"]), "procedures[1].modalities",
     "'MRI' is not a DICOM modality code (did you mean MR?)"),
    ("a non-image modality", _ct(modalities=["SR"]), "procedures[0].modalities", "'SR' is not a DICOM modality code"),
    ("no modality", _ct(modalities=[]), "procedures[0].modalities", "give at least one modality"),
    ("modality as text", _ct(modalities="CT"), "procedures[0].modalities", 'give a list, e.g. ["CT"]'),
    ("modality twice", _ct(modalities=["CT", "CT"]), "procedures[0].modalities", "'CT' is listed twice"),
    ("lower-case body part", _ct(body_parts=["chest"]), "procedures[0].body_parts",
     "'chest' is not a valid body part"),
    ("body part over 16 characters", _ct(body_parts=["CHESTABDOMENPELVIS"]), "procedures[0].body_parts",
     "at most 16"),
    ("zero slices", _ct(min_slices=0), "procedures[0].min_slices", "give a whole number greater than 0"),
    ("slices as text", _ct(min_slices="50"), "procedures[0].min_slices", "not '50'"),
    ("fractional slices", _ct(min_slices=50.5), "procedures[0].min_slices", "whole number"),
    ("contrast as text", _ct(contrast_required="yes"), "procedures[0].contrast_required", "give true or false"),
    ("requalify as number", _mr(requalify=1), "procedures[1].requalify", "give true or false"),
    ("procedure not an object", lambda d: d["procedures"].insert(0, "CT_CAP"), "procedures[0]",
     "each procedure is an object"),
    ("code used twice", lambda d: d["procedures"].append(copy.deepcopy(d["procedures"][0])), "procedures[2].code",
     "procedure code CT_CAP is used twice: procedures[0] has it already"),
    # series patterns
    ("regex that does not compile", _ct(series_patterns=[{"label": "Portal venous", "pattern": "(portal"}]),
     "procedures[0].series_patterns[0].pattern", "not a valid regular expression: missing ), unterminated"),
    ("pattern without label", _ct(series_patterns=[{"pattern": "portal"}]),
     "procedures[0].series_patterns[0].label", "this field is required"),
    ("blank label", _ct(series_patterns=[{"label": "", "pattern": "portal"}]),
     "procedures[0].series_patterns[0].label", "give the series a label"),
    ("empty pattern", _ct(series_patterns=[{"label": "PV", "pattern": ""}]),
     "procedures[0].series_patterns[0].pattern", "give a regular expression"),
    ("unknown key in a pattern", _ct(series_patterns=[{"label": "PV", "pattern": "pv", "flags": "i"}]),
     "procedures[0].series_patterns[0].flags", "unknown key (allowed: label, pattern)"),
    ("pattern as bare text", _ct(series_patterns=["portal"]), "procedures[0].series_patterns[0]",
     'give {"label": ..., "pattern": ...}'),
    ("patterns not a list", _ct(series_patterns={"label": "PV", "pattern": "pv"}),
     "procedures[0].series_patterns", "give a list of"),
    # visits
    ("misspelt procedure", _visit(2, procedures=["CT_CAP", "MRI_BRIAN"]), "visits[2].procedures",
     "unknown procedure 'MRI_BRIAN'"),
    ("visit without procedures", _visit(1, procedures=[]), "visits[1].procedures", "at least one"),
    ("procedure twice in a visit", _visit(1, procedures=["CT_CAP", "CT_CAP"]), "visits[1].procedures",
     "'CT_CAP' is listed twice"),
    ("visit code twice", _visit(2, code="W6"), "visits[2].code", "visit code W6 is used twice: visits[1] has it already"),
    ("lower-case visit code", _visit(1, code="w6"), "visits[1].code", "upper-case"),
    ("day as text", _visit(1, day="42"), "visits[1].day", "whole number (not '42')"),
    ("fractional day", _visit(1, day=42.5), "visits[1].day", "whole number"),
    ("negative window", _visit(1, window_before=-7), "visits[1].window_before", "0 or more (not -7)"),
    ("visits out of order", _visit(2, day=30), "visits[2].day",
     "visits must be listed in time order: day 30 is not after day 42"),
    ("two visits on one day", _visit(2, day=42), "visits[2].day", "day 42 is not after day 42"),
    ("window missing", lambda d: d["visits"][0].pop("window_after"), "visits[0].window_after",
     "this field is required"),
    ("typo in a visit key", _visit(0, windows_after=0), "visits[0].windows_after",
     "unknown key (did you mean window_after?)"),
    ("label too long for the visit table", _visit(0, label="B" * 101), "visits[0].label", "at most 100 characters"),
    ("visit not an object", lambda d: d["visits"].append("W24"), "visits[4]", "each visit is an object"),
    # the whole charter
    ("no procedures", _set("procedures", []), "procedures", "define at least one imaging procedure"),
    ("no visits", lambda d: d.pop("visits"), "visits", "define at least one visit"),
    ("unknown top-level key", _set("visit_schedule", []), "visit_schedule", "unknown key"),
]


@pytest.mark.parametrize(("mutate", "path", "message"), [case[1:] for case in BAD_CHARTERS],
                         ids=[case[0] for case in BAD_CHARTERS])
def test_a_bad_charter_names_the_field_and_says_what_is_wrong(mutate, path, message):
    data = _demo()
    mutate(data)

    errors = _errors(data)

    assert path in errors, errors
    assert any(message in text for text in errors[path]), errors[path]


def test_the_brief_examples_read_exactly_as_written():
    data = _demo()
    data["procedures"][0]["slice_thickness_mm"] = {"min": 5.0, "max": 1.0}
    data["visits"][2]["procedures"] = ["CT_CAP", "MRI_BRIAN"]

    assert _errors(data) == {"procedures[0].slice_thickness_mm": ["min (5.0) is greater than max (1.0)"],
                             "visits[2].procedures": ["unknown procedure 'MRI_BRIAN'"]}


def test_every_error_is_reported_at_once():
    data = _demo()
    data["procedures"][0].update(kvp={"min": 150, "max": 120}, min_slices=0, modalites=["CT"])
    data["procedures"][1].update(modalities=["MRI"], series_patterns=[{"label": "T1", "pattern": "t1("}])
    data["visits"][1].update(window_after=-1, procedures=["CT_CAPP"])
    data["visits"][3]["day"] = 10

    assert set(_errors(data)) == {
        "procedures[0].kvp", "procedures[0].min_slices", "procedures[0].modalites", "procedures[1].modalities",
        "procedures[1].series_patterns[0].pattern", "visits[1].window_after", "visits[1].procedures",
        "visits[3].day"}


def test_a_bad_procedure_field_does_not_cascade_into_its_visits():
    data = _demo()
    data["procedures"][1]["min_slices"] = -1  # MR_BRAIN fails, but its code is still known to the visits

    assert list(_errors(data)) == ["procedures[1].min_slices"]


def test_a_misspelt_modality_is_reported_once_not_again_as_a_wrong_field_strength():
    data = _demo()
    data["procedures"][1]["modalities"] = ["MRI"]  # MR_BRAIN keeps its field strength

    assert _errors(data) == {"procedures[1].modalities": ["'MRI' is not a DICOM modality code (did you mean MR?)"]}


def test_something_other_than_an_object_is_refused_whole():
    assert _errors([DEMO_CHARTER]) == {"charter": ["the charter must be an object with procedures and visits"]}


@pytest.mark.parametrize("modality", ["CT", "MR", "PT", "NM", "US", "CR", "DX", "MG", "XA", "RF", "OT"])
def test_image_modalities_are_accepted(modality):
    data = _demo()
    data["procedures"][0].update(modalities=[modality], kvp=None)
    assert charter_parse(data).procedures[0].modalities == (modality,)


def test_a_procedure_may_accept_several_modalities_and_a_negative_baseline_day():
    data = _demo()
    data["procedures"][0]["modalities"] = ["PT", "CT"]  # PET/CT: the CT part carries the kVp
    data["visits"][0]["day"] = -3

    charter = charter_parse(data)

    assert charter.procedure("CT_CAP").kvp.contains(120)
    assert charter.visit("BL").day == -3


# -- ranges and series patterns -------------------------------------------------------------------------------

@pytest.mark.parametrize(("rng", "value", "inside"), [
    (Range(min=0.5, max=5.0), 0.5, True),
    (Range(min=0.5, max=5.0), 5.0, True),
    (Range(min=0.5, max=5.0), 5.01, False),
    (Range(min=0.5, max=5.0), 0.4, False),
    (Range(max=5.0), 0.01, True),
    (Range(min=1.5), 7.0, True),
    (Range(min=1.5), 1.0, False),
    (Range(), 1e9, True),
    (Range(min=0.5, max=5.0), math.nan, False),
])
def test_range_contains_is_inclusive_and_open_bounds_never_fail(rng, value, inside):
    assert rng.contains(value) is inside


@pytest.mark.parametrize(("rng", "text"), [
    (Range(min=0.5, max=5.0, unit="mm"), "0.5–5.0 mm"),
    (Range(min=100, max=140, unit="kV"), "100–140 kV"),
    (Range(max=5.0, unit="mm"), "≤ 5.0 mm"),
    (Range(min=1.5, unit="T"), "≥ 1.5 T"),
    (Range(min=1, max=2), "1–2"),
    (Range(), "any"),
])
def test_range_describes_itself_for_people(rng, text):
    assert rng.describe() == text
    assert str(rng) == text


def test_series_patterns_match_case_insensitively():
    pattern = SeriesPattern(label="Portal venous phase", pattern="portal|venous")

    assert pattern.matches("ABD PORTAL VENOUS 5mm")
    assert pattern.matches("Venous phase")
    assert not pattern.matches("Arterial phase")
    assert not pattern.matches(None)
    assert not pattern.matches("")


@pytest.mark.parametrize(("description", "matches"), [
    ("T1 MPRAGE POST", True),
    ("Ax T1 +C", True),
    ("t1_3d_gd", True),
    ("sag mprage post gd", True),
    ("Post-contrast T1", True),
    ("T1 3D IR PREP POST", True),
    ("T1 pre-contrast", False),
    ("T1_PRE_GD", False),
    ("T1 precontrast", False),
    ("T1 non-contrast", False),
    ("T1 MPRAGE", False),
    ("T2 FLAIR post", False),
])
def test_the_demo_t1_post_contrast_pattern_refuses_the_unenhanced_series(description, matches):
    (pattern,) = charter_parse(_demo()).procedure("MR_BRAIN").series_patterns
    assert pattern.matches(description) is matches


@pytest.mark.parametrize(("description", "matches"), [
    ("CAP PORTAL VENOUS 5mm", True), ("Abd PV 2.5", True), ("Arterial phase", False), ("Scout", False),
])
def test_the_demo_portal_venous_pattern(description, matches):
    (pattern,) = charter_parse(_demo()).procedure("CT_CAP").series_patterns
    assert pattern.matches(description) is matches


# -- visit windows --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("visit", "earliest", "nominal", "latest"), [
    ("BL", "2025-12-18", "2026-01-15", "2026-01-15"),
    ("W6", "2026-02-19", "2026-02-26", "2026-03-05"),
    ("W12", "2026-04-02", "2026-04-09", "2026-04-16"),
    ("W18", "2026-05-14", "2026-05-21", "2026-05-28"),
])
def test_visit_window_counts_days_from_enrollment(visit, earliest, nominal, latest):
    charter = charter_parse(_demo())

    window = charter.visit_window(visit_code=visit, enrollment_date=datetime.date(2026, 1, 15))

    assert window == tuple(datetime.date.fromisoformat(d) for d in (earliest, nominal, latest))


def test_visit_window_crosses_a_leap_day():
    charter = charter_parse(_demo())
    assert charter.visit_window(visit_code="W6", enrollment_date=datetime.date(2028, 1, 20)) == (
        datetime.date(2028, 2, 24), datetime.date(2028, 3, 2), datetime.date(2028, 3, 9))


def test_visit_window_of_an_unknown_visit_is_a_key_error():
    with pytest.raises(KeyError, match="W24"):
        charter_parse(_demo()).visit_window(visit_code="W24", enrollment_date=datetime.date(2026, 1, 15))


# -- versions: diff and requalification -----------------------------------------------------------------------

def test_identical_charters_have_no_differences():
    assert charter_diff(old=charter_parse(_demo()), new=charter_parse(_demo())) == []


def test_diff_lists_each_changed_field_with_its_before_and_after():
    new = _demo()
    new["procedures"][0]["slice_thickness_mm"] = {"min": None, "max": 3.0}
    new["procedures"][1]["min_slices"] = 160
    new["visits"][1]["window_after"] = 10

    changes = charter_diff(old=charter_parse(_demo()), new=charter_parse(new))

    assert changes == [
        Change("changed", "procedures.CT_CAP.slice_thickness_mm", {"min": None, "max": 5.0},
               {"min": None, "max": 3.0}),
        Change("changed", "procedures.MR_BRAIN.min_slices", 100, 160),
        Change("changed", "visits.W6.window_after", 7, 10),
    ]
    assert (changes[0].before_text, changes[0].after_text) == ("≤ 5.0 mm", "≤ 3.0 mm")


def test_diff_shows_procedures_and_visits_added_and_removed():
    new = _demo()
    new["procedures"].append({"code": "PET_WB", "name": "FDG PET/CT whole body", "modalities": ["PT", "CT"]})
    new["visits"].pop()  # W18 dropped
    new["visits"].append({"code": "W24", "label": "Week 24", "day": 168, "window_before": 14, "window_after": 14,
                          "procedures": ["CT_CAP", "PET_WB"]})

    changes = charter_diff(old=charter_parse(_demo()), new=charter_parse(new))

    assert [(c.kind, c.path, c.before, c.after) for c in changes] == [
        ("added", "procedures.PET_WB", None, "FDG PET/CT whole body"),
        ("removed", "visits.W18", "Week 18", None),
        ("added", "visits.W24", None, "Week 24"),
    ]


@pytest.mark.parametrize(("path", "value", "text"), [
    ("procedures.CT_CAP.modalities", ["PT", "CT"], "PT, CT"),
    ("procedures.CT_CAP.contrast_required", False, "no"),
    ("procedures.CT_CAP.kvp", None, "—"),
    ("procedures.CT_CAP.body_parts", [], "—"),
    ("procedures.CT_CAP.series_patterns", [{"label": "PV", "pattern": "portal"}], "PV: portal"),
    ("visits.W6.day", 42, "42"),
])
def test_a_change_renders_its_values_for_people(path, value, text):
    assert Change("changed", path, value, None).before_text == text


def test_requalification_follows_the_flag_only():
    old = charter_parse(_demo())
    changed = _demo()
    changed["procedures"][0]["min_slices"] = 80  # a stricter requirement alone does not requalify
    flagged = _demo()
    flagged["procedures"][1]["requalify"] = True

    assert procedures_needing_requalification(old=old, new=charter_parse(changed)) == set()
    assert procedures_needing_requalification(old=old, new=charter_parse(flagged)) == {"MR_BRAIN"}
    assert procedures_needing_requalification(old=None, new=charter_parse(flagged)) == {"MR_BRAIN"}
