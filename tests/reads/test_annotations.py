"""Measurements drawn in the viewer, stored with the read: each target lesion's geometry (de-identified
study/series/SOP instance UIDs, frame, points in image pixels, tool, mm) lives in ``lesions["annotations"]``,
is validated by reads.services (its shape, and that the image is one of the timepoint's archived images),
saved and reloaded with the draft, covered by the signature, and never shown to the other reader.

Malformed geometry is refused before any image is looked up, so those cases run on timepoints accepted
without images; well-formed measurements are drawn on real archived, de-identified CTs (test_sr's fixtures)."""

import copy
import html as html_lib
import json
import re
from types import SimpleNamespace

import pytest

from audit.models import ElectronicSignature
from audit.signatures import content_sha256
from reads.exceptions import InvalidAssessment
from reads.models import Read
from reads.services import read_preview, read_save_draft, read_sign, read_signed_content, task_open

from ..qc.conftest import make_study, ready_site, stores  # noqa: F401  (QC's fixtures, for test_sr's ctx)
from .conftest import BASELINE, PASSWORD, followup, read_and_sign, task_of
from .test_sr import archive_week6, ctx  # noqa: F401  (a subject with real archived CTs)
from .test_views import BASELINE_POST, followup_post

pytestmark = pytest.mark.django_db

STUDY, SERIES = "2.25.1234567890123456789", "2.25.1234567890123456789.2"
T1 = {"study_uid": STUDY, "series_uid": SERIES, "sop_uid": "2.25.1234567890123456789.2.3", "frame": 1,
      "tool": "length", "points": [[100.5, 120.0], [160.25, 150.0]], "long_mm": 30.0}
T2_NODE = {"study_uid": STUDY, "series_uid": SERIES, "sop_uid": "2.25.1234567890123456789.2.4", "frame": 1,
           "tool": "bidirectional", "points": [[10, 10], [50, 10], [30, 2], [30, 18]], "long_mm": 20, "short_mm": 8}


def baseline_with(**annotations) -> dict:
    lesions = copy.deepcopy(BASELINE)
    lesions["annotations"] = annotations
    return lesions


@pytest.fixture
def subject(reading, enroll, accept):
    subject = enroll("101-0001")
    for timepoint in ("BL", "W6"):
        accept(subject, timepoint)
    return subject


@pytest.fixture
def bl_task(subject):
    task = task_of(subject, "BL", "A")
    task_open(task=task, user=task.reader.user)
    return task


def on(geometry: dict, record) -> dict:
    """The geometry drawn on an archived image (its de-identified UIDs)."""
    return {**geometry, "study_uid": record.study_uid, "series_uid": record.series_uid, "sop_uid": record.sop_uid}


@pytest.fixture
def archived(ctx, tmp_path, qc_analyst, django_capture_on_commit_callbacks):  # noqa: F811
    """Subject 101-0001 with real archived CTs at baseline and week 6; T1 and T2 drawn on baseline slices."""
    w6 = archive_week6(ctx, folder=tmp_path / "w6", qc=qc_analyst, capture=django_capture_on_commit_callbacks)
    bl = ctx["records"]
    return SimpleNamespace(subject=ctx["subject"], bl=bl, w6=w6, t1=on(T1, bl[1]), t2=on(T2_NODE, bl[3]))


@pytest.fixture
def real_bl_task(archived):
    task = task_of(archived.subject, "BL", "A")
    task_open(task=task, user=task.reader.user)
    return task


# -- the service: what a well-formed measurement is ---------------------------------------------------------

def test_a_draft_keeps_each_lesions_geometry_as_given(real_bl_task, archived):
    lesions = baseline_with(T1=archived.t1, T2=archived.t2)
    read_save_draft(task=real_bl_task, user=real_bl_task.reader.user, lesions=lesions)

    saved = Read.objects.get(task=real_bl_task, status=Read.Status.DRAFT).lesions
    assert saved["annotations"] == {"T1": archived.t1, "T2": archived.t2}
    assert saved["targets"] == BASELINE["targets"]  # the RECIST lesions are untouched


def test_annotations_do_not_change_the_computed_responses(bl_task):
    user = bl_task.reader.user
    with_geometry, _ = read_preview(task=bl_task, user=user, lesions=baseline_with(T1=T1))
    without, _ = read_preview(task=bl_task, user=user, lesions=copy.deepcopy(BASELINE))
    assert with_geometry == without


