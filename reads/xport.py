"""SAS XPORT Transport Format version 5 writer: a pure module (standard library only).

Version 5 transport files are what the FDA accepts for SDTM datasets (one dataset per file). The
layout follows SAS technical support document TS-140 ("The record layout of a data set in SAS
transport (XPORT) format"):

- 80-byte records throughout: the library header, two real-header records (SAS version, operating
  system, created/modified datetimes), the member and descriptor headers with the dataset's name and
  label, the NAMESTR header giving the number of variables, one 140-byte NAMESTR per variable (type,
  length, number, name, label, format, position in the observation; big-endian), the OBS header, then
  the observations back to back, each section padded with blanks to a multiple of 80 bytes.
- Numbers are 8-byte IBM System/370 floating point (base 16, excess-64 exponent, 56-bit fraction);
  the conversion from an IEEE double is exact. A missing number is SAS's ``.`` (0x2E then 7 zero bytes).
- Character values are ASCII, padded with blanks to the variable's length (1 to 200 bytes).

Names are checked as version 5 requires: dataset and variable names 1-8 characters (a letter or
underscore, then letters, digits, underscores), labels up to 40 characters, ASCII only. Anything
else raises ``XportError`` naming the dataset, variable or row.

Two limits of pandas' reader (the tests' independent check), not of the file: it reads IBM zero as
16**-65 (pandas-dev/pandas#50670), and for rows shorter than 80 bytes it guesses the row count from blank
8-byte words anywhere in the last record, so it can drop rows that end in blanks. SDTM rows are longer.

    data = xport_bytes(name="RS", label="Disease Response", variables=[
        Variable("STUDYID", "char", "Study Identifier"),
        Variable("RSSEQ", "num", "Sequence Number"),
    ], rows=[{"STUDYID": "CL-001", "RSSEQ": 1}])
"""

from __future__ import annotations

import datetime
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

__all__ = ["Variable", "XportError", "ibm_float", "write_xport", "xport_bytes"]

RECORD = 80
NAMESTR_LENGTH = 140
MAX_CHAR_LENGTH = 200
MAX_VARIABLES = 9999
SAS_VERSION = "9.4"
OS_NAME = "corelab"
MISSING = b"\x2e" + b"\x00" * 7
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,7}")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


class XportError(ValueError):
    """The dataset cannot be written as a version 5 transport file; the message says where."""


@dataclass(frozen=True)
class Variable:
    """One column: ``type`` is "num" (8-byte float) or "char" (``length`` bytes, default: longest value)."""

    name: str
    type: str
    label: str = ""
    length: int | None = None
    format: str = ""


def _ascii(value: str, where: str) -> bytes:
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        raise XportError(f"{where}: {value!r} has characters outside ASCII, which XPORT v5 cannot carry") from None


