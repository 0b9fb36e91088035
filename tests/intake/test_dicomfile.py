"""inspect() reads most headers by walking their bytes: it must say exactly what pydicom's reading says."""

import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files

from intake.dicomfile import UnreadableFile, _Fallback, _walk, inspect


def _outcome(path: Path, *, fast: bool):
    try:
        return inspect(path, fast=fast)
    except UnreadableFile as exc:
        return ("refused", str(exc))


def test_the_byte_walk_and_pydicom_agree_on_every_sample_file():
    walked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the odd samples it is given to read
        samples = [Path(name) for name in get_testdata_files("*") if Path(name).is_file()]
        for path in samples:
            assert _outcome(path, fast=True) == _outcome(path, fast=False), path.name
            try:
                _walk(path)
                walked += 1
            except (_Fallback, ValueError):
                pass
    # the comparison means something only if the walk really read many of them
    assert len(samples) > 100 and walked > 50


def test_a_file_cut_inside_its_pixels_is_refused_the_same_way_by_both(tmp_path):
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(raw[:-1000])
    _walk(cut)  # the walk reads it (does not leave it to pydicom)
    fast = _outcome(cut, fast=True)
    assert fast == _outcome(cut, fast=False) and fast[1].startswith("truncated: pixel data needs")


@pytest.mark.parametrize("charset", ["ISO 2022 IR 87", "ISO_IR 100\\ISO 2022 IR 87"])
def test_code_extensions_are_left_to_pydicom(tmp_path, charset):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SpecificCharacterSet = charset
    path = tmp_path / "jp.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the sample's Latin names have no ISO 2022 IR 87 encoding
        ds.save_as(path, enforce_file_format=True)
    with pytest.raises(_Fallback):
        _walk(path)
    assert inspect(path) == inspect(path, fast=False)