BAD = [
    ("not an object", "annotations must be an object keyed by target lesion id"),
    ({"T9": T1}, "the measurement of T9 belongs to no measured target lesion of this read"),
    ({"NT1": T1}, "the measurement of NT1 belongs to no measured target lesion"),
    ({"T1": [1, 2]}, "the measurement of T1 is malformed: it must be an object"),
    ({"T1": {**T1, "colour": "red"}}, "unknown field(s) colour"),
    ({"T1": {**T1, "study_uid": "1.2.abc"}}, "study_uid must be a DICOM UID"),
    ({"T1": {**T1, "series_uid": "1." + "2" * 70}}, "series_uid must be a DICOM UID"),
    ({"T1": {k: v for k, v in T1.items() if k != "sop_uid"}}, "sop_uid must be a DICOM UID"),
    ({"T1": {**T1, "frame": 0}}, "frame must be a frame number from 1"),
    ({"T1": {**T1, "frame": "1"}}, "frame must be a frame number from 1"),
    ({"T1": {**T1, "frame": True}}, "frame must be a frame number from 1"),
    ({"T1": {**T1, "tool": "angle"}}, "tool must be length or bidirectional"),
    ({"T1": {**T1, "points": [[1, 2]]}}, "a length measurement has 2 points, each [column, row] in image pixels"),
    ({"T1": {**T1, "points": [[1, 2], [3, "4"]]}}, "a length measurement has 2 points"),
    ({"T1": {**T1, "points": [[1, 2], [3, 4, 5]]}}, "a length measurement has 2 points"),
    ({"T1": {**T1, "points": [[1, 2], [3, float("nan")]]}}, "a length measurement has 2 points"),
    ({"T1": {**T1, "points": [[1, 2], [3, 1e9]]}}, "a length measurement has 2 points"),
    ({"T2": {**T2_NODE, "points": T1["points"]}}, "a bidirectional measurement has 4 points"),
    ({"T1": {**T1, "long_mm": 0}}, "long_mm must be above 0 and at most 1000 mm"),
    ({"T1": {**T1, "long_mm": 1200}}, "long_mm must be above 0 and at most 1000 mm"),
    ({"T1": {**T1, "long_mm": "30"}}, "long_mm must be above 0"),
    ({"T1": {**T1, "short_mm": 5}}, "a length measurement has no short axis"),
    ({"T2": {k: v for k, v in T2_NODE.items() if k != "short_mm"}}, "short_mm must be above 0 and at most the long"),
    ({"T2": {**T2_NODE, "short_mm": 25}}, "short_mm must be above 0 and at most the long axis"),
]


@pytest.mark.parametrize("annotations, message", BAD)
def test_malformed_geometry_is_refused_with_the_reason(bl_task, annotations, message):
    lesions = copy.deepcopy(BASELINE)
    lesions["annotations"] = annotations

    with pytest.raises(InvalidAssessment) as exc:
        read_save_draft(task=bl_task, user=bl_task.reader.user, lesions=lesions)

    assert message in str(exc.value)
    assert not Read.objects.filter(task=bl_task).exists()  # nothing saved


DISAGREE = [
    (baseline_with(T1={**T1, "long_mm": 28.4}),
     "T1: the diameter 30 mm is not the 28.4 mm measured in the viewer"),
    ({**baseline_with(T2=T2_NODE), "targets": [BASELINE["targets"][0], {**BASELINE["targets"][1], "mm": 8,
                                                                        "nodal": True, "long_axis_mm": 21,
                                                                        "short_axis_mm": 8}]},
     "T2: the long axis 21 mm is not the 20 mm measured in the viewer"),
]


@pytest.mark.parametrize("lesions, message", DISAGREE)
def test_a_diameter_that_is_not_its_viewer_measurement_is_refused(bl_task, lesions, message):
    # the signed values and the measurement report made from the geometry would disagree
    with pytest.raises(InvalidAssessment) as exc:
        read_save_draft(task=bl_task, user=bl_task.reader.user, lesions=lesions)

    assert str(exc.value).startswith(message)
    assert str(exc.value).endswith("measure again, or record the value without the viewer measurement")
    assert not Read.objects.filter(task=bl_task).exists()


