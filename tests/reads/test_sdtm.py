"""SDTM TU/TR/RS export: variables in IG order, USUBJID, sums and responses equal to the RECIST engine's,
the BICR result and its accepted-record flags, XPT equal to CSV, the CLI and the audit event."""

import csv
import hashlib
import io
import math

import pandas
import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from intake.models import ImagingStudy
from reads import recist
from reads.models import Read, ReadTask
from reads.sdtm import FILES, sdtm_datasets, sdtm_export, sdtm_files, variables

from .conftest import read_and_sign
from .test_metrics import seed

pytestmark = pytest.mark.django_db

IG_ORDER = {
    "TU": ["STUDYID", "DOMAIN", "USUBJID", "TUSEQ", "TULNKID", "TUTESTCD", "TUTEST", "TUORRES", "TUSTRESC", "TULOC",
           "TUMETHOD", "TUEVAL", "TUEVALID", "VISITNUM", "VISIT", "TUDTC"],
    "TR": ["STUDYID", "DOMAIN", "USUBJID", "TRSEQ", "TRREFID", "TRLNKID", "TRLNKGRP", "TRTESTCD", "TRTEST", "TRORRES",
           "TRORRESU", "TRSTRESC", "TRSTRESN", "TRSTRESU", "TRSTAT", "TRREASND", "TRMETHOD", "TREVAL", "TREVALID",
           "VISITNUM", "VISIT", "TRDTC"],
    "RS": ["STUDYID", "DOMAIN", "USUBJID", "RSSEQ", "RSLNKGRP", "RSTESTCD", "RSTEST", "RSCAT", "RSORRES",
           "RSSTRESC", "RSEVAL", "RSEVALID", "RSACPTFL", "VISITNUM", "VISIT", "RSDTC"],
}
REQUIRED = ["STUDYID", "DOMAIN", "USUBJID", "{}SEQ", "{}TESTCD", "{}TEST"]  # "Req" in SDTMIG v3.4, all three
EVALUATOR = {"A": "RADIOLOGIST 1", "B": "RADIOLOGIST 2"}

# a baseline with a nodal target, followed up with a split lesion, "too small to measure", a disappeared
# lesion and per-lesion non-target states
NODAL_BASELINE = {
    "targets": [
        {"id": "T1", "organ": "LIVER", "nodal": False, "mm": 30, "modality": "CT", "slice_thickness_mm": 5},
        {"id": "T2", "organ": "LYMPH NODE", "nodal": True, "mm": 20, "modality": "MR", "slice_thickness_mm": 5},
    ],
    "non_targets": [{"id": "NT1", "organ": "BONE", "nodal": False, "modality": "CT", "slice_thickness_mm": 5}],
}
W6 = {"targets": {"T1": [10, 8.5], "T2": "TSTM"}, "non_targets": {"NT1": "PRESENT"}, "new_lesions": "EQUIVOCAL"}
W12 = {"targets": {"T1": "ABSENT", "T2": 8}, "non_targets": {"NT1": "ABSENT"}, "new_lesions": "NO"}


@pytest.fixture
def exported(reading, enroll, accept):
    subjects = seed(reading, enroll, accept)
    s6 = subjects["101-0006"] = enroll("101-0006")
    for timepoint in ("BL", "W6", "W12"):
        accept(s6, timepoint)
    for timepoint, lesions in (("BL", NODAL_BASELINE), ("W6", W6), ("W12", W12)):
        for slot in ("A", "B"):
            read_and_sign(s6, timepoint, slot, lesions)
    return subjects


def engine_result(subject, slot: str) -> dict:
    """The engine run afresh on the reader's signed lesions (not the stored responses the export uses)."""
    reads = list(Read.objects.filter(task__subject=subject, task__slot=slot, task__status__in=ReadTask.LIVE,
                                     status=Read.Status.SIGNED).select_related("task__visit")
                 .order_by("task__visit__nominal_date"))
    baseline = reads[0]
    return recist.evaluate({
        "baseline": {"date": baseline.task.scan_date.isoformat(), "targets": baseline.lesions["targets"],
                     "non_targets": baseline.lesions["non_targets"]},
        "followups": [{**r.lesions, "visit": r.task.visit.timepoint, "date": r.task.scan_date.isoformat()}
                      for r in reads[1:]]})


def rows_of(data, domain, **match):
    return [r for r in data[domain] if all(r[k] == v for k, v in match.items())]


def test_variables_are_the_ig_ones_in_ig_order_and_required_ones_are_filled(exported, reading):
    data = sdtm_datasets(trial=reading.trial)
    for domain, expected in IG_ORDER.items():
        assert variables(domain) == expected
        assert data[domain], f"{domain} is empty"
        for row in data[domain]:
            assert list(row) == expected
            for name in REQUIRED:
                name = name.format(domain)
                assert row[name] not in (None, ""), f"{domain}.{name} empty in {row}"
            assert row["DOMAIN"] == domain


