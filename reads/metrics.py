"""Reader agreement and performance of a trial's central review, overall and per month (drift).

What is reported, per trial and per calendar month (UTC):

- ``pairs``: for each pair of primary readers who both read the same timepoints, Cohen's kappa and percent
  agreement on overall response (RECIST 1.1: CR, PR, SD, NON-CR/NON-PD, PD, NE), over the follow-up
  timepoints both signed (baseline has no response). The month of a timepoint is when the later of the two
  reads was signed; a corrected read counts with its current version only.
- ``percent_agreement``: the same, pooled over every pair.
- ``fleiss_kappa``: Fleiss' kappa over every paired timepoint (two ratings per timepoint, from whichever two
  readers read it) when more than two readers took part; with two readers Cohen's kappa of the pair is the
  measure, so Fleiss is left out (``value`` None with the reason).
- ``adjudication``: the adjudication rate, subjects adjudicated / subjects compared. A subject is compared
  once both readers have signed at least one follow-up timepoint (in a month: a paired timepoint completed that
  month); adjudicated when an adjudication was opened for it (in a month: opened that month), superseded ones
  not counted.
- ``readers``, one row per primary reader:
  * ``disagreement_index``: the share of the reader's paired timepoints where their overall response differed
    from the other reader's (0 = always agreed, 1 = never);
  * ``adjudicator_agreement``: of the resolved adjudications of the reader's subjects, the share where the
    adjudicator selected this reader's read;
  * ``signed_reads``: signatures made (every signed version, corrections included): throughput.

Rates are ``{"value": 4-decimal number or None, "numerator", "denominator"}``; None when the denominator is 0.
Kappas come from ``reads.agreement`` (``{"value", "n", "reason"}``; None with a reason in degenerate cases).
Who may see it: trial managers (Perm.MANAGE_TRIAL) and auditors (Perm.VIEW_AUDIT). Sponsor viewers do not:
reader performance is the core lab's quality record, and reader identities are shown.
"""

import datetime
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Max
from django.db.models.functions import TruncMonth
from django.http import Http404

from trials.models import Trial
from trials.permissions import Perm, has_perm

from .agreement import cohen_kappa, fleiss_kappa, percent_agreement
from .models import Read, Reader, ReadTask
from .selectors import adjudication_inputs, agreement_inputs

TWO_READERS = "two readers only: Cohen's kappa of the pair is the measure"


def oversight_allowed(*, user, trial_id: int) -> bool:
    """Trial managers and auditors see agreement metrics and take the SDTM export."""
    return (has_perm(user=user, perm=Perm.MANAGE_TRIAL, trial_id=trial_id)
            or has_perm(user=user, perm=Perm.VIEW_AUDIT, trial_id=trial_id))


def oversight_trial_get_for_user(*, user, trial_id: int) -> Trial:
    """The trial, when the user may see its reader oversight; Http404 otherwise (missing and forbidden alike)."""
    trial = Trial.objects.filter(pk=trial_id).first()
    if trial is None or not oversight_allowed(user=user, trial_id=trial.pk):
        raise Http404("No such trial")
    return trial


def rate(numerator: int, denominator: int) -> dict:
    value = None
    if denominator:
        value = float((Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), ROUND_HALF_UP))
    return {"value": value, "numerator": numerator, "denominator": denominator}


