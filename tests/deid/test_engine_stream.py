"""deidentify_bytes(): the same de-identification as deidentify(), from bytes to bytes, parsing only what it changes.

Pure pydicom: no database. Every case compares against the whole-dataset path (dcmread + deidentify +
save_as) on the same input.
"""

import io

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from deid.engine import (
    OPTIONS,
    DeidError,
    Profile,
    deidentify,
    deidentify_bytes,
    identifying_strings,
    verify,
)

from .test_engine import BASIC, KEYS, RICH, SUBJECT, _crafted, _iod_errors, _with_phi, _with_private

SAFE = Profile(options=frozenset({"retain_safe_private", "clean_descriptors"}),
               safe_private=frozenset({("CORELAB TEST 1.0", 0x10)}))
PROFILES = {"basic": BASIC, "rich": RICH, "safe-private": SAFE,
            "pixels-no-boxes": Profile(options=frozenset({"clean_pixel_data", "retain_uids"}))}


def _encode(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _whole(blob: bytes, profile: Profile, **kwargs):
    """The reference: dcmread + deidentify + save_as, then verify(); the preamble zeroed as the stream writes it."""
    ds = pydicom.dcmread(io.BytesIO(blob))
    forbidden = identifying_strings(ds)
    report = deidentify(ds, profile=profile, keys=KEYS, subject_code=SUBJECT, **kwargs)
    ds.preamble = None
    data = _encode(ds)
    return data, report, verify(ds, profile=profile, subject_code=SUBJECT, forbidden=forbidden)


def _boxes(profile: Profile):
    return [] if "clean_pixel_data" in profile.options else None


def _with_meta_extras() -> Dataset:
    ds = _crafted()
    ds.file_meta.SourceApplicationEntityTitle = "SITE101_CT"
    ds.file_meta.SendingApplicationEntityTitle = "SITE101_GW"
    ds.file_meta.PrivateInformationCreatorUID = "1.2.826.0.1.3680043.10.1.66"
    ds.file_meta.PrivateInformation = b"Doe^Jane"
    return ds


SAMPLES = {
    "crafted CT": lambda: _crafted(),
    "file meta AE titles and private information": _with_meta_extras,
    "RT plan": lambda: _with_phi("rtplan.dcm"),
    "private blocks": lambda: _with_private(),
    "MR implicit VR": lambda: _with_phi("MR_small_implicit.dcm"),
    "JPEG 2000": lambda: _with_phi("JPEG2000.dcm"),
    "RLE": lambda: _with_phi("MR_small_RLE.dcm"),
    "overlay": lambda: _with_phi("examples_overlay.dcm"),
    "RT dose": lambda: _with_phi("rtdose.dcm"),
    "SR": lambda: _with_phi("test-SR.dcm"),
    "ECG waveform": lambda: _with_phi("waveform_ecg.dcm"),
}


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # rtdose.dcm's own UIDs
@pytest.mark.parametrize("sample", SAMPLES)
@pytest.mark.parametrize("profile", PROFILES.values(), ids=PROFILES)
def test_stream_writes_what_the_whole_dataset_path_writes(sample, profile):
    blob = _encode(SAMPLES[sample]())
    want, report, problems = _whole(blob, profile, pixel_boxes=_boxes(profile))
    got = deidentify_bytes(blob, profile=profile, keys=KEYS, subject_code=SUBJECT, pixel_boxes=_boxes(profile))
    assert got.streamed
    assert got.data == want
    assert got.report == report
    assert sorted(got.problems) == sorted(problems)


def test_pixel_data_bytes_are_copied_untouched_when_nothing_is_cleaned():
    for name in ("CT_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"):
        blob = _encode(_with_phi(name))
        original = pydicom.dcmread(io.BytesIO(blob)).get_item(0x7FE00010)
        got = deidentify_bytes(blob, profile=PROFILES["pixels-no-boxes"], keys=KEYS, subject_code=SUBJECT,
                               pixel_boxes=[])
        assert got.pixel_data_copied and got.streamed
        out = pydicom.dcmread(io.BytesIO(got.data))
        assert out.get_item(0x7FE00010).value == original.value, name
        assert out.file_meta.TransferSyntaxUID == pydicom.dcmread(io.BytesIO(blob)).file_meta.TransferSyntaxUID
        assert bytes(original.value) in got.data  # byte for byte, not only equal once decoded


def test_pixel_boxes_take_the_whole_dataset_path():
    blob = _encode(_with_phi("CT_small.dcm"))
    profile = Profile(options=frozenset({"clean_pixel_data"}))
    want, report, _ = _whole(blob, profile, pixel_boxes=[(10, 20, 30, 5)])
    got = deidentify_bytes(blob, profile=profile, keys=KEYS, subject_code=SUBJECT, pixel_boxes=[(10, 20, 30, 5)])
    assert not got.streamed and not got.pixel_data_copied
    assert got.data == want and got.report == report
    assert (pydicom.dcmread(io.BytesIO(got.data)).pixel_array[20:25, 10:40] == 0).all()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_big_endian_takes_the_whole_dataset_path_with_the_same_result():
    ds = _with_phi("MR_small_bigendian.dcm")
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    blob = _encode(ds)
    want, report, problems = _whole(blob, BASIC)
    got = deidentify_bytes(blob, profile=BASIC, keys=KEYS, subject_code=SUBJECT)
    assert not got.streamed
    assert (got.data, got.report, got.problems) == (want, report, problems)


def test_phi_in_an_attribute_the_table_keeps_is_found_in_the_copied_bytes():
    ds = _crafted()
    ds.Manufacturer = "Doe Scanners for Jane"  # not in Table E.1-1: copied as it is, so verification must see it
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    blob = _encode(ds)
    got = deidentify_bytes(blob, profile=BASIC, keys=KEYS, subject_code=SUBJECT)
    assert got.streamed
    assert "(0008,0070) Manufacturer: holds identifying text" in got.problems
    assert got.problems == _whole(blob, BASIC)[2]


def test_marks_replace_marks_already_in_the_file():
    first = deidentify_bytes(_encode(_crafted()), profile=RICH, keys=KEYS, subject_code=SUBJECT)
    again = deidentify_bytes(first.data, profile=BASIC, keys=KEYS, subject_code=SUBJECT)
    ds = pydicom.dcmread(io.BytesIO(again.data))
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_preamble_is_zeroed():
    ds = _crafted()
    ds.preamble = b"Doe^Jane MRN-55501".ljust(128, b"\0")
    got = deidentify_bytes(_encode(ds), profile=BASIC, keys=KEYS, subject_code=SUBJECT)
    assert got.data[:132] == b"\0" * 128 + b"DICM"
    assert b"MRN-55501" not in got.data


def test_output_is_deterministic_and_verifies_clean():
    blob = _encode(_crafted())
    first = deidentify_bytes(blob, profile=RICH, keys=KEYS, subject_code=SUBJECT)
    second = deidentify_bytes(blob, profile=RICH, keys=KEYS, subject_code=SUBJECT)
    assert first.data == second.data and first.problems == [] and first.streamed
    assert {"Doe", "Jane", "MRN-55501"} <= first.forbidden


def test_not_dicom_and_bad_arguments_are_refused():
    with pytest.raises(DeidError, match="not a readable DICOM file"):
        deidentify_bytes(b"hello" * 40, profile=BASIC, keys=KEYS, subject_code=SUBJECT)
    blob = _encode(_crafted())
    with pytest.raises(ValueError, match="subject code"):
        deidentify_bytes(blob, profile=BASIC, keys=KEYS, subject_code="A\\B")
    with pytest.raises(ValueError, match="pixel_boxes"):
        deidentify_bytes(blob, profile=Profile(options=frozenset({"clean_pixel_data"})), keys=KEYS,
                         subject_code=SUBJECT)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "rtdose.dcm"])
def test_streamed_output_has_no_new_iod_errors(name, tmp_path):
    profile = Profile(options=frozenset(OPTIONS) - {"retain_longitudinal_full_dates", "clean_pixel_data"})
    blob = _encode(_with_phi(name))
    (tmp_path / "in.dcm").write_bytes(blob)
    got = deidentify_bytes(blob, profile=profile, keys=KEYS, subject_code=SUBJECT)
    assert got.streamed and got.problems == []
    (tmp_path / "out.dcm").write_bytes(got.data)
    new = _iod_errors(tmp_path / "out.dcm") - _iod_errors(tmp_path / "in.dcm")
    assert not new, f"{name}: new dciodvfy errors {sorted(new)}"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_truncated_file_is_refused_or_read_as_pydicom_reads_it():
    blob = _encode(_crafted())
    for cut in (140, 400, 401, len(blob) // 2, len(blob) - 3):
        try:
            got = deidentify_bytes(blob[:cut], profile=BASIC, keys=KEYS, subject_code=SUBJECT)
        except DeidError:
            continue
        # cut inside an element: never streamed; cut between two: a shorter file, read as dcmread reads it
        assert not got.streamed or got.data == _whole(blob[:cut], BASIC)[0], cut
