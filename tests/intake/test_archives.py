"""intake.uploads: bodies streamed to disk and .zip archives unpacked safely, one member at a time. No database."""

import io
import os
import stat
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from intake import uploads
from intake.uploads import ArchiveLimits, ArchiveRefused, TooLarge, archive_format, not_an_image, zip_members

LIMITS = ArchiveLimits(max_member_bytes=64 << 20, max_total_bytes=256 << 20, max_ratio=100, max_members=100)
DICOM_HEAD = b"\0" * 128 + b"DICM" + b"\2\0\0\0"


def _zip(path: Path, members: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _unpack(archive: Path, workdir: Path, limits: ArchiveLimits = LIMITS) -> list[tuple[str, bytes | None, str]]:
    """(name, bytes or None, reason) per member, read while each member's file still exists."""
    return [(m.name, m.path.read_bytes() if m.path else None, m.reason)
            for m in zip_members(archive=archive, workdir=workdir, limits=limits, label=archive.name)]


@pytest.fixture
def workdir(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def test_a_body_is_copied_in_chunks_and_refused_past_its_cap(tmp_path):
    reads = []

    class Source(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    dest = tmp_path / "body"
    assert uploads.stream_to_file(source=Source(b"x" * 3_000_000), dest=dest, limit=3_000_000) == 3_000_000
    assert set(reads) == {uploads.CHUNK}  # never "read everything"
    with pytest.raises(TooLarge):
        uploads.stream_to_file(source=io.BytesIO(b"x" * 3_000_001), dest=dest, limit=3_000_000)


@pytest.mark.parametrize(("name", "head", "kind"), [
    ("study.zip", b"PK\x03\x04rest", "zip"),
    ("no-extension", b"PK\x03\x04rest", "zip"),
    ("scans.tar.gz", b"\x1f\x8b\x08", "gzip"),
    ("scans.tar", b"\0" * 257 + b"ustar", "tar"),
    ("scans.7z", b"7z\xbc\xaf\x27\x1c", "7z"),
    ("inner.rar", b"", "rar"),
    ("IM0001", DICOM_HEAD, None),
    ("misnamed.zip", DICOM_HEAD, None),  # a DICOM file is never an archive, whatever it is called
    ("IM0001.dcm", b"\0" * 300, None),
])
def test_archives_are_recognised_by_signature_then_extension(name, head, kind):
    assert archive_format(name=name, head=head) == kind


@pytest.mark.parametrize(("name", "words"), [
    ("CD/DICOMDIR", "DICOMDIR"),
    ("__MACOSX/study/._IM0001", "macOS"),
    ("study/._IM0001", "macOS"),
    ("study/.DS_Store", "metadata"),
])
def test_folder_metadata_gets_its_own_reason(name, words):
    assert words in not_an_image(name)
    assert not_an_image("study/IM0001") is None


def test_members_come_one_at_a_time_and_are_removed_after_use(tmp_path, workdir):
    archive = _zip(tmp_path / "study.zip", {"DICOM/S1/IM0001": b"one", "DICOM/S1/IM0002": b"two",
                                            "DICOM/S1/": b""})
    seen = []
    for member in zip_members(archive=archive, workdir=workdir, limits=LIMITS, label="study.zip"):
        assert member.reason == "" and member.path.parent == workdir
        assert list(workdir.iterdir()) == [member.path]  # only the current member is on disk
        seen.append((member.name, member.path.read_bytes()))
    assert seen == [("study.zip/DICOM/S1/IM0001", b"one"), ("study.zip/DICOM/S1/IM0002", b"two")]
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("name", ["../evil.dcm", "a/../../evil.dcm", "/etc/evil.dcm", "C:/evil.dcm",
                                  "..\\evil.dcm"])
def test_paths_that_climb_out_are_refused_and_nothing_lands_outside(tmp_path, workdir, name):
    archive = _zip(tmp_path / "evil.zip", {name: b"payload", "ok.dcm": b"fine"})
    result = _unpack(archive, workdir)
    assert result[0][1] is None and "unsafe path" in result[0][2]
    assert result[1] == ("evil.zip/ok.dcm", b"fine", "")
    assert not (tmp_path / "evil.dcm").exists() and not Path("/etc/evil.dcm").exists()


def test_a_symbolic_link_member_is_not_followed(tmp_path, workdir):
    link = zipfile.ZipInfo("passwd")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
    [(_, data, reason)] = _unpack(tmp_path / "link.zip", workdir)
    assert data is None and "symbolic link" in reason


def test_nested_archives_are_refused_by_name_and_by_content(tmp_path, workdir):
    inner = _zip(tmp_path / "inner.zip", {"IM0001": b"x"}).read_bytes()
    archive = _zip(tmp_path / "outer.zip", {"inner.zip": inner, "disguised.dcm": inner, "more.tar.gz": b"\x1f\x8b"})
    result = _unpack(archive, workdir)
    assert [r[1] for r in result] == [None, None, None]
    assert all("nested archive" in r[2] for r in result)


def test_a_zip_bomb_member_is_refused_by_its_compression_ratio(tmp_path, workdir):
    archive = _zip(tmp_path / "bomb.zip", {"zeros.dcm": bytes(20 << 20), "ok.dcm": b"fine"})
    result = _unpack(archive, workdir)
    assert result[0][1] is None and "compression ratio" in result[0][2] and "zip bomb" in result[0][2]
    assert result[1][2] == ""


def test_small_members_may_compress_well(tmp_path, workdir):
    archive = _zip(tmp_path / "small.zip", {"report.txt": bytes(500_000)})
    assert _unpack(archive, workdir)[0][2] == ""


def test_an_archive_that_unpacks_too_large_is_refused_whole(tmp_path, workdir):
    archive = _zip(tmp_path / "big.zip", {"a.dcm": os.urandom(600_000), "b.dcm": os.urandom(600_000)},
                   compression=zipfile.ZIP_STORED)
    limits = ArchiveLimits(max_member_bytes=1 << 20, max_total_bytes=1 << 20, max_ratio=100, max_members=100)
    with pytest.raises(ArchiveRefused, match="unpacks to 1.1 MB; the limit is 1.0 MB"):
        zip_members(archive=archive, workdir=workdir, limits=limits, label="big.zip")
    assert list(workdir.iterdir()) == []


def test_a_member_over_the_file_size_limit_is_refused(tmp_path, workdir):
    archive = _zip(tmp_path / "big.zip", {"a.dcm": os.urandom(600_000), "b.dcm": b"small"},
                   compression=zipfile.ZIP_STORED)
    limits = ArchiveLimits(max_member_bytes=500_000, max_total_bytes=1 << 30, max_ratio=100, max_members=100)
    result = _unpack(archive, workdir, limits)
    assert result[0][1] is None and "files over 488.3 KB are refused" in result[0][2]
    assert result[1][1] == b"small"


def test_too_many_members_are_refused_before_the_directory_is_parsed(tmp_path, workdir, monkeypatch):
    archive = _zip(tmp_path / "many.zip", {f"IM{n:04d}": b"x" for n in range(12)})
    limits = ArchiveLimits(max_member_bytes=1 << 20, max_total_bytes=1 << 30, max_ratio=100, max_members=10)

    def no_parsing(*args, **kwargs):
        raise AssertionError("zipfile parsed a directory the end record had already ruled out")

    monkeypatch.setattr(uploads.zipfile, "ZipFile", no_parsing)
    with pytest.raises(ArchiveRefused, match="holds 12 entries; the limit is 10"):
        zip_members(archive=archive, workdir=workdir, limits=limits, label="many.zip")


def test_the_zip64_end_record_is_read_too(tmp_path):
    # more than 65,535 entries: the classic end record says 0xFFFF and the real count is in the zip64 record
    archive = tmp_path / "huge.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for n in range(65_600):
            zf.writestr(f"{n}", b"")
    entries, directory = uploads._declared_directory(archive)
    assert entries == 65_600 and directory > 0


def test_a_member_that_lies_about_its_size_is_refused(tmp_path, workdir):
    archive = _zip(tmp_path / "liar.zip", {"a.dcm": b"A" * 5000})
    data = bytearray(archive.read_bytes())
    directory = data.rfind(b"PK\x01\x02")
    struct.pack_into("<L", data, directory + 24, 100)  # the central directory claims 100 bytes
    archive.write_bytes(bytes(data))
    [(_, content, reason)] = _unpack(archive, workdir)
    assert content is None and "corrupt archive member" in reason


@pytest.mark.parametrize(("content", "words"), [
    (b"this is not a zip at all", "not a readable zip archive"),
    (b"PK\x05\x06" + bytes(18), "holds no files"),
])
def test_unreadable_and_empty_archives_are_refused_whole(tmp_path, workdir, content, words):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(content)
    with pytest.raises(ArchiveRefused, match=words):
        zip_members(archive=archive, workdir=workdir, limits=LIMITS, label="bad.zip")


def test_a_large_member_is_extracted_without_holding_it_in_memory(tmp_path, workdir):
    archive = _zip(tmp_path / "large.zip", {"big.dcm": os.urandom(48 << 20)})
    tracemalloc.start()
    try:
        for member in zip_members(archive=archive, workdir=workdir, limits=LIMITS, label="large.zip"):
            assert member.path.stat().st_size == 48 << 20
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak Python allocations {peak / 2**20:.1f} MB while extracting 48 MB"
