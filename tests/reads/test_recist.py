"""RECIST 1.1 engine: each case from a rule of Eisenhauer et al. 2009 (section given) or the working group's
clarifications. Pure functions: no database."""

import ast
import copy
import datetime
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from reads import recist
from reads.recist import RecistInputError, baseline_check, evaluate

BASELINE_DATE = datetime.date(2024, 1, 1)
NO_CONFIRMATION = {"confirmation_required": False, "min_confirm_days": 28, "max_ne_between": 1, "min_sd_days": 42,
                   "reference_date": None}
CONFIRMATION = {**NO_CONFIRMATION, "confirmation_required": True}


def day(n: int) -> str:
    return (BASELINE_DATE + datetime.timedelta(days=n)).isoformat()


def lesion(lesion_id, mm=None, *, organ="LIVER", nodal=False):
    out = {"id": lesion_id, "organ": organ, "nodal": nodal}
    if mm is not None:
        out["mm"] = mm
    return out


def visit(n: int, targets=None, *, non_target="NON-CR/NON-PD", new="NO", name=None, **extra):
    out = {"visit": name or f"DAY {n}", "date": day(n), "new_lesions": new, **extra}
    if targets is not None:
        out["targets"] = targets
    if non_target is not None and "non_targets" not in extra:
        out["non_target"] = non_target
    return out


def subject(targets, followups, *, non_targets=(), options=NO_CONFIRMATION):
    return {"options": dict(options),
            "baseline": {"date": BASELINE_DATE.isoformat(), "targets": copy.deepcopy(list(targets)),
                         "non_targets": copy.deepcopy(list(non_targets))},
            "followups": list(followups)}


ONE_NT = [lesion("NT1", organ="BONE")]


def one_target(mm, followup_values, **kw):
    """A single non-nodal target, one non-target lesion, visits every 6 weeks."""
    kw.setdefault("non_targets", ONE_NT)
    return subject([lesion("T1", mm)], [visit(42 * (i + 1), {"T1": v}) for i, v in enumerate(followup_values)], **kw)


def targets_of(result):
    return [tp["target"] for tp in result["timepoints"]]


# --- sums (section 4.2, 4.3.1 and Appendix I) ---------------------------------------------------

def test_sum_is_long_axis_of_non_nodal_plus_short_axis_of_nodal_targets():
    result = evaluate(subject([lesion("T1", 50), lesion("N1", 20, organ="MEDIASTINUM", nodal=True)],
                              [visit(42, {"T1": 40, "N1": 15})], non_targets=ONE_NT))
    assert result["timepoints"][0]["sum_mm"] == 55


def test_split_lesion_counts_the_sum_of_its_fragments():
    result = evaluate(one_target(40, [[12.5, 7.5]]))
    assert result["timepoints"][0]["sum_mm"] == 20
    assert result["timepoints"][0]["target"] == "PR"


def test_too_small_to_measure_counts_5_mm_and_absent_counts_0():
    result = evaluate(subject([lesion("T1", 30), lesion("T2", 30, organ="LUNG")],
                              [visit(42, {"T1": "TSTM", "T2": "ABSENT"})], non_targets=ONE_NT))
    assert result["timepoints"][0]["sum_mm"] == 5
    # a lesion too small to measure is still there: not a complete response
    assert result["timepoints"][0]["target"] == "PR"


def test_decimal_arithmetic_at_the_pr_threshold():
    # 33.3 * 0.7 is 23.31 exactly; in binary floating point it is 23.309999999999995 and 23.31 would miss PR
    assert 33.3 * 0.7 < 23.31
    result = evaluate(one_target(33.3, [23.31]))
    assert result["timepoints"][0]["target"] == "PR"
    assert result["timepoints"][0]["sum_mm"] == 23.31


def test_fractional_sum_is_exact():
    result = evaluate(subject([lesion("T1", 20), lesion("T2", 20, organ="LUNG")],
                              [visit(42, {"T1": 0.1, "T2": 0.2})], non_targets=ONE_NT))
    assert result["timepoints"][0]["sum_mm"] == 0.3


# --- target response (section 4.3.1) ------------------------------------------------------------

def test_pr_at_exactly_30_percent_decrease():
    assert targets_of(evaluate(one_target(100, [70]))) == ["PR"]


