"""SAS XPORT v5 writer: byte layout, IBM floating point, and round trips through pandas' independent reader."""

import datetime
import io
import math
import struct
from decimal import Decimal

import pandas as pd
import pytest

from reads.xport import Variable, XportError, ibm_float, write_xport, xport_bytes

CREATED = datetime.datetime(2026, 3, 2, 14, 5, 9)
RS_VARIABLES = [Variable("STUDYID", "char", "Study Identifier"), Variable("USUBJID", "char", "Unique Subject Identifier"),
                Variable("RSSEQ", "num", "Sequence Number"), Variable("RSORRES", "char", "Result or Finding in Original Units"),
                Variable("RSDY", "num", "Study Day of Response Assessment")]
# SDTM-like widths: rows longer than 80 bytes. For shorter rows pandas guesses the row count from 8-byte blank
# words anywhere in the last record, and undercounts rows whose own values end in blanks.
RS_WIDE = [Variable("STUDYID", "char", "Study Identifier", length=20), *RS_VARIABLES[1:3],
           Variable("RSORRES", "char", "Result or Finding in Original Units", length=40), RS_VARIABLES[4]]


def read(data: bytes) -> pd.DataFrame:
    return pd.read_sas(io.BytesIO(data), format="xport", encoding="ascii")


def reader(data: bytes):
    return pd.read_sas(io.BytesIO(data), format="xport", encoding="ascii", iterator=True)


def dataset(rows, variables=RS_VARIABLES, **kw):
    return xport_bytes(name=kw.pop("name", "RS"), label=kw.pop("label", "Disease Response"), variables=variables,
                       rows=rows, created=CREATED, **kw)


@pytest.mark.parametrize(("value", "expected"), [
    (1.0, "4110000000000000"),
    (-118.625, "C276A00000000000"),  # the classic IBM System/370 example
    (0.1, "401999999999999A"),
    (0.0, "0000000000000000"),
    (100, "4264000000000000"),
    (0.5, "4080000000000000"),
])
def test_ibm_float_known_values(value, expected):
    assert ibm_float(value).hex().upper() == expected


def test_numbers_round_trip_exactly():
    values = [1, -1, 0.5, -0.1, 23.31, 1e-20, -123456789.125, 2.0**52 + 1, 7.2e75, math.pi]
    data = xport_bytes(name="TR", variables=[Variable("TRSTRESN", "num", "Numeric Result")],
                       rows=[[v] for v in values], created=CREATED)
    assert read(data)["TRSTRESN"].tolist() == [float(v) for v in values]


def test_zero_is_written_as_ibm_zero():
    data = xport_bytes(name="TR", variables=[Variable("TRSTRESN", "num")], rows=[[0], [-0.0], [5]], created=CREATED)
    assert data.endswith(b"\x00" * 16 + ibm_float(5) + b" " * 56)
    # pandas turns IBM zero into 16**-65, the smallest IBM number (pandas-dev/pandas#50670); SAS reads 0
    assert [v if v != 16.0**-65 else 0.0 for v in read(data)["TRSTRESN"]] == [0.0, 0.0, 5.0]


def test_missing_numbers_are_sas_missing():
    data = dataset([["CL-001", "CL-001-0001", None, "", float("nan")]])
    assert b"\x2e\x00\x00\x00\x00\x00\x00\x00" in data
    frame = read(data)
    assert math.isnan(frame["RSSEQ"][0]) and math.isnan(frame["RSDY"][0])


def test_decimals_are_written_as_numbers():
    frame = read(dataset([["S", "U", Decimal("3"), "PR", Decimal("-12.75")]]))
    assert (frame["RSSEQ"][0], frame["RSDY"][0]) == (3.0, -12.75)


def test_rows_round_trip_as_mappings_and_sequences():
    rows = [{"STUDYID": "CL-001", "USUBJID": "CL-001-0001", "RSSEQ": 1, "RSORRES": "PR", "RSDY": 43},
            ["CL-001", "CL-001-0002", 2, "NON-CR/NON-PD", -3], ["CL-001", "CL-001-0003", 3, None, 365]]
    frame = read(dataset(rows, variables=RS_WIDE))
    assert list(frame.columns) == ["STUDYID", "USUBJID", "RSSEQ", "RSORRES", "RSDY"]
    assert frame["USUBJID"].tolist() == ["CL-001-0001", "CL-001-0002", "CL-001-0003"]
    assert frame["RSORRES"].tolist() == ["PR", "NON-CR/NON-PD", ""]
    assert frame["RSDY"].tolist() == [43.0, -3.0, 365.0]


def test_character_values_are_blank_padded_to_the_longest_value():
    data = dataset([["CL-001", "A", 1, "PD", 1], ["CL-001", "ABCDEFGHIJ", 2, "SD", 2]], variables=RS_WIDE)
    assert b"A         " + ibm_float(1) in data  # 1 character padded to 10, then RSSEQ
    assert read(data)["USUBJID"].tolist() == ["A", "ABCDEFGHIJ"]
    assert reader(data).fields[1]["field_length"] == 10


def test_declared_length_and_200_character_values():
    long = "X" * 200
    data = xport_bytes(name="CO", variables=[Variable("COVAL", "char", "Comment", length=200)], rows=[[long], ["y"]],
                       created=CREATED)
    assert read(data)["COVAL"].tolist() == [long, "y"]
    assert reader(data).fields[0]["field_length"] == 200