def test_usubjid_is_study_and_subject_code_and_seq_counts_per_subject(exported, reading):
    data = sdtm_datasets(trial=reading.trial)
    codes = {f"CL-TEST-001-{code}" for code in exported}
    for domain in ("TU", "TR", "RS"):
        assert {r["USUBJID"] for r in data[domain]} == codes
        assert {r["STUDYID"] for r in data[domain]} == {"CL-TEST-001"}
        for usubjid in codes:
            seqs = [r[f"{domain}SEQ"] for r in data[domain] if r["USUBJID"] == usubjid]
            assert seqs == list(range(1, len(seqs) + 1))


def test_tr_sum_of_diameters_equals_the_engines_sum_for_every_timepoint_and_evaluator(exported, reading):
    data = sdtm_datasets(trial=reading.trial)
    checked = 0
    for code, subject in exported.items():
        for slot, evalid in EVALUATOR.items():
            result = engine_result(subject, slot)
            baseline = Read.objects.get(task__subject=subject, task__slot=slot, task__visit__timepoint="BL",
                                        status=Read.Status.SIGNED)
            expected = {"BL": sum(t["mm"] for t in baseline.lesions["targets"])}
            expected |= {tp["visit"]: tp["sum_mm"] for tp in result["timepoints"]}
            got = {r["TRLNKGRP"].split("-", 1)[1]: r["TRSTRESN"]
                   for r in rows_of(data, "TR", USUBJID=f"CL-TEST-001-{code}", TREVALID=evalid, TRTESTCD="SUMDIAM")}
            assert {k: float(v) for k, v in got.items()} == {k: float(v) for k, v in expected.items()}
            checked += len(got)
    assert checked == 2 * (3 + 3 + 2 + 3)


def test_rs_responses_equal_the_engines_for_every_timepoint_and_evaluator(exported, reading):
    data = sdtm_datasets(trial=reading.trial)
    for code, subject in exported.items():
        for slot, evalid in EVALUATOR.items():
            result = engine_result(subject, slot)
            mine = rows_of(data, "RS", USUBJID=f"CL-TEST-001-{code}", RSEVALID=evalid)
            for test, key in (("OVRLRESP", "overall"), ("TRGRESP", "target"), ("NTRGRESP", "non_target")):
                assert {r["VISIT"]: r["RSORRES"] for r in mine if r["RSTESTCD"] == test} == {
                    {"W6": "Week 6", "W12": "Week 12"}[tp["visit"]]: tp[key] for tp in result["timepoints"]}
            [best] = [r for r in mine if r["RSTESTCD"] == "BESTRSP"]
            assert best["RSORRES"] == result["bor"] and best["VISITNUM"] is None and best["RSDTC"] == ""
            assert all(r["RSCAT"] == "RECIST 1.1" and r["RSEVAL"] == "INDEPENDENT ASSESSOR" for r in mine)


def test_the_bicr_result_is_the_adjudicators_selection_and_the_accepted_records(exported, reading):
    data = sdtm_datasets(trial=reading.trial)
    s2 = "CL-TEST-001-101-0002"  # adjudicated: read A (PD at week 12) selected
    adjudicator = {r["VISIT"]: r["RSORRES"] for r in rows_of(data, "RS", USUBJID=s2, RSEVALID="ADJUDICATOR",
                                                             RSTESTCD="OVRLRESP")}
    assert adjudicator == {"Week 6": "SD", "Week 12": "PD"}
    assert {r["RSACPTFL"] for r in rows_of(data, "RS", USUBJID=s2, RSEVALID="ADJUDICATOR")} == {"Y"}
    assert {r["RSACPTFL"] for r in rows_of(data, "RS", USUBJID=s2, RSEVALID="RADIOLOGIST 1")} == {"N"}
    s1 = "CL-TEST-001-101-0001"  # the readers agreed: the BICR result is read A's
    assert not rows_of(data, "RS", USUBJID=s1, RSEVALID="ADJUDICATOR")
    assert {r["RSACPTFL"] for r in rows_of(data, "RS", USUBJID=s1, RSEVALID="RADIOLOGIST 1")} == {"Y"}
    assert {r["RSACPTFL"] for r in rows_of(data, "RS", USUBJID=s1, RSEVALID="RADIOLOGIST 2")} == {"N"}