def test_two_lesions_of_one_id_with_a_measurement_are_a_clear_error(real_bl_task, archived):
    lesions = baseline_with(T1=archived.t1)
    lesions["targets"] = [BASELINE["targets"][0], BASELINE["targets"][0]]

    read_save_draft(task=real_bl_task, user=real_bl_task.reader.user, lesions=lesions)  # a draft may be unfinished
    with pytest.raises(InvalidAssessment, match="lesion id 'T1' is used twice"):  # what signing would say
        read_preview(task=real_bl_task, user=real_bl_task.reader.user, lesions=lesions)


def test_a_follow_up_diameter_must_be_one_of_its_measurements_axes(archived):
    subject = archived.subject
    read_and_sign(subject, "BL", "A", baseline_with(T1=archived.t1))
    w6 = task_of(subject, "W6", "A")
    task_open(task=w6, user=w6.reader.user)
    node = on({**T2_NODE, "long_mm": 18.0, "short_mm": 9.5}, archived.w6[2])

    with pytest.raises(InvalidAssessment, match=r"^T1: the diameter 17 mm is not the 18.0 mm × 9.5 mm measured"):
        read_save_draft(task=w6, user=w6.reader.user, lesions={**followup(17, 12), "annotations": {"T1": node}})
    for either in (18, 9.5, 9.54):  # the long or the short axis (a node's), to the viewer's 0.1 mm
        read_save_draft(task=w6, user=w6.reader.user, lesions={**followup(either, 12), "annotations": {"T1": node}})
    assert Read.objects.get(task=w6).lesions["targets"]["T1"] == 9.54


def test_a_follow_up_measurement_must_belong_to_a_measured_lesion(archived):
    subject = archived.subject
    read_and_sign(subject, "BL", "A", baseline_with(T1=archived.t1))
    w6 = task_of(subject, "W6", "A")
    task_open(task=w6, user=w6.reader.user)
    on_w6 = on({**T1, "long_mm": 18.0}, archived.w6[2])
    ok = {**followup(18, 12), "annotations": {"T1": on_w6}}
    read_save_draft(task=w6, user=w6.reader.user, lesions=ok)
    assert Read.objects.get(task=w6).lesions["annotations"]["T1"]["long_mm"] == 18.0

    absent = {**followup("ABSENT", 12), "annotations": {"T1": on_w6}}
    with pytest.raises(InvalidAssessment, match="T1 belongs to no measured target lesion"):
        read_save_draft(task=w6, user=w6.reader.user, lesions=absent)
    # the baseline's image is not this timepoint's: measure the lesion again at week 6
    on_baseline = {**followup(18, 12), "annotations": {"T1": {**archived.t1, "long_mm": 18.0}}}
    with pytest.raises(InvalidAssessment, match="the measurement of T1 is not on an image of this timepoint"):
        read_save_draft(task=w6, user=w6.reader.user, lesions=on_baseline)


def test_a_measurement_on_an_image_not_archived_is_refused_with_the_lesion(real_bl_task):
    with pytest.raises(InvalidAssessment) as exc:
        read_save_draft(task=real_bl_task, user=real_bl_task.reader.user, lesions=baseline_with(T1=T1))

    assert str(exc.value) == ("the measurement of T1 is not on an image of this timepoint (Baseline): "
                              "measure it again on this timepoint's images")
    assert not Read.objects.filter(task=real_bl_task).exists()


def test_the_signature_covers_the_geometry(real_bl_task, archived):
    user = real_bl_task.reader.user
    read_save_draft(task=real_bl_task, user=user, lesions=baseline_with(T1=archived.t1))
    read = read_sign(task=real_bl_task, user=user, password=PASSWORD)

    content = read_signed_content(read=read)
    assert content["lesions"]["annotations"]["T1"] == archived.t1
    signature = ElectronicSignature.objects.get()
    assert signature.content_sha256 == content_sha256(content)
    moved = copy.deepcopy(content)
    moved["lesions"]["annotations"]["T1"]["points"][0] = [101.5, 120.0]  # one pixel off
    assert signature.content_sha256 != content_sha256(moved)


# -- the read form: hidden fields in, hidden fields out -----------------------------------------------------

def attribute(html: str, pattern: str) -> dict | str:
    """The JSON in the first attribute matching ``pattern`` (a regex with one group), unescaped and parsed."""
    found = re.search(pattern, html)
    assert found, pattern
    raw = html_lib.unescape(found.group(1))
    return json.loads(raw) if raw else ""


@pytest.fixture
def reader1_client(client, reader1):
    client.force_login(reader1)
    return client


