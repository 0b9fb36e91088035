"""Inter-reader agreement on categorical labels: a pure module (standard library only).

- ``percent_agreement(a, b)``: share of items two raters labelled the same, in percent.
- ``cohen_kappa(a, b)``: Cohen's (1960) unweighted kappa for two raters,
  ``(p_o - p_e) / (1 - p_e)`` with ``p_e`` from each rater's own marginal proportions;
  ``cohen_kappa_from_counts(table)`` gives kappa and percent agreement from the confusion table.
- ``fleiss_kappa(ratings)``: Fleiss' (1971) kappa for any fixed number of raters per item;
  ``ratings`` is one list of labels per item. ``fleiss_kappa_from_counts(table)`` takes the
  item-by-category count table instead (rows must all sum to the same number of raters).

Arithmetic is exact (``fractions.Fraction``); each value is rounded once, half away from zero, to 4
decimal places and returned as a ``Decimal`` inside an ``Agreement`` result.

Degenerate cases return ``Agreement(value=None, reason=...)`` rather than a number or an exception,
because they are facts about the data, not mistakes in the call: no items at all ("no items"), and
chance agreement of 1, which happens when every rating falls in one single category. Kappa is then
0/0: the raters agree perfectly, but there was nothing to disagree about, so agreement beyond chance
is undefined, and reporting 1 (or 0) would claim something the data cannot show. Percent agreement
is still defined there (100). Malformed calls (raters with different numbers of items, fewer than two
raters, an item with a different number of ratings) raise ``AgreementInputError``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

__all__ = ["Agreement", "AgreementInputError", "cohen_kappa", "cohen_kappa_from_counts", "fleiss_kappa", "fleiss_kappa_from_counts",
           "percent_agreement"]

NO_ITEMS = "no items"
ONE_CATEGORY = "every rating is in one category: chance agreement is 1, so kappa is undefined"
PLACES = Decimal("0.0001")


class AgreementInputError(ValueError):
    """The ratings cannot be compared as given."""


@dataclass(frozen=True)
class Agreement:
    """A statistic over ``n`` items: ``value`` (4 decimal places) or None, with ``reason`` saying why."""

    value: Decimal | None
    n: int
    reason: str = ""

    def as_dict(self) -> dict:
        return {"value": None if self.value is None else float(self.value), "n": self.n, "reason": self.reason}


def _round(value: Fraction) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 40
        return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(PLACES, rounding=ROUND_HALF_UP)


def _pair(a: Sequence[Hashable], b: Sequence[Hashable]) -> list[tuple[Hashable, Hashable]]:
    if isinstance(a, str | bytes) or isinstance(b, str | bytes):
        raise AgreementInputError("give each rater's labels as a list, not a string")
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise AgreementInputError(f"the two raters labelled different numbers of items ({len(a)} and {len(b)})")
    return list(zip(a, b, strict=True))


def cohen_kappa_from_counts(counts: Mapping[tuple[Hashable, Hashable], int]) -> tuple[Agreement, Agreement]:
    """(Cohen's kappa, percent agreement) from a confusion table ``{(first rater's label, second's): items}``,
    such as a database's GROUP BY of two raters' labels."""
    if any(c < 0 for c in counts.values()):
        raise AgreementInputError("a confusion table counts items: no negative counts")
    n = sum(counts.values())
    if not n:
        return Agreement(None, 0, NO_ITEMS), Agreement(None, 0, NO_ITEMS)
    agreed = sum(c for (x, y), c in counts.items() if x == y)
    first, second = Counter(), Counter()
    for (x, y), c in counts.items():
        first[x] += c
        second[y] += c
    percent = Agreement(_round(Fraction(100 * agreed, n)), n)
    expected = sum((Fraction(first[c] * second[c], n * n) for c in first), Fraction(0))
    if expected == 1:
        return Agreement(None, n, ONE_CATEGORY), percent
    return Agreement(_round((Fraction(agreed, n) - expected) / (1 - expected)), n), percent


def percent_agreement(a: Sequence[Hashable], b: Sequence[Hashable]) -> Agreement:
    """Percent of items two raters labelled identically."""
    return cohen_kappa_from_counts(Counter(_pair(a, b)))[1]


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> Agreement:
    """Cohen's unweighted kappa between two raters' labels of the same items, in the same order."""
    return cohen_kappa_from_counts(Counter(_pair(a, b)))[0]


def fleiss_kappa_from_counts(table: Sequence[Sequence[int]]) -> Agreement:
    """Fleiss' kappa from counts: ``table[i][j]`` raters put item ``i`` in category ``j``."""
    rows = [list(row) for row in table]
    if not rows:
        return Agreement(None, 0, NO_ITEMS)
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise AgreementInputError(f"item {i} has {len(row)} categories, item 0 has {width}")
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in row):
            raise AgreementInputError(f"item {i}: counts must be whole numbers of 0 or more, not {row}")
    raters = sum(rows[0])
    for i, row in enumerate(rows):
        if sum(row) != raters:
            raise AgreementInputError(f"item {i} has {sum(row)} ratings, item 0 has {raters}: "
                                      f"Fleiss' kappa needs the same number of raters for every item")
    if raters < 2:
        raise AgreementInputError(f"agreement needs at least two raters per item, not {raters}")
    items = len(rows)
    # P_i: the share of rater pairs agreeing on item i; p_j: the share of all ratings in category j
    agreement = sum((Fraction(sum(c * c for c in row) - raters, raters * (raters - 1)) for row in rows),
                    Fraction(0)) / items
    shares = [Fraction(sum(row[j] for row in rows), items * raters) for j in range(width)]
    chance = sum((p * p for p in shares), Fraction(0))
    if chance == 1:
        return Agreement(None, items, ONE_CATEGORY)
    return Agreement(_round((agreement - chance) / (1 - chance)), items)


def fleiss_kappa(ratings: Sequence[Sequence[Hashable]]) -> Agreement:
    """Fleiss' kappa from each item's labels (one per rater; raters need not be the same people)."""
    if any(isinstance(labels, str | bytes) for labels in ratings):
        raise AgreementInputError("give each item's ratings as a list of labels, not a string")
    items = [list(labels) for labels in ratings]
    categories = sorted({label for labels in items for label in labels}, key=repr)
    counts = [Counter(labels) for labels in items]
    return fleiss_kappa_from_counts([[c[label] for label in categories] for c in counts])
