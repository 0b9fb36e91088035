"""The gateway's filer: files what the associations left in the spool, in batches, and closes their submissions.

It runs beside the receiving processes (a process of its own under ``manage.py dicom_gateway``, a thread
of an in-process ``Gateway``), so receiving and filing use different cores. Each batch is up to
``BATCH`` files of one submission in arrival order, filed by ``instances_receive`` (one transaction per
study) and removed from the spool once committed. A batch that fails on the database stays in the spool
and is tried again when the database is back; a file that fails on its own for any other reason is
refused with a reason (the Submission says so) and moved aside to ``<spool>/failed/`` for the lab to look
at, so one bad file never blocks the ones behind it.

A filer killed after a batch committed but before it removed the files files them again when it restarts:
they are then acknowledged as duplicates (same instance, same bytes), never stored twice.
"""

import logging
import shutil
import threading
import time
from pathlib import Path

from django.db import DatabaseError, close_old_connections, connection

from .models import Submission
from .services import file_refuse, instances_receive, submission_close
from .spool import Spool, Spooled

log = logging.getLogger(__name__)

BATCH = 64
IDLE_SECONDS = 0.05  # how long the filer sleeps when the spool is empty
RETRY_SECONDS = 2.0  # after a database failure


def _name(path: Path) -> str:
    return f"C-STORE {int(path.stem)}"  # the association's sequence number, never a UID


class Filer:
    """Files a spool; ``share=(k, n)`` makes it one of n filers, taking the submissions whose id is k mod n."""

    def __init__(self, *, spool: Spool, batch: int = BATCH, who: str = "", share: tuple[int, int] = (0, 1)):
        self.spool = spool
        self.batch = batch
        self.who = who
        self.share = share

    def file_once(self) -> int:
        """File every waiting file once and close ended submissions; returns how many files were filed."""
        filed = 0
        mine, filers = self.share
        for spooled in self.spool.pending():
            if spooled.submission_id % filers != mine:
                continue
            try:
                if spooled.files:
                    filed += self._file(spooled)
                elif spooled.closed and not self.spool.has_files(spooled.submission_id):
                    submission_close(submission=Submission(pk=spooled.submission_id))
                    self.spool.remove(spooled.submission_id)
            except Submission.DoesNotExist:
                # a spool from another database (restored, or pointed elsewhere): keep it aside, do not loop
                log.error("%sthe spool holds submission %s, which the database does not know; moved to the "
                          "spool's failed folder", self.who, spooled.submission_id)
                self._set_aside(self.spool.folder(spooled.submission_id), f"submission-{spooled.submission_id}")
        return filed

    def drain(self, *, timeout: float = 60.0) -> bool:
        """File until the spool is empty (every submission closed); False if it is not by ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.spool.pending():
            if time.monotonic() > deadline:
                return False
            if not self.file_once():
                time.sleep(IDLE_SECONDS)
        return True

    def run(self, stop: threading.Event) -> None:
        """File until ``stop`` is set; survives the database going away and coming back."""
        while not stop.is_set():
            close_old_connections()
            try:
                if not self.file_once():
                    stop.wait(IDLE_SECONDS)
            except DatabaseError:
                log.warning("%sfiling paused: database unavailable; the spool keeps the instances", self.who,
                            exc_info=True)
                connection.close()
                stop.wait(RETRY_SECONDS)
        connection.close()

    def _file(self, spooled: Spooled) -> int:
        submission = Submission.objects.select_related("trial", "site", "submitted_by", "qualification",
                                                       "subject", "visit").get(pk=spooled.submission_id)
        for start in range(0, len(spooled.files), self.batch):
            paths = spooled.files[start:start + self.batch]
            try:
                instances_receive(submission=submission, files=[(path, _name(path)) for path in paths])
            except DatabaseError:
                raise
            except Exception:
                # some file of the batch breaks filing: file them one by one to find it
                for path in paths:
                    self._file_alone(submission, path)
                continue
            for path in paths:
                path.unlink(missing_ok=True)
        return len(spooled.files)

    def _file_alone(self, submission: Submission, path: Path) -> None:
        if not path.exists():
            return  # filed on the way here
        try:
            instances_receive(submission=submission, files=[(path, _name(path))])
        except DatabaseError:
            raise
        except Exception:
            log.exception("%s%s of submission %s: unexpected failure while filing; moved to the spool's failed "
                          "folder", self.who, _name(path), submission.pk)
            self._set_aside(path, f"{submission.pk}-{path.name}")
            file_refuse(submission=submission, name=_name(path),
                        reason="unexpected failure while filing; kept for the lab to examine")
            return
        path.unlink(missing_ok=True)

    def _set_aside(self, path: Path, name: str) -> None:
        failed = self.spool.root / "failed"
        failed.mkdir(parents=True, exist_ok=True)
        shutil.move(path, failed / name)
