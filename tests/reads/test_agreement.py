"""Agreement statistics on published worked examples and on their degenerate cases. Pure functions: no database."""

from decimal import Decimal

import pytest

from reads.agreement import (
    NO_ITEMS,
    ONE_CATEGORY,
    Agreement,
    AgreementInputError,
    cohen_kappa,
    cohen_kappa_from_counts,
    fleiss_kappa,
    fleiss_kappa_from_counts,
    percent_agreement,
)

# Wikipedia's Fleiss' kappa worked example: 10 subjects, 14 raters each, 5 categories; kappa 0.210
# (P-bar 0.378, P-bar-e 0.213).
FLEISS_EXAMPLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def from_table(table, labels):
    """Two raters' label lists from a contingency table: table[i][j] items rated labels[i] by A, labels[j] by B."""
    a, b = [], []
    for i, row in enumerate(table):
        for j, count in enumerate(row):
            a += [labels[i]] * count
            b += [labels[j]] * count
    return a, b


def test_cohen_textbook_2x2():
    # 50 grant proposals: both yes 20, A yes/B no 5, A no/B yes 10, both no 15: p_o 0.7, p_e 0.5, kappa 0.4
    a, b = from_table([[20, 5], [10, 15]], ["YES", "NO"])
    assert cohen_kappa(a, b) == Agreement(Decimal("0.4000"), 50)
    assert percent_agreement(a, b).value == Decimal("70.0000")


@pytest.mark.parametrize(("table", "kappa"), [
    # same 60 % agreement, different marginals, different kappa (p_e 0.54 and 0.46)
    ([[45, 15], [25, 15]], Decimal("0.1304")),
    ([[25, 35], [5, 35]], Decimal("0.2593")),
])
def test_cohen_kappa_depends_on_the_marginals(table, kappa):
    a, b = from_table(table, ["YES", "NO"])
    assert percent_agreement(a, b).value == Decimal("60.0000")
    assert cohen_kappa(a, b).value == kappa


def test_cohen_three_categories():
    # p_o 0.85; marginals 30/25/45 for both raters, p_e 0.355; kappa 0.495 / 0.645 = 0.76744...
    a, b = from_table([[25, 2, 3], [3, 20, 2], [2, 3, 40]], ["PR", "SD", "PD"])
    assert cohen_kappa(a, b).value == Decimal("0.7674")


def test_cohen_categories_one_rater_never_used():
    # B never says PD: p_o 2/4, p_e = (1/4)(2/4) + (2/4)(2/4) = 3/8; kappa = (1/8) / (5/8) = 0.2
    assert cohen_kappa(["PR", "SD", "SD", "PD"], ["PR", "SD", "PR", "SD"]).value == Decimal("0.2000")


def test_cohen_perfect_disagreement_is_negative():
    assert cohen_kappa(["PR", "SD"], ["SD", "PR"]).value == Decimal("-1.0000")


def test_cohen_perfect_agreement_over_several_categories_is_1():
    labels = ["CR", "PR", "SD", "PD", "NE"]
    assert cohen_kappa(labels, list(labels)).value == Decimal("1.0000")


def test_no_items_gives_none_with_a_reason():
    assert cohen_kappa([], []) == Agreement(None, 0, NO_ITEMS)
    assert percent_agreement([], []) == Agreement(None, 0, NO_ITEMS)
    assert fleiss_kappa([]) == Agreement(None, 0, NO_ITEMS)


def test_one_category_only_gives_none_with_a_reason_but_full_percent_agreement():
    a = b = ["SD"] * 8
    assert cohen_kappa(a, b) == Agreement(None, 8, ONE_CATEGORY)
    assert percent_agreement(a, b).value == Decimal("100.0000")
    assert fleiss_kappa([["SD", "SD", "SD"]] * 4) == Agreement(None, 4, ONE_CATEGORY)


def test_rounding_is_to_4_places():
    assert percent_agreement(["A", "A", "B"], ["A", "B", "B"]).value == Decimal("66.6667")
    assert percent_agreement(["A", "A", "B"], ["A", "B", "B"]).as_dict() == {"value": 66.6667, "n": 3, "reason": ""}


@pytest.mark.parametrize(("a", "b", "message"), [
    (["PR", "SD"], ["PR"], "different numbers of items (2 and 1)"),
    ("PRSD", ["P", "R", "S", "D"], "not a string"),
])
def test_bad_two_rater_input(a, b, message):
    with pytest.raises(AgreementInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cohen_kappa(a, b)
    with pytest.raises(ValueError):
        percent_agreement(a, b)


def test_fleiss_worked_example():
    result = fleiss_kappa_from_counts(FLEISS_EXAMPLE)
    assert result == Agreement(Decimal("0.2099"), 10)
    assert round(result.value, 3) == Decimal("0.210")


def test_fleiss_from_labels_equals_fleiss_from_counts():
    categories = ["CR", "PR", "SD", "PD", "NE"]
    ratings = [[label for label, count in zip(categories, row, strict=True) for _ in range(count)]
               for row in FLEISS_EXAMPLE]
    assert fleiss_kappa(ratings).value == Decimal("0.2099")


def test_fleiss_with_two_raters_is_scotts_pi():
    # the Cohen 2x2 example with pooled marginals: p_e = 0.55^2 + 0.45^2 = 0.505; (0.7 - 0.505) / 0.495
    a, b = from_table([[20, 5], [10, 15]], ["YES", "NO"])
    assert fleiss_kappa(list(zip(a, b, strict=True))).value == Decimal("0.3939")


def test_fleiss_perfect_agreement_is_1():
    assert fleiss_kappa([["PR"] * 3, ["SD"] * 3, ["PD"] * 3]).value == Decimal("1.0000")


@pytest.mark.parametrize(("table", "message"), [
    ([[1, 2], [2, 2]], "item 1 has 4 ratings, item 0 has 3"),
    ([[1, 0], [0, 1]], "at least two raters"),
    ([[2, 1], [3, 0, 0]], "item 1 has 3 categories"),
    ([[4, -1], [3, 0]], "whole numbers of 0 or more"),
    ([[1.5, 1.5], [3, 0]], "whole numbers of 0 or more"),
])
def test_fleiss_bad_counts(table, message):
    with pytest.raises(AgreementInputError, match=message):
        fleiss_kappa_from_counts(table)


def test_fleiss_refuses_strings_as_items():
    with pytest.raises(AgreementInputError, match="not a string"):
        fleiss_kappa(["PRSD", "SDSD"])


def test_kappa_from_a_confusion_table_is_kappa_over_its_items():
    counts = {("PR", "PR"): 20, ("PR", "SD"): 5, ("SD", "PR"): 10, ("SD", "SD"): 15}
    first = [x for (x, _), c in counts.items() for _ in range(c)]
    second = [y for (_, y), c in counts.items() for _ in range(c)]

    kappa, percent = cohen_kappa_from_counts(counts)

    assert (kappa, percent) == (cohen_kappa(first, second), percent_agreement(first, second))
    assert (kappa.value, percent.value) == (Decimal("0.4000"), Decimal("70.0000"))


def test_kappa_from_a_confusion_table_degenerate_and_bad_tables():
    assert cohen_kappa_from_counts({})[0].reason == NO_ITEMS
    kappa, percent = cohen_kappa_from_counts({("SD", "SD"): 4})
    assert (kappa.value, kappa.reason, percent.value) == (None, ONE_CATEGORY, Decimal("100.0000"))
    with pytest.raises(AgreementInputError, match="no negative counts"):
        cohen_kappa_from_counts({("SD", "PD"): -1})