def test_not_pr_at_29_9_percent_decrease():
    assert targets_of(evaluate(one_target(100, [70.1]))) == ["SD"]


def test_pd_at_20_percent_and_5_mm_over_the_nadir():
    assert targets_of(evaluate(one_target(25, [30]))) == ["PD"]


def test_not_pd_at_20_percent_with_only_4_mm():
    assert targets_of(evaluate(one_target(20, [24]))) == ["SD"]


def test_not_pd_at_5_mm_with_less_than_20_percent():
    assert targets_of(evaluate(one_target(50, [59.9]))) == ["SD"]


def test_pd_is_measured_from_the_nadir_below_baseline():
    # 60 mm is 40 % below baseline, but 20 % and 10 mm above the 50 mm nadir
    assert targets_of(evaluate(one_target(100, [50, 60]))) == ["PR", "PD"]


def test_nadir_includes_baseline():
    # the smallest sum so far is the baseline itself
    assert targets_of(evaluate(one_target(40, [45, 48]))) == ["SD", "PD"]


def test_a_partial_sum_never_becomes_the_nadir():
    # a partial 10 mm sum at day 42 is not a nadir; 30 mm is compared with the 40 mm baseline
    data = subject([lesion("T1", 20), lesion("T2", 20, organ="LUNG")],
                   [visit(42, {"T1": 10, "T2": None}), visit(84, {"T1": 15, "T2": 15})], non_targets=ONE_NT)
    assert [(tp["target"], tp["sum_mm"]) for tp in evaluate(data)["timepoints"]] == [("NE", None), ("SD", 30)]


def test_cr_with_nodes_below_10_mm_short_axis():
    data = subject([lesion("T1", 30), lesion("N1", 18, organ="NECK", nodal=True)],
                   [visit(42, {"T1": "ABSENT", "N1": 9.9})], non_targets=ONE_NT)
    timepoint = evaluate(data)["timepoints"][0]
    # the sum need not be zero: normal nodes keep their short axis in the sum
    assert (timepoint["target"], timepoint["sum_mm"]) == ("CR", 9.9)


def test_a_node_of_10_mm_prevents_cr():
    data = subject([lesion("T1", 30), lesion("N1", 18, organ="NECK", nodal=True)],
                   [visit(42, {"T1": "ABSENT", "N1": 10})], non_targets=ONE_NT)
    assert targets_of(evaluate(data)) == ["PR"]


def test_a_reappearing_lesion_after_cr_is_progression():
    # section 4.3.4: after a CR, reappearance is PD even though 5 mm is far from 20 % of a 30 mm baseline
    assert targets_of(evaluate(one_target(30, ["ABSENT", "TSTM"]))) == ["CR", "PD"]


@pytest.mark.parametrize(("second", "expected"), [
    ({"T1": 3, "N1": 8}, "PD"),  # non-nodal lesion back: 11 mm is only +3 mm over the 8 mm nadir, still PD
    ({"T1": "ABSENT", "N1": 10}, "PD"),  # the node is pathological again
    ({"T1": 3, "N1": None}, "PD"),  # proven even with the node not evaluated
    ({"T1": "ABSENT", "N1": 9.9}, "CR"),
])
def test_after_cr_with_a_normal_node_reappearance_is_progression_below_the_sum_thresholds(second, expected):
    data = subject([lesion("T1", 30), lesion("N1", 20, organ="NECK", nodal=True)],
                   [visit(42, {"T1": "ABSENT", "N1": 8}), visit(84, second)], non_targets=ONE_NT)
    assert targets_of(evaluate(data)) == ["CR", expected]


def test_a_reappearing_lesion_after_pr_is_added_to_the_sum():
    # section 4.3.4: after PR the reappeared lesion only adds to the sum (17 mm is +2 mm over the 15 mm nadir)
    data = subject([lesion("T1", 30), lesion("T2", 30, organ="LUNG")],
                   [visit(42, {"T1": "ABSENT", "T2": 15}), visit(84, {"T1": 3, "T2": 14})], non_targets=ONE_NT)
    assert targets_of(evaluate(data)) == ["PR", "PR"]