def test_the_form_saves_the_viewers_geometry_and_shows_it_again(reader1_client, real_bl_task, archived):
    bl_task, t1 = real_bl_task, archived.t1
    post = {**BASELINE_POST, "t-0-annotation": json.dumps(t1)}
    response = reader1_client.post(f"/reads/tasks/{bl_task.pk}/draft", post)
    assert response.status_code == 302

    assert Read.objects.get(task=bl_task).lesions["annotations"] == {"T1": t1}
    html = reader1_client.get(f"/reads/tasks/{bl_task.pk}").content.decode()
    assert attribute(html, r'name="t-0-annotation" value="([^"]*)"') == t1
    assert attribute(html, r'name="t-1-annotation" value="([^"]*)"') == ""
    assert 'data-measure-lesion="row-0" data-measure-tool="length"' in html


def test_an_unreadable_or_malformed_measurement_from_the_form_is_a_clear_error(reader1_client, bl_task):
    response = reader1_client.post(f"/reads/tasks/{bl_task.pk}/draft", {**BASELINE_POST, "t-0-annotation": "{oops"})
    assert response.status_code == 400
    assert "Target 1: the measurement drawn in the viewer is unreadable; measure it again" in response.content.decode()

    bad = {**T1, "frame": -3}
    response = reader1_client.post(f"/reads/tasks/{bl_task.pk}/draft",
                                   {**BASELINE_POST, "t-0-annotation": json.dumps(bad)})
    assert response.status_code == 400
    assert "Not saved: the measurement of T1 is malformed: frame must be a frame number from 1" in (
        response.content.decode())
    assert not Read.objects.filter(task=bl_task).exists()


def test_a_follow_up_offers_go_to_baseline_from_the_readers_own_signed_baseline(reader1_client, archived):
    subject, t1 = archived.subject, archived.t1
    read_and_sign(subject, "BL", "A", baseline_with(T1=t1))
    w6 = task_of(subject, "W6", "A")
    task_open(task=w6, user=w6.reader.user)
    on_w6 = on({**t1, "long_mm": 18.0}, archived.w6[2])
    post = {**followup_post(), "fu-T1-annotation": json.dumps(on_w6)}
    assert reader1_client.post(f"/reads/tasks/{w6.pk}/draft", post).status_code == 302

    html = reader1_client.get(f"/reads/tasks/{w6.pk}").content.decode()
    assert attribute(html, r'data-goto-baseline="([^"]*)" data-label="T1"') == t1
    assert attribute(html, r'name="fu-T1-annotation" value="([^"]*)"') == on_w6
    assert 'data-goto-baseline' not in html.split('name="fu-T2-annotation"')[1].split("</tr>")[0]  # T2: none
    assert Read.objects.get(task=w6).lesions["annotations"] == {"T1": on_w6}


# -- blinding ----------------------------------------------------------------------------------------------

def test_the_other_reader_never_sees_a_readers_measurements(client, reader2, archived):
    subject, t1 = archived.subject, archived.t1
    read_and_sign(subject, "BL", "A", baseline_with(T1=t1))
    read_and_sign(subject, "BL", "B", copy.deepcopy(BASELINE))
    w6_b = task_of(subject, "W6", "B")
    task_open(task=w6_b, user=reader2)
    client.force_login(reader2)

    for task in (task_of(subject, "BL", "B"), w6_b):
        html = client.get(f"/reads/tasks/{task.pk}").content.decode()
        assert t1["sop_uid"] not in html and "data-goto-baseline" not in html
    assert client.get(f"/reads/tasks/{task_of(subject, 'BL', 'A').pk}").status_code == 404


def test_a_signed_read_shows_its_measurements_locked_in_the_viewer(reader1_client, archived):
    subject, t1 = archived.subject, archived.t1
    read_and_sign(subject, "BL", "A", baseline_with(T1=t1))
    task = task_of(subject, "BL", "A")

    html = reader1_client.get(f"/reads/tasks/{task.pk}").content.decode()
    assert attribute(html, r'data-annotation-lesion="T1" data-label="T1" data-locked value="([^"]*)"') == t1
    correcting = reader1_client.get(f"/reads/tasks/{task.pk}?correct=1").content.decode()
    assert "data-locked" not in correcting  # the correction form carries them as editable fields instead
    assert attribute(correcting, r'name="t-0-annotation" value="([^"]*)"') == t1
