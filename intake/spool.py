"""The C-STORE gateway's spool: received instances wait here, on local disk, until they are filed.

An association answers each C-STORE as soon as the instance's bytes are in the spool, and a filer
(``intake.filer``) files them in batches: one transaction per study for a whole batch instead of two per
instance, and the network side never waits for the database. Parsing, hashing and matching happen in
the filer, so the receiving process does as little per instance as a bare DICOM receiver.

Layout, one folder per Submission (one association)::

    <root>/<submission id>/<sequence>.dcm   one received instance, Part 10, complete (written, then renamed)
    <root>/<submission id>/closed            the association has ended: close the submission once filed

A file is only ever visible under its final name once complete (``os.replace`` of a private temporary
file), so a filer never reads half an instance, and a gateway killed mid-write leaves only a temporary
file, which the next start removes. What is in the spool is also what a restarted filer files: nothing
answered as stored is lost when a process dies.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

CLOSED = "closed"
SUFFIX = ".dcm"
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class Spooled:
    """One submission's folder as the filer sees it: its waiting files in arrival order, and whether it ended."""

    submission_id: int
    files: list[Path]
    closed: bool


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.made: set[int] = set()  # submission folders this process has created (one mkdir, not one a file)

    def folder(self, submission_id: int) -> Path:
        return self.root / str(submission_id)

    def put(self, *, submission_id: int, sequence: int, chunks: list[bytes]) -> Path:
        """Write one instance (its byte chunks, in order) under its sequence number; visible only when whole."""
        folder = self.folder(submission_id)
        if submission_id not in self.made:
            folder.mkdir(parents=True, exist_ok=True)
            self.made.add(submission_id)
        final = folder / f"{sequence:09d}{SUFFIX}"
        partial = folder / f"{PARTIAL_PREFIX}{sequence:09d}"
        try:
            try:
                stream = partial.open("wb")
            except FileNotFoundError:  # the folder went away since this process made it (a spool emptied by hand)
                folder.mkdir(parents=True, exist_ok=True)
                stream = partial.open("wb")
            with stream:
                for chunk in chunks:
                    stream.write(chunk)
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return final

    def close(self, submission_id: int) -> None:
        """Mark the association ended: the filer closes its submission once every file is filed."""
        folder = self.folder(submission_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CLOSED).touch()

    def pending(self) -> list[Spooled]:
        """Every submission with files waiting or still to be closed, oldest submission first."""
        found = []
        if not self.root.is_dir():
            return found
        for folder in self.root.iterdir():
            if not folder.is_dir() or not folder.name.isdigit():
                continue
            names = [entry.name for entry in os.scandir(folder)]
            files = sorted(folder / name for name in names if name.endswith(SUFFIX))
            found.append(Spooled(int(folder.name), files, CLOSED in names))
        return sorted(found, key=lambda spooled: spooled.submission_id)

    def has_files(self, submission_id: int) -> bool:
        """Whether any instance of the submission still waits (checked again before it is closed)."""
        return any(self.folder(submission_id).glob(f"*{SUFFIX}"))

    def remove(self, submission_id: int) -> None:
        """Forget a submission that is filed and closed."""
        shutil.rmtree(self.folder(submission_id), ignore_errors=True)
        self.made.discard(submission_id)

    def discard_partials(self) -> int:
        """Remove what a process killed mid-write left behind (never answered as stored); returns how many."""
        removed = 0
        if self.root.is_dir():
            for partial in self.root.glob(f"*/{PARTIAL_PREFIX}*"):
                partial.unlink(missing_ok=True)
                removed += 1
        return removed