def test_not_evaluated_target_makes_ne_when_the_partial_sum_proves_nothing():
    data = subject([lesion("T1", 20), lesion("T2", 20, organ="LUNG")], [visit(42, {"T1": 10, "T2": None})],
                   non_targets=ONE_NT)
    timepoint = evaluate(data)["timepoints"][0]
    assert (timepoint["target"], timepoint["sum_mm"], timepoint["overall"]) == ("NE", None, "NE")


def test_not_evaluated_target_is_pd_when_the_partial_sum_already_proves_it():
    # nadir 20 mm; T1 alone is 30 mm (+50 %, +10 mm) whatever T2 measures
    data = subject([lesion("T1", 20), lesion("T2", 20, organ="LUNG")],
                   [visit(42, {"T1": 10, "T2": 10}), visit(84, {"T1": 30, "T2": None})], non_targets=ONE_NT)
    result = evaluate(data)
    assert [(tp["target"], tp["sum_mm"], tp["overall"]) for tp in result["timepoints"]] == [
        ("PR", 20, "PR"), ("PD", None, "PD")]
    assert (result["pd_visit"], result["pd_date"]) == ("DAY 84", day(84))


def test_not_evaluated_target_partial_sum_just_short_of_pd_stays_ne():
    data = subject([lesion("T1", 20), lesion("T2", 20, organ="LUNG")],
                   [visit(42, {"T1": 10, "T2": 10}), visit(84, {"T1": 24.9, "T2": None})], non_targets=ONE_NT)
    assert targets_of(evaluate(data)) == ["PR", "NE"]


# --- non-target response (section 4.3.2) --------------------------------------------------------

@pytest.mark.parametrize(("statuses", "expected"), [
    ({"NT1": "ABSENT", "NT2": "ABSENT"}, "CR"),
    ({"NT1": "ABSENT", "NT2": "PRESENT"}, "NON-CR/NON-PD"),
    ({"NT1": "UNEQUIVOCAL PROGRESSION", "NT2": "NE"}, "PD"),
    ({"NT1": "PRESENT", "NT2": "NE"}, "NE"),
])
def test_non_target_response_from_per_lesion_statuses(statuses, expected):
    data = subject([lesion("T1", 30)], [visit(42, {"T1": 30}, non_targets=statuses)],
                   non_targets=[lesion("NT1", organ="BONE"), lesion("NT2", organ="PLEURA")])
    assert evaluate(data)["timepoints"][0]["non_target"] == expected


def test_no_non_target_lesions_gives_na():
    data = subject([lesion("T1", 30)], [visit(42, {"T1": "ABSENT"}, non_target=None)])
    timepoint = evaluate(data)["timepoints"][0]
    assert (timepoint["non_target"], timepoint["overall"]) == ("NA", "CR")


# --- overall response, Table 1 (targets, with or without non-targets) ---------------------------

TARGET_VALUES = {"CR": "ABSENT", "PR": 10, "SD": 35, "PD": 50, "NE": None}  # baseline sum 40 mm


@pytest.mark.parametrize(("target", "non_target", "new", "overall"), [
    ("CR", "CR", "NO", "CR"),
    ("CR", "NON-CR/NON-PD", "NO", "PR"),
    ("CR", "NE", "NO", "PR"),
    ("PR", "NON-CR/NON-PD", "NO", "PR"),
    ("PR", "NE", "NO", "PR"),
    ("SD", "NON-CR/NON-PD", "NO", "SD"),
    ("SD", "NE", "NO", "SD"),
    ("NE", "NON-CR/NON-PD", "NO", "NE"),
    ("NE", "CR", "NO", "NE"),
    ("PD", "CR", "NO", "PD"),
    ("SD", "PD", "NO", "PD"),
    ("NE", "PD", "NO", "PD"),
    ("CR", "CR", "YES", "PD"),
    ("CR", "CR", "EQUIVOCAL", "CR"),
    ("PR", "NON-CR/NON-PD", "EQUIVOCAL", "PR"),
])
def test_table_1(target, non_target, new, overall):
    data = subject([lesion("T1", 20), lesion("T2", 20, organ="LUNG")],
                   [visit(42, {"T1": TARGET_VALUES[target], "T2": "ABSENT" if target == "CR" else 0},
                          non_target=non_target, new=new)], non_targets=ONE_NT)
    timepoint = evaluate(data)["timepoints"][0]
    assert (timepoint["target"], timepoint["overall"]) == (target, overall)


# --- overall response, Table 2 (non-target disease only) ----------------------------------------

