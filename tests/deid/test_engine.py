"""The de-identification engine: Table E.1-1 row by row, each action, pseudonyms, pixels, verification, dciodvfy.

Pure pydicom: no database. Samples are pydicom's bundled files with synthetic PHI planted on top.
"""

import copy
import datetime
import hashlib
import json
import re
import shutil
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from deid.engine import (
    ACTIONS,
    OPTIONS,
    TABLE_EDITION,
    Keys,
    PixelDataError,
    Profile,
    ae_pseudonym,
    deidentify,
    identifying_strings,
    map_uid,
    row_action,
    shift_date,
    table,
    verify,
)

DATA = Path(__file__).resolve().parents[2] / "deid" / "data"
KEYS = Keys(uid_key=b"trial-one-uid-key-0123456789abcdef", date_shift_days=-45)
OTHER_TRIAL = Keys(uid_key=b"trial-two-uid-key-0123456789abcdef", date_shift_days=-45)
SUBJECT = "CL001-101-0007"
CREATOR = "CORELAB TEST 1.0"
UID_SYNTAX = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")
BASIC = Profile()
# every option the engine can switch on together (full and modified dates exclude each other)
RICH = Profile(options=frozenset(OPTIONS) - {"retain_longitudinal_full_dates", "clean_pixel_data", "retain_uids"})
PROFILES = {"basic": BASIC} | {
    name: Profile(options=frozenset({name}), safe_private=frozenset({(CREATOR, 0x10)})
                  if name == "retain_safe_private" else frozenset())
    for name in OPTIONS if name != "clean_pixel_data"
}


def _run(ds, profile=BASIC, keys=KEYS, **kwargs):
    return deidentify(ds, profile=profile, keys=keys, subject_code=SUBJECT, **kwargs)


def _with_phi(name: str) -> Dataset:
    """A bundled sample with synthetic PHI planted at the top and inside a sequence."""
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "MRN-55501", "19610704"
    ds.AccessionNumber, ds.ReferringPhysicianName = "ACC-9931", "Roe^Richard"
    ds.OtherPatientIDs = "NHS-4471"
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = ds.SOPClassUID, "1.2.826.0.1.3680043.10.1.77"
    ds.ReferencedStudySequence = [ref]
    return ds


# ---- the table -------------------------------------------------------------------------------------

def test_table_is_the_recorded_edition_and_complete():
    meta = json.loads((DATA / "ps315_table_e11.meta.json").read_text())
    readme = (DATA / "README.md").read_text()
    digest = hashlib.sha256((DATA / "ps315_table_e11.json").read_bytes()).hexdigest()
    assert meta["edition"] == TABLE_EDITION and f"edition {TABLE_EDITION}" in readme
    assert digest in readme
    assert len(table()) == meta["rows"] == 656
    assert sum(row.private for row in table()) == 1


def _tag_and_vr(row) -> tuple[int, str]:
    if row.private:
        return 0x00091010, "LO"
    tag = row.value
    if row.mask != 0xFFFFFFFF:  # a repeating group: its first instance
        tag = row.value | (0x3000 if row.mask & 0xFFFF == 0 else 0)
    try:
        vr = dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        vr = "LO"  # tags newer than pydicom's dictionary
    return tag, vr


def _sample_value(vr: str):
    if vr == "SQ":
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-1", "99TEST", "Test meaning"
        return Sequence([item])
    return {"AE": "SCANNER_AE01", "AS": "045Y", "CS": "VALUE", "DA": "20240301", "DT": "20240301101500.25+0100",
            "TM": "101500", "DS": "1.5", "IS": "7", "UI": "1.2.826.0.1.3680043.10.1.1", "US": 3, "SS": -3,
            "UL": 5, "SL": -5, "UV": 5, "SV": -5, "FL": 1.5, "FD": 2.5, "AT": 0x00100010,
            "UR": "http://site.example/x", "OB": b"\1\2", "OW": b"\1\2", "OD": b"\1" * 8, "OF": b"\1" * 4,
            "OL": b"\1" * 4, "OV": b"\1" * 8, "UN": b"\1\2"}.get(vr, "Free text 42")