def test_names_labels_and_header_records():
    data = dataset([["CL-001", "CL-001-0001", 1, "PR", 43]])
    records = [data[i:i + 80] for i in range(0, len(data), 80)]
    assert len(data) % 80 == 0
    assert records[0] == b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!" + b"0" * 30 + b"  "
    assert records[1].startswith(b"SAS     SAS     SASLIB  ") and records[1].endswith(b"02MAR26:14:05:09")
    assert records[3] == b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!000000000000000001600000000140  "
    assert records[5][8:16] == b"RS      "
    assert records[7] == b"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!000000000500000000000000000000  "
    # five 140-byte NAMESTRs fill 700 bytes, padded to 720: nine records, then the OBS header
    assert records[17] == b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!" + b"0" * 30 + b"  "
    first = data[8 * 80:8 * 80 + 140]
    ntype, _, length, number = struct.unpack(">hhhh", first[:8])
    assert (ntype, length, number, first[8:16], first[16:56].rstrip()) == (2, 6, 1, b"STUDYID ", b"Study Identifier")
    third = data[8 * 80 + 280:8 * 80 + 420]
    assert struct.unpack(">hhhh", third[:8]) == (1, 0, 8, 3)
    assert struct.unpack(">l", third[84:88]) == (6 + 11,)  # position after STUDYID (6) and USUBJID (11)

    info = reader(data)
    assert (info.member_info["set_name"], info.member_info["label"]) == ("RS", "Disease Response")
    assert info.member_info["created"] == CREATED
    assert [(f["name"], f["label"]) for f in info.fields][2:4] == [
        (b"RSSEQ", b"Sequence Number"), (b"RSORRES", b"Result or Finding in Original Units")]


def test_short_rows_padding_adds_no_phantom_rows():
    data = xport_bytes(name="X", variables=[Variable("N", "num")], rows=[[1], [2], [3]], created=CREATED)
    assert len(data) % 80 == 0
    assert read(data)["N"].tolist() == [1.0, 2.0, 3.0]


def test_no_rows():
    data = dataset([])
    assert data.endswith(b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!" + b"0" * 30 + b"  ")
    # pandas reads the variables, and (for want of rows) raises StopIteration on read()
    info = reader(data)
    assert (info.nobs, info.columns) == (0, ["STUDYID", "USUBJID", "RSSEQ", "RSORRES", "RSDY"])


def test_write_xport_to_a_file(tmp_path):
    path = write_xport(tmp_path / "rs.xpt", name="RS", variables=RS_VARIABLES, rows=[["S", "U", 1, "CR", 2]])
    frame = pd.read_sas(path, format="xport", encoding="ascii")
    assert frame["RSORRES"].tolist() == ["CR"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "RESPONSES"}, "dataset name 'RESPONSES' must be 1-8 characters"),
    ({"name": "1RS"}, "dataset name '1RS'"),
    ({"name": ""}, "dataset name ''"),
    ({"label": "L" * 41}, "label is 41 characters; XPORT v5 allows 40"),
    ({"label": "Réponse"}, "outside ASCII"),
    ({"variables": [Variable("RSORRESULT", "char")]}, "variable name 'RSORRESULT'"),
    ({"variables": [Variable("RS-SEQ", "num")]}, "variable name 'RS-SEQ'"),
    ({"variables": [Variable("RSSEQ", "num", "x" * 41)]}, "variable RSSEQ label is 41 characters"),
    ({"variables": [Variable("A", "num"), Variable("a", "num")]}, "variable a appears twice"),
    ({"variables": [Variable("A", "date")]}, "type must be 'num' or 'char'"),
    ({"variables": [Variable("A", "num", length=4)]}, "numeric variables are written 8 bytes long"),
    ({"variables": [Variable("A", "char", length=201)]}, "length must be 1-200"),
    ({"variables": [Variable("A", "char", length=0)]}, "length must be 1-200"),
    ({"variables": ["A"]}, "must be a Variable"),
    ({"variables": []}, "no variables"),
])
def test_bad_definitions_are_refused(kwargs, message):
    args = {"name": "RS", "variables": [Variable("A", "num")], "rows": [], **kwargs}
    with pytest.raises(XportError) as caught:
        xport_bytes(**args)
    assert message in str(caught.value)


@pytest.mark.parametrize(("row", "message"), [
    (["S", "U", "1", "PR", 2], "row 1, variable RSSEQ: a numeric variable takes a number or None"),
    (["S", "U", True, "PR", 2], "a numeric variable takes a number or None"),
    (["S", "U", 1, 5, 2], "variable RSORRES: a character variable takes a string or None"),
    (["S", "U", 1, "PR", float("inf")], "infinity cannot be stored"),
    (["S", "U", 1, "PR", 1e300], "outside the range of IBM floating point"),
    (["S", "U", 1, "PR"], "4 values for 5 variables"),
    (["S", "Ünique", 1, "PR", 2], "outside ASCII"),
    ({"STUDYID": "S", "USUBJID": "U", "RSSEQ": 1, "RSORRES": "PR"}, "no value for RSDY"),
    ({"STUDYID": "S", "USUBJID": "U", "RSSEQ": 1, "RSORRES": "PR", "RSDY": 1, "RSX": 2}, "unknown variable(s) RSX"),
    ("S,U,1,PR,2", "a row is a mapping of name to value or a sequence of values"),
])
def test_bad_rows_are_refused(row, message):
    with pytest.raises(XportError) as caught:
        dataset([["S", "U", 1, "PR", 2], row])
    assert message in str(caught.value)


def test_value_longer_than_the_declared_length_is_refused():
    with pytest.raises(XportError, match="row 1, variable CODE: 3 characters do not fit its length 2"):
        xport_bytes(name="X", variables=[Variable("CODE", "char", length=2)], rows=[["PR"], ["PRX"]])


def test_xport_error_is_a_value_error():
    assert issubclass(XportError, ValueError)