def _check_name(name, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise XportError(f"{what} name {name!r} must be 1-8 characters: a letter or underscore, "
                         f"then letters, digits or underscores")
    return name


def _check_label(label, what: str) -> str:
    if not isinstance(label, str):
        raise XportError(f"{what} label must be a string, not {label!r}")
    if len(label) > 40:
        raise XportError(f"{what} label is {len(label)} characters; XPORT v5 allows 40: {label!r}")
    _ascii(label, f"{what} label")
    return label


def _pad(data: bytes, size: int) -> bytes:
    return data + b" " * (size - len(data))


def _text(value: str, size: int) -> bytes:
    return _pad(value.encode("ascii"), size)


def _records(data: bytes) -> bytes:
    """Blank-pad to a whole number of 80-byte records."""
    return _pad(data, -(-len(data) // RECORD) * RECORD)


def _header(kind: str, digits: str = "0" * 30) -> bytes:
    return _text(f"HEADER RECORD*******{kind:<8}HEADER RECORD!!!!!!!{digits}", RECORD)


def _sas_datetime(moment: datetime.datetime) -> str:
    return f"{moment.day:02d}{_MONTHS[moment.month - 1]}{moment.year % 100:02d}:{moment:%H:%M:%S}"


def ibm_float(value: float) -> bytes:
    """An IEEE double as an 8-byte IBM System/370 double, exactly (56 fraction bits hold all 53)."""
    if value == 0:
        return b"\x00" * 8
    sign = 0x80 if value < 0 else 0
    mantissa, exponent = math.frexp(abs(value))  # abs(value) = mantissa * 2**exponent, 0.5 <= mantissa < 1
    hex_exponent = -(-exponent // 4)  # value = fraction * 16**hex_exponent with 1/16 <= fraction < 1
    shift = 4 * hex_exponent - exponent  # 0..3 bits the fraction moves right
    fraction = int(mantissa * 2**53) << (3 - shift)
    biased = hex_exponent + 64
    if not 0 <= biased <= 127:
        raise XportError(f"{value!r} is outside the range of IBM floating point (about 5.4e-79 to 7.2e75)")
    return bytes([sign | biased]) + fraction.to_bytes(7, "big")


def _number(value, where: str) -> bytes:
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise XportError(f"{where}: a numeric variable takes a number or None, not {value!r}")
    number = float(value)
    if math.isnan(number):
        return MISSING
    if math.isinf(number):
        raise XportError(f"{where}: infinity cannot be stored")
    return ibm_float(number)


def _namestr(variable: Variable, number: int, position: int, length: int) -> bytes:
    numeric = variable.type == "num"
    record = struct.pack(
        ">hhhh8s40s8shhh2s8shhl52s",
        1 if numeric else 2, 0, length, number,
        _text(variable.name, 8), _text(variable.label, 40), _text(variable.format, 8),
        0, 0, 0, b"\x00\x00", b" " * 8, 0, 0, position, b"\x00" * 52,
    )
    assert len(record) == NAMESTR_LENGTH
    return record


def _columns(variables: Sequence[Variable], rows: list, dataset: str) -> tuple[list[Variable], list[int]]:
    if not variables:
        raise XportError(f"dataset {dataset}: no variables")
    if len(variables) > MAX_VARIABLES:
        raise XportError(f"dataset {dataset}: {len(variables)} variables; XPORT v5 allows {MAX_VARIABLES}")
    seen: set[str] = set()
    lengths = []
    for index, variable in enumerate(variables):
        _check_name(variable.name, f"dataset {dataset}: variable")
        where = f"dataset {dataset}, variable {variable.name}"
        if variable.name.upper() in seen:
            raise XportError(f"dataset {dataset}: variable {variable.name} appears twice (names ignore case)")
        seen.add(variable.name.upper())
        _check_label(variable.label, where)
        if variable.format:
            _check_name(variable.format.rstrip("."), f"{where}: format")
        if variable.type == "num":
            if variable.length not in (None, 8):
                raise XportError(f"{where}: numeric variables are written 8 bytes long, not {variable.length}")
            lengths.append(8)
        elif variable.type == "char":
            longest = max((len(_ascii(v, f"{where}, row {i}")) for i, v in
                           ((i, row[index]) for i, row in enumerate(rows)) if isinstance(v, str)), default=1)
            length = variable.length if variable.length is not None else max(longest, 1)
            if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_CHAR_LENGTH:
                raise XportError(f"{where}: length must be 1-{MAX_CHAR_LENGTH} bytes, not {length!r}")
            lengths.append(length)
        else:
            raise XportError(f"{where}: type must be 'num' or 'char', not {variable.type!r}")
    return list(variables), lengths


def _row_values(row, variables: Sequence[Variable], where: str) -> list:
    if isinstance(row, Mapping):
        unknown = sorted(set(row) - {v.name for v in variables})
        if unknown:
            raise XportError(f"{where}: unknown variable(s) {', '.join(map(str, unknown))}")
        missing = [v.name for v in variables if v.name not in row]
        if missing:
            raise XportError(f"{where}: no value for {', '.join(missing)} (use None for missing)")
        return [row[v.name] for v in variables]
    if isinstance(row, str | bytes) or not isinstance(row, Sequence):
        raise XportError(f"{where}: a row is a mapping of name to value or a sequence of values, not {row!r}")
    if len(row) != len(variables):
        raise XportError(f"{where}: {len(row)} values for {len(variables)} variables")
    return list(row)


def xport_bytes(*, name: str, variables: Sequence[Variable], rows: Iterable[Sequence | Mapping],
                label: str = "", created: datetime.datetime | None = None) -> bytes:
    """One dataset as the bytes of a SAS XPORT v5 transport file."""
    _check_name(name, "dataset")
    _check_label(label, f"dataset {name}")
    variables = list(variables)
    for index, variable in enumerate(variables):
        if not isinstance(variable, Variable):
            raise XportError(f"dataset {name}: variable {index} must be a Variable, not {variable!r}")
    values = [_row_values(row, variables, f"dataset {name}, row {i}") for i, row in enumerate(rows)]
    variables, lengths = _columns(variables, values, name)
    stamp = _sas_datetime(created or datetime.datetime.now(datetime.UTC))

    out = [
        _header("LIBRARY"),
        _text(f"{'SAS':<8}{'SAS':<8}{'SASLIB':<8}{SAS_VERSION:<8}{OS_NAME:<8}{'':<24}{stamp}", RECORD),
        _text(stamp, RECORD),
        _header("MEMBER", "000000000000000001600000000" + str(NAMESTR_LENGTH)),
        _header("DSCRPTR"),
        _text(f"{'SAS':<8}{name:<8}{'SASDATA':<8}{SAS_VERSION:<8}{OS_NAME:<8}{'':<24}{stamp}", RECORD),
        _text(f"{stamp}{'':<16}{label:<40}{'':<8}", RECORD),
        _header("NAMESTR", f"000000{len(variables):04d}" + "0" * 20),
    ]
    namestrs, position = b"", 0
    for number, (variable, length) in enumerate(zip(variables, lengths, strict=True), start=1):
        namestrs += _namestr(variable, number, position, length)
        position += length
    out += [_records(namestrs), _header("OBS")]

    observations = bytearray()
    for i, row in enumerate(values):
        for variable, length, value in zip(variables, lengths, row, strict=True):
            where = f"dataset {name}, row {i}, variable {variable.name}"
            if variable.type == "num":
                observations += _number(value, where)
                continue
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise XportError(f"{where}: a character variable takes a string or None, not {value!r}")
            encoded = _ascii(value, where)
            if len(encoded) > length:
                raise XportError(f"{where}: {len(encoded)} characters do not fit its length {length}")
            observations += _pad(encoded, length)
    out.append(_records(bytes(observations)))
    return b"".join(out)


def write_xport(path: str | Path, **dataset) -> Path:
    """Write ``xport_bytes(**dataset)`` to ``path`` (conventionally the lower-case dataset name + .xpt)."""
    path = Path(path)
    path.write_bytes(xport_bytes(**dataset))
    return path