@pytest.mark.parametrize(("non_target", "new", "overall"), [
    ("CR", "NO", "CR"),
    ("NON-CR/NON-PD", "NO", "NON-CR/NON-PD"),
    ("NE", "NO", "NE"),
    ("PD", "NO", "PD"),
    ("CR", "YES", "PD"),
    ("NON-CR/NON-PD", "EQUIVOCAL", "NON-CR/NON-PD"),
])
def test_table_2(non_target, new, overall):
    timepoint = evaluate(subject([], [visit(42, non_target=non_target, new=new)], non_targets=ONE_NT))["timepoints"][0]
    assert timepoint == {"visit": "DAY 42", "sum_mm": None, "target": "NA", "non_target": non_target,
                         "overall": overall}


def test_non_target_only_subject_best_response_is_non_cr_non_pd():
    result = evaluate(subject([], [visit(42), visit(84)], non_targets=ONE_NT))
    assert result["bor"] == "NON-CR/NON-PD"


def test_non_target_only_subject_too_early_for_stable_disease():
    result = evaluate(subject([], [visit(30)], non_targets=ONE_NT))
    assert result["bor"] == "NE"


# --- new lesions and the date of progression (section 4.3.3) ------------------------------------

def test_equivocal_new_lesion_confirmed_later_backdates_progression():
    data = one_target(40, [])
    data["followups"] = [visit(42, {"T1": 30}), visit(84, {"T1": 30}, new="EQUIVOCAL"),
                         visit(126, {"T1": 30}, new="YES", new_lesion_first_seen_visit="DAY 84")]
    result = evaluate(data)
    # the timepoint where it was equivocal keeps the response assessed then
    assert [tp["overall"] for tp in result["timepoints"]] == ["SD", "SD", "PD"]
    assert (result["pd_visit"], result["pd_date"]) == ("DAY 84", day(84))
    assert result["bor"] == "SD"


def test_new_lesion_without_earlier_sighting_dates_progression_at_its_visit():
    data = one_target(40, [])
    data["followups"] = [visit(42, {"T1": 30}, new="EQUIVOCAL"), visit(84, {"T1": 30}, new="YES")]
    result = evaluate(data)
    assert (result["pd_visit"], result["pd_date"]) == ("DAY 84", day(84))


def test_backdated_progression_bounds_best_response():
    # SD was only reached at day 42 with a 42-day minimum; progression dated day 42 leaves nothing stable
    data = one_target(40, [])
    data["followups"] = [visit(42, {"T1": 35}, new="EQUIVOCAL"),
                         visit(84, {"T1": 35}, new="YES", new_lesion_first_seen_visit="DAY 42")]
    result = evaluate(data)
    assert (result["pd_visit"], result["bor"]) == ("DAY 42", "PD")


def test_no_progression_gives_null_date():
    result = evaluate(one_target(40, [30]))
    assert (result["pd_visit"], result["pd_date"]) == (None, None)


# --- best overall response (section 4.4, Table 3) -----------------------------------------------

def test_best_response_without_confirmation_is_the_best_before_progression():
    result = evaluate(one_target(40, [38, 20, 30]))  # SD, PR, PD (20 -> 30 is +50 %, +10 mm)
    assert [tp["overall"] for tp in result["timepoints"]] == ["SD", "PR", "PD"]
    assert (result["bor"], result["pd_visit"]) == ("PR", "DAY 126")


def test_responses_after_progression_do_not_count():
    result = evaluate(one_target(40, [50, "ABSENT"]))
    assert [tp["overall"] for tp in result["timepoints"]] == ["PD", "PR"]
    assert result["bor"] == "PD"


def test_confirmed_pr_needs_a_second_pr_at_least_4_weeks_later():
    data = subject([lesion("T1", 40)], [visit(42, {"T1": 20}), visit(70, {"T1": 20})], non_targets=ONE_NT,
                   options=CONFIRMATION)
    assert evaluate(data)["bor"] == "PR"


def test_unconfirmed_pr_too_close_counts_as_sd():
    data = subject([lesion("T1", 40)], [visit(42, {"T1": 20}), visit(69, {"T1": 20})], non_targets=ONE_NT,
                   options=CONFIRMATION)
    assert evaluate(data)["bor"] == "SD"