@pytest.mark.parametrize("row", table(), ids=lambda r: f"{r.tag}-{r.keyword or 'pattern'}")
def test_every_row_has_an_implemented_action_under_every_option(row):
    tag, vr = _tag_and_vr(row)
    assert row.basic in {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
    for name, profile in PROFILES.items():
        for sequence in (False, True):
            assert row_action(row, options=profile.options, sequence=sequence)[0] in ACTIONS
        action, reason = row_action(row, options=profile.options, sequence=vr == "SQ")
        if action == "C" and reason == "retain_longitudinal_modified_dates" and vr not in ("DA", "DT", "TM"):
            action, _ = row_action(row, options=frozenset(), sequence=vr == "SQ")  # no defined shift: basic
        ds = Dataset()
        if row.private:
            ds.add_new(0x00090010, "LO", CREATOR)
        if tag >> 16 & 0xFF00 == 0x6000:  # an overlay plane around the overlay attribute
            ds.add_new(0x60000010, "US", 2)
            ds.add_new(0x60000011, "US", 2)
        value = _sample_value(vr)
        ds.add(DataElement(tag, vr, copy.deepcopy(value)))
        _run(ds, profile)
        _assert_outcome(ds, tag, vr, value, action, reason, context=f"{row.tag} under {name}")


def _assert_outcome(ds, tag, vr, value, action, reason, *, context):
    if tag in (0x00100010, 0x00100020):
        assert ds[tag].value == SUBJECT, context
    elif action == "X":
        assert tag not in ds, context
        if tag == 0x60003000:
            assert not [t for t in ds.keys() if t >> 16 == 0x6000], f"{context}: overlay group left"
    elif action == "Z":
        assert tag in ds and ds[tag].is_empty, context
    elif action == "D":
        assert tag in ds and not ds[tag].is_empty, context
        if vr == "UI":
            assert ds[tag].value == map_uid(value, key=KEYS.uid_key), context
        elif vr == "SQ":
            assert ds[tag].value[0].CodeValue == "ANONYMIZED", context
        elif vr in ("LO", "SH", "PN", "LT", "ST", "UT", "UC", "AE", "CS"):
            assert ds[tag].value == "ANONYMIZED", context
        else:
            assert ds[tag].value != value, context
    elif action == "U":
        expected = map_uid(value, key=KEYS.uid_key) if vr == "UI" else value
        assert ds[tag].value == expected, context
    elif action == "K":
        assert ds[tag].value == value, context
    elif action == "C":
        assert tag in ds, context
        if reason == "retain_longitudinal_modified_dates" and vr in ("DA", "DT"):
            assert ds[tag].value == shift_date(value, days=KEYS.date_shift_days, vr=vr), context
        elif vr == "AE":
            assert ds[tag].value == ae_pseudonym(value, key=KEYS.uid_key), context
        else:
            assert ds[tag].value == value, context  # nothing identifying in it to clean


def test_option_conflicts_resolve_to_cleaning():
    calibration = next(r for r in table() if r.keyword == "DateOfLastCalibration")
    both = frozenset({"retain_device_identity", "retain_longitudinal_modified_dates"})
    assert row_action(calibration, options=both) == ("C", "retain_longitudinal_modified_dates")
    assert row_action(calibration, options=frozenset({"retain_device_identity"})) == ("K", "retain_device_identity")


@pytest.mark.parametrize("basic, plain, sequence", [
    ("X/Z", "Z", "D"), ("X/D", "D", "D"), ("Z/D", "D", "D"), ("X/Z/D", "D", "D"), ("X/Z/U*", "U", "U"),
])
def test_combined_actions_take_the_alternative_that_removes_least(basic, plain, sequence):
    row = next(r for r in table() if r.basic == basic)
    assert row_action(row, options=frozenset(), sequence=False)[0] == plain
    assert row_action(row, options=frozenset(), sequence=True)[0] == sequence


# ---- actions on a crafted dataset ------------------------------------------------------------------

def _crafted() -> Dataset:
    ds = _with_phi("CT_small.dcm")
    ds.SeriesDescription = "Chest Doe baseline"
    ds.StationName, ds.StudyDate, ds.StudyTime = "CT-ROOM-3", "20240301", "101500"
    ds.ContentDate, ds.AcquisitionDateTime = "20240302", "20240302093000.5+0100"
    ds.add_new(0x50000010, "US", 4)  # curve data, repeating group 50xx
    ds.add_new(0x50003000, "OW", b"\1\2\3\4")
    nested = Dataset()  # attributes the table governs, two levels down
    nested.ReferencedSOPClassUID, nested.ReferencedSOPInstanceUID = ds.SOPClassUID, "1.2.826.0.1.3680043.10.1.5"
    nested.OtherPatientIDs, nested.PatientName, nested.StudyDate = "NHS-4471", "Doe^Jane", "20240301"
    nested.InstitutionName = "Hospital of the Synthetic"
    inner = Dataset()
    inner.AccessionNumber, inner.PatientID = "ACC-9931", "MRN-55501"
    nested.ReferencedSeriesSequence = [inner]
    ds.ReferencedImageSequence = [nested]
    return ds


def test_each_action_at_the_top_inside_sequences_and_in_repeating_groups():
    ds = _crafted()
    original_study = ds.StudyInstanceUID
    report = _run(ds)
    item = ds.ReferencedImageSequence[0]
    assert "OtherPatientIDs" not in ds and "OtherPatientIDs" not in item  # X
    assert ds.StudyDate == "" and item.StudyDate == "" and ds.AccessionNumber == ""  # Z
    assert item.ReferencedSeriesSequence[0].AccessionNumber == ""
    assert ds.ContentDate == "19000101" and ds.StationName == "ANONYMIZED"  # D (X/Z/D -> D)
    assert item.InstitutionName == "ANONYMIZED"
    assert ds.StudyInstanceUID == map_uid(original_study, key=KEYS.uid_key)  # U
    assert item.ReferencedSOPInstanceUID == map_uid("1.2.826.0.1.3680043.10.1.5", key=KEYS.uid_key)
    assert item.ReferencedSOPClassUID == ds.SOPClassUID  # K: not in the table
    assert not [t for t in ds.keys() if t >> 16 == 0x5000]  # curve group gone
    assert "SeriesDescription" not in ds
    assert report.actions["X"] >= 5 and report.uids_mapped >= 6 and report.dates_shifted == 0


def test_clean_options_keep_cleaned_values():
    ds = _crafted()
    options = frozenset({"clean_descriptors", "retain_longitudinal_modified_dates", "retain_device_identity",
                         "clean_graphics"})
    report = _run(ds, Profile(options=options))
    assert ds.SeriesDescription == "Chest * baseline"  # the patient's name scrubbed, the rest kept
    assert ds.StudyDate == "20240116" and ds.StudyTime == "101500"  # shifted by -45 days, TM kept
    assert ds.AcquisitionDateTime == "20240117093000.5+0100"
    assert ds.ReferencedImageSequence[0].StudyDate == "20240116"
    assert ds.StationName == "CT-ROOM-3"  # retained device identity
    assert ds[0x50003000].value == b"\1\2\3\4"  # curve data kept under Clean Graphics
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert report.dates_shifted >= 4


def test_a_d_sequence_keeps_its_structure_with_dummy_text():
    ds = _with_phi("CT_small.dcm")
    observer = Dataset()
    observer.VerifyingObserverName, observer.VerifyingOrganization = "Roe^Richard", "Synthetic Radiology"
    observer.VerificationDateTime = "20240301101500"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "E-1234", "99HOSP", "Richard Roe"
    observer.VerifyingObserverIdentificationCodeSequence = [code]
    note = Dataset()
    note.TextValue = "Seen by Dr Roe"  # not in the table: replaced because its sequence is D
    observer.ContentSequence = [note]
    ds.VerifyingObserverSequence = [observer]
    _run(ds)
    item = ds.VerifyingObserverSequence[0]
    assert item.VerifyingObserverName == "ANONYMIZED" and item.VerifyingOrganization == "ANONYMIZED"
    assert item.VerificationDateTime == "19000101000000"
    assert len(item.VerifyingObserverIdentificationCodeSequence) == 0  # Z
    assert item.ContentSequence[0].TextValue == "ANONYMIZED"
    assert verify(ds, profile=BASIC, subject_code=SUBJECT) == []


def test_patient_name_and_id_become_the_subject_code_everywhere():
    ds = _crafted()
    _run(ds)
    assert ds.PatientName == SUBJECT and ds.PatientID == SUBJECT
    assert ds.ReferencedImageSequence[0].PatientName == SUBJECT
    assert ds.ReferencedImageSequence[0].ReferencedSeriesSequence[0].PatientID == SUBJECT


def test_deidentification_is_marked_with_profile_and_options():
    ds = _crafted()
    options = frozenset({"retain_longitudinal_modified_dates", "clean_descriptors", "retain_uids"})
    _run(ds, Profile(options=options))
    codes = [(item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning)
             for item in ds.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM", "Basic Application Confidentiality Profile"),
                     ("113105", "DCM", "Clean Descriptors Option"),
                     ("113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"),
                     ("113110", "DCM", "Retain UIDs Option")]
    assert ds.PatientIdentityRemoved == "YES"
    assert TABLE_EDITION in ds.DeidentificationMethod[0]
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_retain_uids_keeps_them():
    ds = _crafted()
    study = ds.StudyInstanceUID
    _run(ds, Profile(options=frozenset({"retain_uids"})))
    assert ds.StudyInstanceUID == study


def test_file_meta_follows_the_dataset():
    ds = _with_phi("CT_small.dcm")
    ds.file_meta.SourceApplicationEntityTitle = "SITE101_CT"
    _run(ds)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert UID_SYNTAX.match(ds.SOPInstanceUID)
    assert "SourceApplicationEntityTitle" not in ds.file_meta


def test_the_same_input_gives_the_same_output():
    first, second = _crafted(), _crafted()
    _run(first)
    _run(second)
    assert first == second and first.file_meta == second.file_meta


# ---- pseudonyms --------------------------------------------------------------------------------------

def test_uid_mapping_is_stable_keyed_and_valid():
    uid = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
    mapped = map_uid(uid, key=KEYS.uid_key)
    assert mapped == map_uid(uid + "\0", key=KEYS.uid_key) == map_uid(uid, key=KEYS.uid_key)
    assert mapped != map_uid(uid, key=OTHER_TRIAL.uid_key)
    assert mapped != map_uid(uid + "1", key=KEYS.uid_key)
    for candidate in (mapped, map_uid("0", key=b"k" * 16), map_uid("", key=b"x" * 16)):
        assert UID_SYNTAX.match(candidate) and len(candidate) <= 64
        assert uuid.UUID(int=int(candidate[5:])).version == 8  # 2.25 names a UUID


def test_same_study_from_two_uploads_maps_to_one_study_and_trials_differ():
    first, second, elsewhere = _crafted(), _crafted(), _crafted()
    second.SOPInstanceUID = "1.2.826.0.1.3680043.10.1.999"
    _run(first)
    _run(second)
    _run(elsewhere, keys=OTHER_TRIAL)
    assert first.StudyInstanceUID == second.StudyInstanceUID != elsewhere.StudyInstanceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID


def test_date_shift_preserves_intervals():
    baseline, week_6 = "20240301", "20240412"
    days = -400
    shifted = [datetime.datetime.strptime(shift_date(v, days=days), "%Y%m%d") for v in (baseline, week_6)]
    assert (shifted[1] - shifted[0]).days == 42
    assert shift_date("20240301", days=-1) == "20240229"  # leap day


def test_date_shift_keeps_times_offsets_and_precision():
    assert shift_date("101500.123", days=30) == "101500.123"  # TM unchanged
    assert shift_date("101500", days=30, vr="TM") == "101500"
    assert shift_date("20240301101500.5-0500", days=1) == "20240302101500.5-0500"
    assert shift_date("202403", days=31, vr="DT") == "202404"
    assert shift_date("2024", days=-1, vr="DT") == "2023"
    assert shift_date("", days=5) == ""
    for bad in ("2024-03-01", "20241301", "20240301xx"):
        with pytest.raises(ValueError):
            shift_date(bad, days=1, vr="DA")


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_an_unparsable_date_falls_back_to_the_basic_action():
    ds = _crafted()
    ds.ContentDate = "2024.03.02"  # the retired ACR-NEMA form: no defined shift
    _run(ds, Profile(options=frozenset({"retain_longitudinal_modified_dates"})))
    assert ds.ContentDate == "19000101"


# ---- private attributes -----------------------------------------------------------------------------

def _with_private() -> Dataset:
    ds = _with_phi("CT_small.dcm")
    for tag in [t for t in ds.keys() if t >> 16 & 1]:
        del ds[tag]
    block = ds.private_block(0x0009, CREATOR, create=True)
    block.add_new(0x10, "LO", "kept reconstruction note")
    block.add_new(0x11, "LO", "Doe^Jane")
    other = ds.private_block(0x0009, "SOMEONE ELSE", create=True)
    other.add_new(0x10, "LO", "same offset, other creator")
    item = Dataset()
    item.private_block(0x0011, CREATOR, create=True).add_new(0x10, "LO", "nested kept")
    item.private_block(0x0011, "SOMEONE ELSE", create=True).add_new(0x12, "LO", "nested removed")
    ds.ReferencedImageSequence = [item]
    return ds


def test_private_attributes_are_removed_by_default():
    ds = _with_private()
    report = _run(ds)
    assert not [t for t in ds.keys() if t >> 16 & 1]
    assert not [t for t in ds.ReferencedImageSequence[0].keys() if t >> 16 & 1]
    assert report.removed_private == 9  # 4 creators and 5 elements


def test_safe_private_keeps_only_allowlisted_creator_and_element():
    ds = _with_private()
    profile = Profile(options=frozenset({"retain_safe_private"}), safe_private=frozenset({(CREATOR, 0x10)}))
    _run(ds, profile)
    assert ds.private_block(0x0009, CREATOR)[0x10].value == "kept reconstruction note"
    assert 0x00091111 not in ds  # same creator, element not allowed
    assert not [t for t in ds.keys() if t >> 16 == 0x0009 and ds[t].value in ("SOMEONE ELSE",)]
    assert len([t for t in ds.keys() if t >> 16 & 1]) == 2  # one creator, one element
    item = ds.ReferencedImageSequence[0]
    assert [item[t].value for t in item.keys() if t >> 16 & 1] == [CREATOR, "nested kept"]
    assert verify(ds, profile=profile, subject_code=SUBJECT) == []


def test_profile_refuses_inconsistent_settings():
    with pytest.raises(ValueError, match="unknown"):
        Profile(options=frozenset({"retain_everything"}))
    with pytest.raises(ValueError, match="exclusive"):
        Profile(options=frozenset({"retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"}))
    with pytest.raises(ValueError, match="retain_safe_private"):
        Profile(safe_private=frozenset({(CREATOR, 0x10)}))
    with pytest.raises(ValueError, match="16 bytes"):
        Keys(uid_key=b"short", date_shift_days=0)
    with pytest.raises(ValueError, match="subject code"):
        deidentify(_crafted(), profile=BASIC, keys=KEYS, subject_code="A\\B")


# ---- verification ----------------------------------------------------------------------------------

def test_verify_passes_clean_output_and_finds_planted_leftovers():
    ds = _crafted()
    forbidden = identifying_strings(ds)
    assert {"Doe^Jane", "Doe", "Jane", "MRN-55501", "ACC-9931", "19610704", "Roe"} <= forbidden
    profile = Profile(options=frozenset({"clean_descriptors"}))
    _run(ds, profile)
    assert verify(ds, profile=profile, subject_code=SUBJECT, forbidden=forbidden) == []

    ds.ReferencedImageSequence[0].OtherPatientIDs = "NHS-4471"  # X
    ds.ImageComments = "follow-up for jane doe"  # C under Clean Descriptors, but not cleaned
    ds.StudyDate = "20240301"  # Z
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.10.1.8"  # U
    ds.add_new(0x00291010, "LO", "private leftover")
    ds.PatientID = "MRN-55501"
    problems = verify(ds, profile=profile, subject_code=SUBJECT, forbidden=forbidden)
    joined = "\n".join(problems)
    assert "ReferencedImageSequence[0] > (0010,1000) OtherPatientIDs: present, action X" in joined
    assert "(0020,4000) ImageComments: holds identifying text" in joined
    assert "(0008,0020) StudyDate: not empty, action Z" in joined
    assert "(0020,0052) FrameOfReferenceUID: UID not mapped" in joined
    assert "(0029,1010)" in joined and "(0010,0020) PatientID: not the subject code" in joined


def test_verify_wants_the_marks():
    ds = _crafted()
    _run(ds)
    del ds.DeidentificationMethodCodeSequence
    assert "lacks 113100" in "\n".join(verify(ds, profile=BASIC, subject_code=SUBJECT))


# ---- clean pixel data --------------------------------------------------------------------------------

PIXELS = Profile(options=frozenset({"clean_pixel_data"}))


def test_clean_pixel_data_blanks_the_box_in_native_pixels():
    ds = _with_phi("CT_small.dcm")
    before = ds.pixel_array.copy()
    _run(ds, PIXELS, pixel_boxes=[(10, 20, 30, 5)])
    after = ds.pixel_array
    assert (after[20:25, 10:40] == 0).all()
    after[20:25, 10:40] = before[20:25, 10:40]
    assert (after == before).all()
    assert "113101" in [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the sample's own UIDs
def test_clean_pixel_data_blanks_every_frame_and_every_plane():
    dose = _with_phi("rtdose.dcm")  # 15 native frames
    _run(dose, PIXELS, pixel_boxes=[(0, 0, 3, 2)])
    assert (dose.pixel_array[:, 0:2, 0:3] == 0).all() and dose.pixel_array[:, 5:, 5:].any()
    rgb = _with_phi("examples_rgb_color.dcm")
    _run(rgb, PIXELS, pixel_boxes=[(100, 50, 20, 10), (-5, -5, 10, 10)])  # a box may overhang the edge
    assert (rgb.pixel_array[50:60, 100:120, :] == 0).all() and (rgb.pixel_array[0:5, 0:5, :] == 0).all()


def test_clean_pixel_data_decodes_what_is_installed():
    ds = _with_phi("MR_small_RLE.dcm")
    _run(ds, PIXELS, pixel_boxes=[(0, 0, 8, 8)])
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.pixel_array[0:8, 0:8] == 0).all() and ds.pixel_array[8:, 8:].any()


def test_clean_pixel_data_refuses_what_it_cannot_decode():
    candidates = ["JPEG-LL.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEGLSNearLossless_08.dcm"]
    undecodable = [name for name in candidates
                   if not get_decoder(pydicom.dcmread(get_testdata_file(name)).file_meta.TransferSyntaxUID).is_available]
    # the pinned dependencies carry no JPEG Lossless (process 14) decoder (highdicom brought one for JPEG-LS);
    # if one is added, pick another undecodable sample
    assert undecodable, "every candidate transfer syntax now has a decoder: choose another sample"
    ds = _with_phi(undecodable[0])
    with pytest.raises(PixelDataError, match="no decoder is installed for it"):
        _run(ds, PIXELS, pixel_boxes=[(0, 0, 8, 8)])


def test_clean_pixel_data_needs_boxes_and_boxes_need_the_option():
    with pytest.raises(ValueError, match="pixel_boxes"):
        _run(_with_phi("CT_small.dcm"), PIXELS)
    with pytest.raises(ValueError, match="pixel_boxes"):
        _run(_with_phi("CT_small.dcm"), BASIC, pixel_boxes=[])
    with pytest.raises(ValueError, match="positive size"):
        _run(_with_phi("CT_small.dcm"), PIXELS, pixel_boxes=[(0, 0, 0, 4)])


def test_overlays_go_under_basic_and_are_blanked_under_clean_graphics():
    basic = _with_phi("examples_overlay.dcm")
    _run(basic)
    assert not [t for t in basic.keys() if t >> 16 == 0x6000]
    ds = _with_phi("examples_overlay.dcm")
    before = ds.overlay_array(0x6000).copy()
    assert before[30:50, 410:440].any()  # the overlay's text in the top right corner
    _run(ds, Profile(options=frozenset({"clean_pixel_data", "clean_graphics"})), pixel_boxes=[(410, 30, 30, 20)])
    after = ds.overlay_array(0x6000)
    assert not after[30:50, 410:440].any()
    after[30:50, 410:440] = before[30:50, 410:440]
    assert (after == before).all() and after.any()


# ---- dciodvfy: the engine adds no IOD error -----------------------------------------------------------

def _iod_errors(path: Path) -> Counter:
    """dciodvfy's error lines, values left out: UIDs and names change by design."""
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy not found: install Debian's dicom3tools (it belongs in the Makefile's TEST_DEBS)")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
    return Counter(re.sub(r"\b\d+(\.\d+)*\b", "N", re.sub(r" = <.*", "", line)) for line in lines)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # rtdose.dcm's own UIDs