def _month(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m")


def _compared(trial: Trial) -> list[tuple[int, str]]:
    """(subject id, month) of every follow-up timepoint both readers signed, the month of the later read."""
    rows = (Read.objects.filter(task__trial=trial, task__status__in=ReadTask.LIVE, status=Read.Status.SIGNED)
            .exclude(overall="").values("task__visit_id", "task__subject_id")
            .annotate(slots=Count("task__slot", distinct=True), last=Max("signed_at")).filter(slots=2))
    return [(r["task__subject_id"], _month(r["last"])) for r in rows]


def _throughput(trial: Trial) -> list[tuple[int, str, int]]:
    """(reader id, month, signatures), counted in the database."""
    rows = (Read.objects.filter(task__trial=trial, signed_at__isnull=False)
            .annotate(month=TruncMonth("signed_at", tzinfo=datetime.UTC))
            .values("task__reader_id", "month").annotate(n=Count("pk")).order_by())
    return [(r["task__reader_id"], r["month"].strftime("%Y-%m"), r["n"]) for r in rows]


def _block(*, groups: list[dict], adjudications: list[dict], compared: list[tuple[int, str]],
           throughput: list[tuple[int, str, int]], names: dict[int, str]) -> dict:
    by_pair: dict[tuple, list] = defaultdict(list)
    for group in groups:
        by_pair[tuple(group["reader_ids"])].extend(group["ratings"])
    pairs = []
    for ids, ratings in sorted(by_pair.items()):
        first, second = [a for a, _ in ratings], [b for _, b in ratings]
        pairs.append({"reader_ids": list(ids), "readers": [names.get(i, str(i)) for i in ids], "n": len(ratings),
                      "cohen_kappa": cohen_kappa(first, second).as_dict(),
                      "percent_agreement": percent_agreement(first, second).as_dict()})
    everything = [pair for ratings in by_pair.values() for pair in ratings]
    involved = {i for ids in by_pair for i in ids}
    if len(involved) > 2:
        fleiss = fleiss_kappa([list(pair) for pair in everything]).as_dict()
    else:
        fleiss = {"value": None, "n": len(everything), "reason": TWO_READERS}

    subjects_compared = {subject for subject, _ in compared}
    subjects_adjudicated = {a["subject_id"] for a in adjudications}

    paired: dict[int, int] = defaultdict(int)
    disagreed: dict[int, int] = defaultdict(int)
    for ids, ratings in by_pair.items():
        for a, b in ratings:
            for reader in ids:
                paired[reader] += 1
                disagreed[reader] += a != b
    involved_adj: dict[int, int] = defaultdict(int)
    chosen: dict[int, int] = defaultdict(int)
    for adj in adjudications:
        if adj["status"] != "resolved":
            continue
        for reader in set(adj["readers"].values()):
            involved_adj[reader] += 1
            chosen[reader] += adj["selected_reader"] == reader
    signed: dict[int, int] = defaultdict(int)
    for reader, _, n in throughput:
        signed[reader] += n
    readers = []
    for reader in sorted(set(paired) | set(involved_adj) | set(signed)):
        readers.append({"reader_id": reader, "reader": names.get(reader, str(reader)),
                        "paired_timepoints": paired[reader], "disagreements": disagreed[reader],
                        "disagreement_index": rate(disagreed[reader], paired[reader]),
                        "adjudicator_agreement": rate(chosen[reader], involved_adj[reader]),
                        "signed_reads": signed[reader]})
    return {
        "pairs": pairs,
        "percent_agreement": percent_agreement([a for a, _ in everything], [b for _, b in everything]).as_dict(),
        "fleiss_kappa": fleiss,
        "adjudication": {"subjects_compared": len(subjects_compared),
                         "subjects_adjudicated": len(subjects_adjudicated),
                         "open": sum(1 for a in adjudications if a["status"] == "open"),
                         "resolved": sum(1 for a in adjudications if a["status"] == "resolved"),
                         "rate": rate(len(subjects_adjudicated & subjects_compared), len(subjects_compared))},
        "readers": readers,
    }


def agreement_report(*, trial: Trial) -> dict:
    """The trial's agreement and performance metrics, overall and per month (the system's view: no user check;
    views and the API go through ``agreement_report_for_user``)."""
    groups = agreement_inputs(trial=trial)
    adjudications = adjudication_inputs(trial=trial)
    compared = _compared(trial)
    throughput = _throughput(trial)
    names = {r.pk: r.user.get_username() for r in Reader.objects.filter(trial=trial).select_related("user")}
    months = sorted({g["month"] for g in groups} | {a["month"] for a in adjudications}
                    | {m for _, m in compared} | {m for _, m, _ in throughput})
    return {
        "trial": trial.protocol_number,
        "criteria": "RECIST 1.1 overall response",
        "overall": _block(groups=groups, adjudications=adjudications, compared=compared, throughput=throughput,
                          names=names),
        "months": [{"month": month, **_block(
            groups=[g for g in groups if g["month"] == month],
            adjudications=[a for a in adjudications if a["month"] == month],
            compared=[c for c in compared if c[1] == month],
            throughput=[t for t in throughput if t[1] == month], names=names)} for month in months],
    }


def agreement_report_for_user(*, user, trial_id: int) -> tuple[Trial, dict]:
    """The report for a trial manager or auditor of the trial; Http404 for anyone else."""
    trial = oversight_trial_get_for_user(user=user, trial_id=trial_id)
    return trial, agreement_report(trial=trial)