def test_pr_then_cr_confirms_pr():
    data = subject([lesion("T1", 40)], [visit(42, {"T1": 20}), visit(84, {"T1": "ABSENT"})], non_targets=ONE_NT,
                   options=CONFIRMATION)
    data["followups"][1]["non_target"] = "CR"
    assert [tp["overall"] for tp in evaluate(data)["timepoints"]] == ["PR", "CR"]
    assert evaluate(data)["bor"] == "PR"


def test_cr_then_cr_confirms_cr():
    data = subject([lesion("T1", 40)], [visit(42, {"T1": "ABSENT"}, non_target="CR"),
                                        visit(84, {"T1": "ABSENT"}, non_target="CR")],
                   non_targets=ONE_NT, options=CONFIRMATION)
    assert evaluate(data)["bor"] == "CR"


def test_cr_then_pr_by_a_non_target_gives_pr():
    # Table 3, footnote a: the first "CR" is taken as a PR
    data = subject([lesion("T1", 40)], [visit(42, {"T1": "ABSENT"}, non_target="CR"),
                                        visit(84, {"T1": "ABSENT"}, non_target="NON-CR/NON-PD")],
                   non_targets=ONE_NT, options=CONFIRMATION)
    assert [tp["overall"] for tp in evaluate(data)["timepoints"]] == ["CR", "PR"]
    assert evaluate(data)["bor"] == "PR"


def test_confirmation_tolerates_an_ne_timepoint_between():
    data = subject([lesion("T1", 40)], [visit(42, {"T1": 20}), visit(84, {"T1": None}), visit(126, {"T1": 20})],
                   non_targets=ONE_NT, options=CONFIRMATION)
    assert [tp["overall"] for tp in evaluate(data)["timepoints"]] == ["PR", "NE", "PR"]
    assert evaluate(data)["bor"] == "PR"


def test_confirmation_refuses_more_ne_timepoints_than_allowed():
    data = subject([lesion("T1", 40)], [visit(42, {"T1": 20}), visit(84, {"T1": None}), visit(126, {"T1": 20})],
                   non_targets=ONE_NT, options={**CONFIRMATION, "max_ne_between": 0})
    assert evaluate(data)["bor"] == "SD"


def test_sd_between_breaks_confirmation():
    data = subject([lesion("T1", 40)], [visit(42, {"T1": 20}), visit(84, {"T1": 22}), visit(126, {"T1": 30})],
                   non_targets=ONE_NT, options=CONFIRMATION)
    # 22 mm is still PR vs baseline: PR, PR, then 30 mm is +36 % and +8 mm over the 20 mm nadir
    assert [tp["overall"] for tp in evaluate(data)["timepoints"]] == ["PR", "PR", "PD"]
    assert evaluate(data)["bor"] == "PR"
    # PR at exactly -30 % (nadir 28 mm), SD at 30 mm (+2 mm: not PD), PR again
    data["followups"][0]["targets"]["T1"] = 28
    data["followups"][1]["targets"]["T1"] = 30
    data["followups"][2]["targets"]["T1"] = 28
    assert [tp["overall"] for tp in evaluate(data)["timepoints"]] == ["PR", "SD", "PR"]
    assert evaluate(data)["bor"] == "SD"


def test_unconfirmed_pr_then_progression_before_minimum_sd_is_pd():
    # Table 3: PR then PD is SD if the minimum SD duration was met, otherwise PD
    data = subject([lesion("T1", 40)], [visit(30, {"T1": 20}), visit(60, {"T1": 30})], non_targets=ONE_NT,
                   options=CONFIRMATION)
    assert evaluate(data)["bor"] == "PD"
    data["options"]["min_sd_days"] = 30
    assert evaluate(data)["bor"] == "SD"


def test_sd_before_the_minimum_duration_then_progression_is_pd():
    data = subject([lesion("T1", 40)], [visit(35, {"T1": 40}), visit(70, {"T1": 60})], non_targets=ONE_NT)
    assert evaluate(data)["bor"] == "PD"


def test_sd_at_exactly_the_minimum_duration_counts():
    data = subject([lesion("T1", 40)], [visit(42, {"T1": 40}), visit(70, {"T1": 60})], non_targets=ONE_NT)
    assert evaluate(data)["bor"] == "SD"