@pytest.mark.parametrize("name", [
    "CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "examples_overlay.dcm",
    "examples_rgb_color.dcm", "rtdose.dcm", "waveform_ecg.dcm", "test-SR.dcm",
])
@pytest.mark.parametrize("profile", [BASIC, RICH], ids=["basic", "rich"])
def test_deidentified_output_has_no_new_iod_errors(name, profile, tmp_path):
    ds = _with_phi(name)
    source = tmp_path / "in.dcm"
    ds.save_as(source, enforce_file_format=True)
    forbidden = identifying_strings(ds)
    _run(ds, profile)
    out = tmp_path / "out.dcm"
    ds.save_as(out, enforce_file_format=True)
    assert verify(ds, profile=profile, subject_code=SUBJECT, forbidden=forbidden) == []
    new = _iod_errors(out) - _iod_errors(source)
    assert not new, f"{name}: new dciodvfy errors {sorted(new)}"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
def test_cleaned_pixel_data_has_no_new_iod_errors(name, tmp_path):
    ds = _with_phi(name)
    source = tmp_path / "in.dcm"
    ds.save_as(source, enforce_file_format=True)
    _run(ds, Profile(options=RICH.options | {"clean_pixel_data"}), pixel_boxes=[(0, 0, 16, 8)])
    out = tmp_path / "out.dcm"
    ds.save_as(out, enforce_file_format=True)
    new = _iod_errors(out) - _iod_errors(source)
    assert not new, f"{name}: new dciodvfy errors {sorted(new)}"
