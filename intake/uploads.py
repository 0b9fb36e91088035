"""The web door's file handling: request bodies streamed to disk, .zip archives unpacked safely. No ORM.

Nothing is read whole into memory: a body is copied to a temp file in chunks under a byte cap, and an
archive's members are extracted one at a time, each to a fixed temp name (the member's own path is only a
label, so a hostile path can never choose where bytes land). Every check that refuses the whole archive
(unreadable, too many members, too large unpacked) runs before the first member is handed out, so a refused
archive leaves nothing filed; a member that fails its own checks is refused with a reason and the rest go on.
"""

import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
HEAD = 262  # enough to see every archive signature below, tar's at offset 257 included

# (offset, signature, format) of archive formats a site might send instead of, or inside, a .zip
SIGNATURES = [
    (0, b"PK\x03\x04", "zip"), (0, b"PK\x05\x06", "zip"), (0, b"\x1f\x8b", "gzip"), (0, b"BZh", "bzip2"),
    (0, b"\xfd7zXZ\x00", "xz"), (0, b"7z\xbc\xaf\x27\x1c", "7z"), (0, b"Rar!\x1a\x07", "rar"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"), (257, b"ustar", "tar"),
]
EXTENSIONS = {".zip": "zip", ".tar": "tar", ".tgz": "gzip", ".gz": "gzip", ".bz2": "bzip2", ".xz": "xz",
              ".7z": "7z", ".rar": "rar", ".zst": "zstd"}
# a ratio only matters when the output is large: small members (headers, reports) may compress very well
RATIO_EXEMPT_BYTES = 1 << 20


class TooLarge(ValueError):
    """More bytes arrived than the cap allows."""


class ArchiveRefused(ValueError):
    """The whole archive is refused before any member is filed; the message says why."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_member_bytes: int  # one unpacked member
    max_total_bytes: int  # all members unpacked
    max_ratio: int  # unpacked / packed, per member
    max_members: int


@dataclass(frozen=True)
class Member:
    """One archive member: ``path`` to its extracted bytes, or None and the ``reason`` it is refused."""

    name: str
    path: Path | None
    reason: str = ""


def human_size(size: int) -> str:
    """A byte count as people read it: '512 bytes', '38.4 KB', '1.1 GB' (binary units)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def clean_label(name: str) -> str:
    """A file name fit to show and record: forward slashes, no control characters, at most 255 characters."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", name.replace("\\", "/")).strip()
    return (name or "unnamed file")[-255:]


def stream_to_file(*, source, dest: Path, limit: int) -> int:
    """Copy ``source`` (anything with ``read(n)``) into ``dest`` in 1 MB chunks; returns the byte count.

    Raises TooLarge as soon as more than ``limit`` bytes have arrived (the partial file is the caller's to
    remove), so a body that lies about its length cannot fill the disk.
    """
    size = 0
    with dest.open("wb") as out:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"more than {human_size(limit)} arrived")
            out.write(chunk)
    return size


def read_head(path: Path) -> bytes:
    """The first bytes of a file, enough for ``archive_format``."""
    with path.open("rb") as stream:
        return stream.read(HEAD)


def archive_format(*, name: str, head: bytes) -> str | None:
    """'zip' or another archive format's name when the file is an archive, None for a plain file.

    Signatures decide before extensions; a DICOM Part 10 file (DICM at byte 128) is never an archive, whatever
    it is called.
    """
    if head[128:132] == b"DICM":
        return None
    for offset, signature, kind in SIGNATURES:
        if head[offset:offset + len(signature)] == signature:
            return kind
    return EXTENSIONS.get(Path(name.lower()).suffix)


def not_an_image(name: str) -> str | None:
    """Why a file that exports and operating systems add to folders is not filed, or None for any other file."""
    base = name.rsplit("/", 1)[-1]
    if base.upper() == "DICOMDIR":
        return "a DICOMDIR (the index of a DICOM disc), not an image: the images it lists are filed on their own"
    if "__MACOSX/" in f"{name}/" or base.startswith("._"):
        return "macOS metadata (AppleDouble) file, not an image"
    if base in (".DS_Store", "Thumbs.db", "desktop.ini"):
        return "operating-system folder metadata, not an image"
    return None


# -- zip archives -------------------------------------------------------------------------------------------

def _declared_directory(archive: Path) -> tuple[int, int]:
    """(member count, central directory bytes) as the end-of-archive record declares them.

    Read before zipfile parses anything: zipfile loads the whole central directory into memory, so an archive
    declaring millions of entries is refused here, by reading 64 KB.
    """
    size = archive.stat().st_size
    tail_length = min(size, 22 + 0xFFFF)
    with archive.open("rb") as stream:
        stream.seek(size - tail_length)
        tail = stream.read(tail_length)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            raise ArchiveRefused("not a readable zip archive (no end-of-archive record)")
        _, _, _, _, entries, directory_size, directory_offset, _ = struct.unpack("<4s4H2LH", tail[at:at + 22])
        locator = tail[at - 20:at] if at >= 20 else b""
        if (entries == 0xFFFF or directory_size == 0xFFFFFFFF or directory_offset == 0xFFFFFFFF) \
                and locator[:4] == b"PK\x06\x07":
            _, _, zip64_offset, _ = struct.unpack("<4sLQL", locator)
            stream.seek(zip64_offset)
            record = stream.read(56)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries, directory_size = struct.unpack("<QQ", record[32:48])
    return entries, directory_size


def _unsafe_path(name: str) -> bool:
    name = name.replace("\\", "/")
    return name.startswith("/") or bool(re.match(r"[A-Za-z]:", name)) or ".." in name.split("/") or "\x00" in name


def _member_refusal(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str | None:
    """Why a member is refused from what the central directory says, before a byte of it is extracted."""
    if _unsafe_path(info.filename):
        return "unsafe path in the archive (absolute, or climbing out with '..'): not extracted"
    if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link in the archive: not followed"
    if info.flag_bits & 0x1:
        return "encrypted archive member: send it unencrypted"
    kind = archive_format(name=info.filename, head=b"")
    if kind is not None:
        return f"nested archive ({kind}): unpack it and upload its files"
    if info.file_size > limits.max_member_bytes:
        return (f"the file unpacks to {human_size(info.file_size)}; files over "
                f"{human_size(limits.max_member_bytes)} are refused")
    if info.file_size > RATIO_EXEMPT_BYTES:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            return (f"compression ratio {ratio:.0f}:1 is over the limit of {limits.max_ratio}:1 "
                    "(a zip bomb?): not extracted")
    return None


def zip_members(*, archive: Path, workdir: Path, limits: ArchiveLimits, label: str) -> Iterator[Member]:
    """The members of a .zip one at a time, each extracted into ``workdir`` or refused with a reason.

    Raises ArchiveRefused at once (before returning the iterator) when the archive as a whole is refused. Each
    extracted file is removed when the caller asks for the next member; the caller must not keep it.
    """
    entries, directory_size = _declared_directory(archive)
    if entries > limits.max_members:
        raise ArchiveRefused(f"the archive holds {entries} entries; the limit is {limits.max_members}: "
                             "split it into several archives")
    if directory_size > max(16 << 20, limits.max_members * 1024):
        raise ArchiveRefused(f"the archive's table of contents is {human_size(directory_size)}: not a plausible "
                             "archive of images")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise ArchiveRefused(f"not a readable zip archive ({exc})") from None
    infos = [info for info in zf.infolist() if not info.is_dir()]
    total = sum(info.file_size for info in infos)
    refusal = None
    if not infos:
        refusal = "the archive holds no files"
    elif len(infos) > limits.max_members:
        refusal = f"the archive holds {len(infos)} files; the limit is {limits.max_members}"
    elif total > limits.max_total_bytes:
        refusal = (f"the archive unpacks to {human_size(total)}; the limit is {human_size(limits.max_total_bytes)}"
                   ": split it into several archives")
    if refusal:
        zf.close()
        raise ArchiveRefused(refusal)
    return _extract(zf=zf, infos=infos, workdir=workdir, limits=limits, label=label)


def _extract(*, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], workdir: Path, limits: ArchiveLimits,
             label: str) -> Iterator[Member]:
    with zf:
        for number, info in enumerate(infos):
            name = f"{label}/{clean_label(info.filename)}"
            reason = _member_refusal(info, limits)
            if reason:
                yield Member(name, None, reason)
                continue
            dest = workdir / f"member-{number}"
            try:
                reason = _extract_one(zf=zf, info=info, dest=dest, limits=limits)
                if reason is None:
                    kind = archive_format(name=info.filename, head=read_head(dest))
                    reason = f"nested archive ({kind}): unpack it and upload its files" if kind else None
                yield Member(name, None, reason) if reason else Member(name, dest)
            finally:
                dest.unlink(missing_ok=True)


def _extract_one(*, zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, limits: ArchiveLimits) -> str | None:
    """Extract one member to ``dest``, counting bytes as they come; a reason if it cannot be extracted whole."""
    cap = min(info.file_size, limits.max_member_bytes)
    written = 0
    try:
        with zf.open(info) as source, dest.open("wb") as out:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > cap:  # zipfile stops at the declared size; this is the second line of defence
                    return "the member unpacks to more than the archive declares (a zip bomb?): not extracted"
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        return f"corrupt archive member ({exc})"
    except NotImplementedError as exc:
        return f"archive member packed with an unsupported method ({exc}): use standard deflate"
    except RuntimeError as exc:  # zipfile's "encrypted, password required"
        return f"archive member cannot be read ({exc})"
    return None