def test_sd_too_early_without_progression_is_ne():
    data = subject([lesion("T1", 40)], [visit(35, {"T1": 40})], non_targets=ONE_NT)
    assert evaluate(data)["bor"] == "NE"


def test_minimum_sd_duration_counts_from_the_reference_date():
    data = subject([lesion("T1", 40)], [visit(42, {"T1": 40})], non_targets=ONE_NT,
                   options={**NO_CONFIRMATION, "reference_date": day(7)})
    assert evaluate(data)["bor"] == "NE"
    data["options"]["reference_date"] = day(0)
    assert evaluate(data)["bor"] == "SD"


def test_nothing_evaluable_is_ne():
    data = subject([lesion("T1", 40)], [visit(42, {"T1": None}), visit(84, {"T1": None})], non_targets=ONE_NT)
    result = evaluate(data)
    assert [tp["overall"] for tp in result["timepoints"]] == ["NE", "NE"]
    assert (result["bor"], result["pd_visit"]) == ("NE", None)


def test_progression_first_is_pd():
    result = evaluate(one_target(40, [50, 30]))
    assert (result["bor"], result["pd_visit"], result["pd_date"]) == ("PD", "DAY 42", day(42))


def test_no_followups_yet():
    assert evaluate(one_target(40, [])) == {"timepoints": [], "bor": "NE", "pd_visit": None, "pd_date": None}


def test_options_default_when_left_out():
    data = one_target(100, [70])
    del data["options"]
    assert evaluate(data)["bor"] == "PR"


def test_input_is_not_modified():
    data = one_target(100, [[30, 40], "TSTM"])
    before = copy.deepcopy(data)
    evaluate(data)
    assert data == before


def test_output_shape_and_visit_strings():
    data = one_target(40, [])
    data["followups"] = [visit(42, {"T1": 30}, name="Week 6 (C3D1)")]
    result = evaluate(data)
    assert set(result) == {"timepoints", "bor", "pd_visit", "pd_date"}
    assert result["timepoints"] == [{"visit": "Week 6 (C3D1)", "sum_mm": 30, "target": "SD",
                                     "non_target": "NON-CR/NON-PD", "overall": "SD"}]


# --- malformed input ----------------------------------------------------------------------------

def _break(change):
    data = subject([lesion("T1", 30), lesion("N1", 20, organ="NECK", nodal=True)],
                   [visit(42, {"T1": 20, "N1": 15}), visit(84, {"T1": 20, "N1": 15})], non_targets=ONE_NT)
    change(data)
    return data