def test_lesions_visits_and_real_dates(exported, reading):
    data = sdtm_datasets(trial=reading.trial)
    s6 = "CL-TEST-001-101-0006"
    tu = rows_of(data, "TU", USUBJID=s6, TUEVALID="RADIOLOGIST 1")
    assert [(r["TULNKID"], r["TUORRES"], r["TULOC"], r["TUMETHOD"]) for r in tu] == [
        ("R1-T1", "TARGET", "LIVER", "CT SCAN"), ("R1-T2", "TARGET", "LYMPH NODE", "MRI"),
        ("R1-NT1", "NON-TARGET", "BONE", "CT SCAN")]
    assert {r["TUTESTCD"] for r in tu} == {"TUMIDENT"}
    tr = {(r["VISITNUM"], r["TRLNKID"], r["TRTESTCD"]): r for r in rows_of(data, "TR", USUBJID=s6,
                                                                            TREVALID="RADIOLOGIST 1")}
    assert tr[(1, "R1-T2", "LPERP")]["TRSTRESN"] == 20  # a node: short axis as Longest Perpendicular
    assert tr[(2, "R1-T1.1", "LDIAM")]["TRORRES"] == "10" and tr[(2, "R1-T1.2", "LDIAM")]["TRORRES"] == "8.5"
    assert tr[(2, "R1-T2", "LPERP")]["TRORRES"] == "TOO SMALL TO MEASURE"
    assert tr[(2, "R1-T2", "LPERP")]["TRSTRESN"] == 5
    assert tr[(3, "R1-T1", "LDIAM")]["TRSTRESN"] == 0
    assert tr[(2, "R1-NT1", "TUMSTATE")]["TRORRES"] == "PRESENT"
    assert tr[(3, "R1-NT1", "TUMSTATE")]["TRORRES"] == "ABSENT"
    rs = rows_of(data, "RS", USUBJID=s6, RSEVALID="RADIOLOGIST 1", VISITNUM=2)
    assert {r["RSTESTCD"]: r["RSORRES"] for r in rs}["NEWLPROG"] == "EQUIVOCAL"
    assert {r["RSTESTCD"]: r["RSORRES"] for r in rs}["NEWLIND"] == "Y"
    # --DTC is the acquisition date intake recorded, not the shifted date the reader's images carry
    real = ImagingStudy.objects.filter(subject=exported["101-0006"], visit__timepoint="W6",
                                       status=ImagingStudy.Status.ACCEPTED).order_by("acquisition_date").first()
    assert tr[(2, "R1-T2", "LPERP")]["TRDTC"] == real.acquisition_date.isoformat()
    assert {r["VISIT"] for r in rs} == {"Week 6"}


def _normal(value, numeric: bool):
    if numeric:
        if value in ("", None) or (isinstance(value, float) and math.isnan(value)):
            return None
        return round(float(value), 6)  # pandas reads IBM zero as 16**-65 (pandas-dev/pandas#50670)
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def test_xpt_files_read_back_with_pandas_equal_the_csv(exported, reading):
    files = sdtm_files(data=sdtm_datasets(trial=reading.trial))
    assert sorted(files) == sorted(FILES)
    for domain in ("TU", "TR", "RS"):
        xpt = pandas.read_sas(io.BytesIO(files[f"{domain.lower()}.xpt"]), format="xport", encoding="ascii")
        rows = list(csv.reader(io.StringIO(files[f"{domain.lower()}.csv"].decode())))
        assert list(xpt.columns) == rows[0] == IG_ORDER[domain]
        numeric = {name: pandas.api.types.is_numeric_dtype(xpt[name]) for name in rows[0]}
        assert [n for n, is_num in numeric.items() if is_num] == [
            n for n in rows[0] if n.endswith(("SEQ", "STRESN")) or n == "VISITNUM"]
        from_xpt = [[_normal(v, numeric[n]) for n, v in zip(rows[0], record, strict=True)]
                    for record in xpt.itertuples(index=False)]
        from_csv = [[_normal(v, numeric[n]) for n, v in zip(rows[0], record, strict=True)] for record in rows[1:]]
        assert from_xpt == from_csv
        assert len(from_csv) > 0


def test_the_cli_writes_the_six_files_and_the_export_is_audited(exported, reading, tmp_path):
    out = io.StringIO()
    call_command("export_sdtm", "--trial", "CL-TEST-001", "--out", str(tmp_path / "sdtm"), stdout=out)

    written = {p.name: p.read_bytes() for p in (tmp_path / "sdtm").iterdir()}
    assert sorted(written) == sorted(FILES)
    event = AuditEvent.objects.get(action="reads.sdtm_exported")
    assert event.trial_id == reading.trial.pk and event.actor is None
    assert {name: f["sha256"] for name, f in event.details["files"].items()} == {
        name: hashlib.sha256(content).hexdigest() for name, content in written.items()}
    assert event.details["standard"] == "SDTMIG v3.4"
    assert event.details["records"]["RS"] == written["rs.csv"].decode().count("\n") - 1
    assert "tu.xpt" in out.getvalue()


def test_the_cli_refuses_an_unknown_trial_and_a_file_as_directory(reading, tmp_path):
    with pytest.raises(CommandError, match="no trial with protocol number 'NOPE'"):
        call_command("export_sdtm", "--trial", "NOPE", "--out", str(tmp_path))
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(CommandError, match="is not a directory"):
        call_command("export_sdtm", "--trial", "CL-TEST-001", "--out", str(target))
    assert not AuditEvent.objects.filter(action="reads.sdtm_exported").exists()


def test_only_managers_auditors_and_the_system_may_export(reading, sponsor, reader1, auditor):
    from django.core.exceptions import PermissionDenied

    for user in (sponsor, reader1):
        with pytest.raises(PermissionDenied):
            sdtm_export(actor=user, trial=reading.trial)
    sdtm_export(actor=auditor, trial=reading.trial)
    assert AuditEvent.objects.filter(action="reads.sdtm_exported", actor=auditor).count() == 1