def _set(path, value):
    def change(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


@pytest.mark.parametrize(("change", "message"), [
    (_set(["followups", 0, "targets", "T9"], 10), "unknown lesion id(s) T9"),
    (lambda d: d["followups"][0]["targets"].pop("N1"), "no value for N1"),
    (_set(["baseline", "date"], "2024-13-01"), "baseline.date is not a valid date"),
    (_set(["followups", 1, "date"], "12/03/2024"), "must be a date written YYYY-MM-DD"),
    (_set(["baseline", "targets", 0, "mm"], -3), "must not be negative"),
    (_set(["followups", 0, "targets", "T1"], -1), "must not be negative"),
    (_set(["followups", 0, "targets", "T1"], [4, -1]), "must not be negative"),
    (_set(["followups", 0, "targets", "T1"], []), "split lesion needs at least one"),
    (_set(["followups", 0, "targets", "T1"], "12"), "must be a number, a list of numbers"),
    (_set(["followups", 0, "targets", "T1"], True), "must be a number of millimetres"),
    (_set(["followups", 0, "targets", "T1"], Decimal("NaN")), "finite"),
    (_set(["followups", 0, "date"], "2023-12-31"), "is not after the baseline date"),
    (_set(["followups", 0, "date"], "2024-01-01"), "is not after the baseline date"),
    (_set(["followups", 1, "date"], day(42)), "list follow-ups in date order"),
    (_set(["followups", 1, "visit"], "DAY 42"), "appears twice"),
    (_set(["baseline", "non_targets", 0, "id"], "T1"), "lesion id 'T1' is used twice"),
    (_set(["baseline", "targets", 1, "nodal"], "yes"), "nodal must be true or false"),
    (lambda d: d["baseline"]["targets"][0].pop("organ"), "missing 'organ'"),
    (_set(["baseline", "targets", 0, "mm"], 0), "above 0 mm"),
    (_set(["followups", 0, "non_target"], "SD"), "non_target must be one of"),
    (_set(["followups", 0, "non_targets"], {"NT1": "PRESENT"}), "either non_target or non_targets"),
    (lambda d: d["followups"][0].pop("non_target"), "missing non_target"),
    (lambda d: (d["followups"][0].pop("non_target"), d["followups"][0].update(non_targets={"NT7": "PRESENT"})),
     "unknown lesion id(s) NT7"),
    (lambda d: (d["followups"][0].pop("non_target"), d["followups"][0].update(non_targets={"NT1": "GONE"})),
     "must be one of ABSENT, PRESENT"),
    (_set(["followups", 0, "new_lesions"], "MAYBE"), "new_lesions must be one of"),
    (lambda d: d["followups"][0].pop("new_lesions"), "missing 'new_lesions'"),
    (_set(["followups", 1, "new_lesion_first_seen_visit"], "DAY 42"), "only meaningful with new_lesions YES"),
    (lambda d: d["followups"][1].update(new_lesions="YES", new_lesion_first_seen_visit="WEEK 99"),
     "is not this or an earlier follow-up visit"),
    (lambda d: d["followups"][1].update(new_lesions="YES", new_lesion_first_seen_visit="DAY 42"),
     "recorded no new lesion"),
    (_set(["followups", 0, "follow_up_notes"], "x"), "unknown field(s) follow_up_notes"),
    (_set(["options", "min_sd"], 42), "unknown field(s) min_sd"),
    (_set(["options", "min_sd_days"], -1), "options.min_sd_days must be a whole number"),
    (_set(["options", "min_confirm_days"], 28.5), "options.min_confirm_days must be a whole number"),
    (_set(["options", "confirmation_required"], "yes"), "confirmation_required must be true or false"),
    (_set(["options", "reference_date"], "soon"), "options.reference_date must be a date"),
    (lambda d: d.pop("baseline"), "missing 'baseline'"),
    (_set(["followup"], []), "unknown field(s) followup"),
    (_set(["followups"], {"DAY 42": {}}), "followups must be a list"),
    (lambda d: d["baseline"].update(targets=[], non_targets=[]), "no target and no non-target lesions"),
    (_set(["followups", 0, "non_target"], "NA"), "non_target must be one of"),
])
def test_malformed_input_is_refused_with_a_clear_message(change, message):
    with pytest.raises(RecistInputError) as caught:
        evaluate(_break(change))
    assert message in str(caught.value)


def test_missing_targets_at_a_followup():
    data = _break(lambda d: d["followups"][0].pop("targets"))
    with pytest.raises(RecistInputError, match="missing 'targets'"):
        evaluate(data)


def test_non_target_response_without_non_target_lesions_is_refused():
    data = subject([lesion("T1", 30)], [visit(42, {"T1": 20}, non_target="CR")])
    with pytest.raises(RecistInputError, match="no non-target lesions"):
        evaluate(data)


def test_input_error_is_a_value_error():
    assert issubclass(RecistInputError, ValueError)
    with pytest.raises(ValueError, match="input must be an object"):
        evaluate([])


def test_lesions_may_carry_the_baseline_check_fields():
    data = one_target(40, [30])
    data["baseline"]["targets"][0].update(modality="CT", slice_thickness_mm=5)
    assert evaluate(data)["bor"] == "SD"


# --- baseline selection (section 3.1 and 4.2) ---------------------------------------------------

def ct(lesion_id, mm, *, organ="LIVER", nodal=False, thickness=5, modality="CT"):
    return {"id": lesion_id, "organ": organ, "nodal": nodal, "mm": mm, "modality": modality,
            "slice_thickness_mm": thickness}


def check(targets, non_targets=()):
    return baseline_check({"targets": list(targets), "non_targets": list(non_targets)})


def test_a_valid_baseline():
    result = check([ct("T1", 30), ct("T2", 20), ct("T3", 12, organ="LUNG"), ct("N1", 15, organ="NECK", nodal=True)],
                   [{"id": "NT1", "organ": "BONE", "nodal": False, "modality": "CT", "slice_thickness_mm": 5}])
    assert result == {"valid": True, "errors": []}


def test_more_than_5_targets():
    organs = ["LIVER", "LUNG", "KIDNEY", "ADRENAL", "SPLEEN", "PANCREAS"]
    result = check([ct(f"T{i}", 20, organ=organ) for i, organ in enumerate(organs, 1)])
    assert result == {"valid": False, "errors": ["MAX_TARGETS_EXCEEDED"]}


def test_more_than_2_targets_in_one_organ_whatever_the_spelling():
    result = check([ct("T1", 20, organ="Liver"), ct("T2", 20, organ="LIVER"), ct("T3", 20, organ="liver ")])
    assert result == {"valid": False, "errors": ["MAX_PER_ORGAN_EXCEEDED:LIVER"]}


def test_all_lymph_nodes_count_as_one_organ():
    result = check([ct("N1", 20, organ="NECK", nodal=True), ct("N2", 20, organ="MEDIASTINUM", nodal=True),
                    ct("N3", 20, organ="AXILLA", nodal=True)])
    assert result == {"valid": False, "errors": ["MAX_PER_ORGAN_EXCEEDED:LYMPH NODE"]}


@pytest.mark.parametrize(("mm", "thickness", "measurable"), [
    (10, 5, True), (9.9, 5, False), (10, None, True),
    (12, 8, False), (16, 8, True), (15.9, 8, False),  # slices over 5 mm: twice the slice thickness
])
def test_non_nodal_measurability_on_ct(mm, thickness, measurable):
    assert check([ct("T1", mm, thickness=thickness)])["errors"] == ([] if measurable else ["NOT_MEASURABLE:T1"])


@pytest.mark.parametrize(("modality", "mm", "errors"), [
    ("MR", 10, []), ("CR", 19.9, ["NOT_MEASURABLE:T1"]), ("DX", 20, []), ("US", 40, ["NOT_MEASURABLE:T1"]),
])
def test_measurability_by_modality(modality, mm, errors):
    assert check([ct("T1", mm, modality=modality, thickness=None)])["errors"] == errors


@pytest.mark.parametrize(("mm", "errors"), [
    (15, []), (14.9, ["NOT_MEASURABLE:N1"]), (10, ["NOT_MEASURABLE:N1"]), (9.9, ["NORMAL_NODE:N1"]),
])
def test_nodal_targets_by_short_axis(mm, errors):
    assert check([ct("N1", mm, organ="NECK", nodal=True)])["errors"] == errors


def test_non_target_nodes_must_be_pathological():
    result = check([ct("T1", 20)], [ct("NT1", 12, organ="NECK", nodal=True), ct("NT2", 8, organ="AXILLA", nodal=True)])
    assert result == {"valid": False, "errors": ["NORMAL_NODE:NT2"]}


def test_codes_accumulate_in_order():
    targets = [ct("T1", 20), ct("T2", 20), ct("T3", 5), ct("N1", 8, organ="NECK", nodal=True), ct("T4", 20, organ="LUNG"),
               ct("T5", 20, organ="LUNG")]
    assert check(targets)["errors"] == ["MAX_TARGETS_EXCEEDED", "MAX_PER_ORGAN_EXCEEDED:LIVER", "NOT_MEASURABLE:T3",
                                        "NORMAL_NODE:N1"]


def test_baseline_check_accepts_a_whole_evaluation_input():
    data = one_target(40, [30])
    data["baseline"]["targets"][0].update(modality="CT", slice_thickness_mm=2.5)
    data["baseline"]["non_targets"][0].update(modality="CT", slice_thickness_mm=2.5)
    assert baseline_check(data) == {"valid": True, "errors": []}


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.pop("modality"), "missing 'modality'"),
    (lambda t: t.update(modality="PET"), "modality must be one of"),
    (lambda t: t.update(slice_thickness_mm=-1), "must not be negative"),
    (lambda t: t.pop("mm"), "missing 'mm'"),
    (lambda t: t.update(mm="big"), "must be a number of millimetres"),
])
def test_baseline_check_refuses_malformed_lesions(change, message):
    target = ct("T1", 20)
    change(target)
    with pytest.raises(RecistInputError) as caught:
        check([target])
    assert message in str(caught.value)


# --- purity -------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["recist", "agreement", "xport"])
def test_pure_modules_import_only_the_standard_library(module):
    source = (Path(recist.__file__).parent / f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0] if not node.level else "<relative>")
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
