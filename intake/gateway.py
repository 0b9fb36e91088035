"""The DICOM C-STORE door of intake: a pynetdicom SCP whose instances are filed through ``instances_receive``.

Sites push from their PACS or modality to our AE title (``CORELAB`` unless told otherwise) on port 11112.
The calling AE title, and the source address when one is registered, names the site (``GatewayPeer``):
any other sender is refused at association (A-ASSOCIATE-RJ, "calling AE title not recognised"), before
a single byte of image data arrives. One association is one Submission, opened with its first instance
and closed when the association ends, however it ends (release, abort, dropped connection).

The called AE title must be ours, so a sender set up for another destination learns it at once. Every
storage SOP class is accepted in every transfer syntax that carries its pixel data (all but JPIP), and
the data set is kept exactly as it arrived: compressed pixel data stays compressed, nothing is decoded
here. The bytes go, behind File Meta Information built from the C-STORE request, into the spool
(``intake.spool``, on local disk), and the C-STORE is answered as soon as they are there: a filer
(``intake.filer``) files the spool in batches, in another process, so the sender never waits for parsing,
hashing, matching or the database. The records exist a moment later; the Submission of the association
holds every file's outcome (stored, already held, or refused and why) and the unassigned inbox every
study that matched no subject or visit.
Statuses (PS3.4 B.2.3, PS3.7 C): 0x0000 once the instance is safely in the spool; 0xA700 out of resources
when the spool's disk or, for the first instance, the database cannot take it (the sender retries later)
or the instance is over INTAKE_MAX_FILE_BYTES; 0xC211 for anything unexpected (logged with its
traceback). Failures carry the reason in Error Comment (64 characters). A file the trial's rules refuse
(not DICOM, truncated, a patient of another site, a site not qualified for the procedure, a SOP Instance
UID already received with other content) has been answered 0x0000 by then: the refusal and its reason
are in the Submission's results, which the site sees, and nothing of it stays stored.

Throughput: one Python process keeps one core busy at most, so ``serve(processes=N)`` forks N workers
that share one listening socket, and as many filer processes, each filing its share of the associations. A worker accepts a connection only while no other worker has fewer
associations, so concurrent senders spread evenly over the cores (SO_REUSEPORT would hash connections
to processes whatever their load, and four associations would land 3 and 1, or 4 and 0, more often than
not). TCP_NODELAY is set on every connection: DICOM answers each C-STORE before the next one is sent,
which is the pattern Nagle's algorithm stalls (about 45 ms per instance).
"""

import ipaddress
import logging
import os
import signal
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, connections
from pydicom.dataset import Dataset
from pydicom.uid import AllTransferSyntaxes
from pynetdicom import (
    AE,
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    AllStoragePresentationContexts,
    _config,
    evt,
)
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from .filer import Filer
from .models import GatewayPeer, Submission
from .selectors import gateway_peer_for
from .services import file_refuse, submission_open
from .spool import Spool
from .store_response import install as install_store_response

log = logging.getLogger(__name__)

DEFAULT_AE_TITLE = "CORELAB"
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 11112
DEFAULT_PROCESSES = 2
# Large PDUs mean fewer of them per instance, and most of pynetdicom's cost is per PDU, not per byte:
# 16 KB PDUs (a common default) halve the rate of 0.5 MB instances compared with these.
MAX_PDU_BYTES = 1 << 20
MAX_ASSOCIATIONS = 16  # per process; one more is refused as transient (local limit exceeded)
STOP_GRACE_SECONDS = 5.0  # on shutdown, associations get this long to finish before they are aborted
LISTEN_BACKLOG = 64
# Every transfer syntax pydicom knows, compressed ones included, except JPIP: its pixel data stays on
# the sender's server, and an image whose pixels we do not hold cannot be de-identified or read.
TRANSFER_SYNTAXES = [uid for uid in AllTransferSyntaxes if "JPIP" not in uid.name]

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_UNABLE_TO_PROCESS = 0xC211  # what pynetdicom itself answers when a handler raises

# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4
REJECT_UNKNOWN_CALLING_AE = (0x01, 0x01, 0x03)  # permanent, service user, calling AE title not recognised
REJECT_BUSY = (0x02, 0x03, 0x02)  # transient, service provider, local limit exceeded
REJECT_UNAVAILABLE = (0x02, 0x03, 0x01)  # transient, service provider, temporary congestion


@dataclass
class _Session:
    """What one association knows about itself; only the thread that runs the association touches it."""

    address: str
    calling_ae: str = ""
    peer: GatewayPeer | None = None
    submission: Submission | None = None
    received: int = 0
    outcomes: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)


def _peer_address(raw: str) -> str:
    """The sender's address as the peer registry writes it (IPv4-mapped IPv6 reads as IPv4)."""
    try:
        address = ipaddress.ip_address(raw.split("%")[0])
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def _element(group_element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element of the File Meta Information (short-length VRs and OB)."""
    tag = struct.pack("<HH", group_element >> 16, group_element & 0xFFFF)
    if vr == b"OB":
        return tag + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def _text(value: str, *, pad: bytes) -> bytes:
    data = value.encode("ascii")
    return data + pad if len(data) % 2 else data


def part10_header(*, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae: str) -> bytes:
    """Preamble, ``DICM`` and File Meta Information (PS3.10 7.1) for a received data set, encoded directly.

    The same bytes pydicom's writer produces for these elements, at a small fraction of its cost: the
    receiving processes write one of these per instance, and on two cores every millisecond counts.
    """
    elements = b"".join([
        _element(0x00020001, b"OB", b"\x00\x01"),
        _element(0x00020002, b"UI", _text(sop_class_uid, pad=b"\x00")),
        _element(0x00020003, b"UI", _text(sop_instance_uid, pad=b"\x00")),
        _element(0x00020010, b"UI", _text(transfer_syntax_uid, pad=b"\x00")),
        _element(0x00020012, b"UI", _text(PYNETDICOM_IMPLEMENTATION_UID, pad=b"\x00")),
        _element(0x00020013, b"SH", _text(PYNETDICOM_IMPLEMENTATION_VERSION, pad=b" ")),
        *([_element(0x00020016, b"AE", _text(source_ae, pad=b" "))] if source_ae else []),
    ])
    return b"\x00" * 128 + b"DICM" + _element(0x00020000, b"UL", struct.pack("<I", len(elements))) + elements


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    # Error Comment is an LO: 64 characters of the default repertoire
    text = comment.encode("ascii", "replace").decode()
    status.ErrorComment = text if len(text) <= 64 else text[:61] + "..."
    return status


class Gateway:
    """One pynetdicom association server in this process: ``start()`` serves, ``stop()`` ends it.

    ``listener`` is an already listening socket to serve instead of binding ``host:port`` (the
    workers of ``serve`` share one); ``load`` and ``slot`` are the shared association counts of those
    workers and this one's place among them. ``spool`` is where instances wait to be filed
    (``INTAKE_SPOOL_DIR`` unless given); with ``filer`` (the default) a thread of this process files it,
    and ``stop()`` returns only once everything received is filed; ``serve`` runs its filer as a process.
    """

    def __init__(self, *, ae_title: str = DEFAULT_AE_TITLE, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 listener: socket.socket | None = None, load=None, slot: int = 0, spool: Spool | None = None,
                 filer: bool = True):
        self.ae_title = ae_title
        self.spool = spool or Spool(settings.INTAKE_SPOOL_DIR)
        self.filer = Filer(spool=self.spool) if filer else None
        self.filer_stop = threading.Event()
        self.filer_thread: threading.Thread | None = None
        self.address = (host, port)
        self.listener = listener
        self.load = load
        self.slot = slot
        self.live: set[Association] = set()
        self.lock = threading.Lock()
        self.who = f"worker {slot}: " if load is not None else ""  # which worker logs a line
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None
        self.port = port  # the port actually bound, once started (port 0 picks a free one)

    def start(self) -> "Gateway":
        """Bind (or adopt the listener) and serve in a background thread; raises OSError if the port is taken."""
        # pynetdicom's standard handlers format a debug line for every PDU even when nobody logs them
        _config.LOG_HANDLER_LEVEL = "none"
        install_store_response()  # the same response bytes, without a millisecond of pydicom per instance
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = MAX_PDU_BYTES
        ae.require_called_aet = True
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self.server = _Server(ae, self.address, self.ae_title, ae.supported_contexts, request_handler=_Handler,
                              gateway=self)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name=f"dicom-gateway-{self.port}", daemon=True)
        self.thread.start()
        if self.filer is not None:
            self.filer_thread = threading.Thread(target=self.filer.run, args=(self.filer_stop,),
                                                 name=f"dicom-filer-{self.port}", daemon=True)
            self.filer_thread.start()
        return self

    def stop(self, *, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop accepting, let running associations finish for ``grace`` seconds, abort the rest.

        Returns once every association has ended and, with a filer of its own, everything received is
        filed and every Submission closed.
        """
        if self.server is None:
            return
        self.server.stop_accepting()
        self.thread.join()
        if not self.wait_idle(grace):
            with self.lock:
                remaining = list(self.live)
            for assoc in remaining:
                # the sender sees an abort and sends again later; an instance being filed is filed first
                assoc.abort()
            self.wait_idle(None)
        self.server.server_close()
        self.server = None
        if self.filer_thread is not None:
            self.filer_stop.set()
            self.filer_thread.join()
            self.filer_thread = None
            close_old_connections()
            if not self.filer.drain():
                log.warning("%sstopped with instances still in the spool at %s: they are filed at the next start",
                            self.who, self.spool.root)
            connection.close()

    def wait_filed(self, timeout: float = 60.0) -> bool:
        """Wait until the filer has filed everything received and closed every ended Submission."""
        deadline = time.monotonic() + timeout
        while self.spool.pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no association is running (each one's Submission closed); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.live:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # -- load sharing between workers ------------------------------------------------------------------

    def may_accept(self) -> bool:
        """True unless another worker of the same listener has fewer associations than this one."""
        if self.load is None:
            return True
        counts = self.load[:]
        return counts[self.slot] <= min(counts)

    def load_change(self, delta: int) -> None:
        """Count a connection this worker took (+1, at accept, before it looks for the next one) or ended."""
        if self.load is not None:
            with self.load.get_lock():
                self.load[self.slot] += delta

    def _count(self, assoc: Association, delta: int) -> None:
        with self.lock:
            if delta > 0:
                self.live.add(assoc)
            else:
                self.live.discard(assoc)

    # -- the association, in its own thread ------------------------------------------------------------

    def run_association(self, *, handler: "_Handler") -> None:
        """Serve one connection from association request to close, then close its Submission."""
        session = _Session(address=_peer_address(str(handler.client_address[0])))
        assoc = handler._create_association()
        assoc.bind(evt.EVT_REQUESTED, self._on_requested, [session])
        assoc.bind(evt.EVT_C_STORE, self._on_store, [session])
        self._count(assoc, +1)
        try:
            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": handler.client_address})
            # The reactor runs in this connection's thread rather than in a thread of its own, so that
            # every database call of the association happens in one thread, whose connection is closed
            # below however the association ended.
            assoc.run()
        finally:
            try:
                self._finish(session=session, assoc=assoc)
            finally:
                connection.close()
                self._count(assoc, -1)  # last: stop() takes an empty set to mean every Submission is closed

    def _on_requested(self, event, session: _Session) -> None:
        assoc = event.assoc
        session.calling_ae = str(assoc.requestor.primitive.calling_ae_title or "").strip()
        threading.current_thread().name = f"association-{session.calling_ae or '?'}"
        close_old_connections()
        try:
            session.peer = gateway_peer_for(ae_title=session.calling_ae, address=session.address)
        except DatabaseError:
            log.warning("%srefused an association from %s at %s for now: the database is unavailable",
                        self.who, session.calling_ae, session.address)
            connection.close()
            self._reject(assoc, REJECT_UNAVAILABLE)
            return
        if session.peer is None:
            log.warning("%srefused an association from %s at %s: calling AE title not registered (or not from "
                        "this address)", self.who, session.calling_ae or "(empty AE title)", session.address)
            self._reject(assoc, REJECT_UNKNOWN_CALLING_AE)
            return
        if len(self.live) > MAX_ASSOCIATIONS:
            log.warning("%srefused an association from %s at %s for now: %d associations already running",
                        self.who, session.calling_ae, session.address, len(self.live) - 1)
            session.peer = None
            self._reject(assoc, REJECT_BUSY)

    @staticmethod
    def _reject(assoc: Association, reason: tuple[int, int, int]) -> None:
        assoc.acse.send_reject(*reason)
        # as pynetdicom does after its own rejections: wait until the A-ASSOCIATE-RJ has gone out and the
        # peer has closed, or the connection is shut before the sender learns why
        assoc.kill()

    def _on_store(self, event, session: _Session) -> int | Dataset:
        session.received += 1
        name = f"C-STORE {session.received}"  # never the SOP Instance UID: identifiers are not kept in clear
        if session.peer is None:  # not reachable through negotiation; refuse rather than file anonymously
            return _status(STATUS_OUT_OF_RESOURCES, "association not registered")
        try:
            if session.submission is None:
                session.submission = submission_open(
                    actor=None, site=session.peer.site, channel=Submission.Channel.DICOM,
                    calling_ae=session.calling_ae, remote_address=session.address)
            data = event.encoded_dataset(include_meta=False)
            if len(data) > settings.INTAKE_MAX_FILE_BYTES:
                reason = f"over the {settings.INTAKE_MAX_FILE_BYTES} byte limit for one instance"
                file_refuse(submission=session.submission, name=name, reason=reason)
                session.outcomes["refused"] += 1
                return _status(STATUS_OUT_OF_RESOURCES, reason)
            # SOP class and instance from the request, transfer syntax as negotiated
            header = part10_header(sop_class_uid=str(event.request.AffectedSOPClassUID),
                                   sop_instance_uid=str(event.request.AffectedSOPInstanceUID),
                                   transfer_syntax_uid=str(event.context.transfer_syntax),
                                   source_ae=session.calling_ae)
            self.spool.put(submission_id=session.submission.pk, sequence=session.received, chunks=[header, data])
        except DatabaseError:
            log.warning("%s%s from %s: database unavailable, answered out of resources", self.who, name,
                        session.calling_ae, exc_info=True)
            session.outcomes["failed"] += 1
            connection.close()  # a broken connection is not reused: the next instance connects afresh
            return _status(STATUS_OUT_OF_RESOURCES, "database unavailable; send again later")
        except OSError:
            log.warning("%s%s from %s: spool unavailable, answered out of resources", self.who, name,
                        session.calling_ae, exc_info=True)
            session.outcomes["failed"] += 1
            return _status(STATUS_OUT_OF_RESOURCES, "storage unavailable; send again later")
        except Exception:
            log.exception("%s%s from %s: unexpected failure while receiving", self.who, name, session.calling_ae)
            session.outcomes["failed"] += 1
            return _status(STATUS_UNABLE_TO_PROCESS, "unexpected failure while receiving; logged for the lab")
        session.outcomes["spooled"] += 1
        return STATUS_SUCCESS

    def _finish(self, *, session: _Session, assoc: Association) -> None:
        if session.peer is None:
            return  # refused at association: nothing was opened, the refusal is already logged
        if session.submission is not None:
            try:
                # the filer closes the Submission once it has filed every instance of the association
                self.spool.close(session.submission.pk)
            except OSError:
                log.error("%ssubmission %s from %s could not be marked ended in the spool; it stays open",
                          self.who, session.submission.pk, session.calling_ae, exc_info=True)
        how = "released" if assoc.is_released else "aborted" if assoc.is_aborted else "closed"
        outcomes = session.outcomes
        log.info("%sassociation from %s (site %s) at %s %s after %.1f s: %d instances, %d spooled for filing, "
                 "%d refused, %d failed%s", self.who, session.calling_ae, session.peer.site.number,
                 session.address, how, time.monotonic() - session.started, session.received, outcomes["spooled"],
                 outcomes["refused"], outcomes["failed"],
                 f", submission {session.submission.pk}" if session.submission else "")


class _Handler(RequestHandler):
    """One TCP connection: no Nagle delay, then the whole association in this thread."""

    server: "_Server"

    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.gateway.run_association(handler=self)


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded server, able to adopt a shared listener and to leave connections to idler workers."""

    daemon_threads = False  # an association that is still running keeps the process until it ends
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, *args, gateway: Gateway, **kwargs):
        self.gateway = gateway
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        if self.gateway.listener is None:
            super().server_bind()
        else:
            self.socket.close()
            self.socket = self.gateway.listener
            self.server_address = self.socket.getsockname()
        # several workers may wake for one connection: the ones that lose the race must not block in accept
        self.socket.setblocking(False)

    def get_request(self) -> tuple[socket.socket, tuple]:
        if not self.gateway.may_accept():
            time.sleep(0.002)  # a worker with fewer associations will take it; do not spin on the poll
            raise BlockingIOError("left to a less busy worker")
        client, address = self.socket.accept()
        # counted now, not when its thread starts: four senders connecting at once would otherwise all
        # find this worker as idle as the other and land three and one
        self.gateway.load_change(+1)
        client.setblocking(True)  # as pynetdicom's own accepted sockets: blocking, no timeout
        return client, address

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.gateway.load_change(-1)

    def stop_accepting(self) -> None:
        """End serve_forever; the listener and the running associations stay until server_close."""
        # not AssociationServer.shutdown: that one also closes the socket and expects the AE's own bookkeeping
        socketserver.BaseServer.shutdown(self)

    def server_close(self) -> None:
        if self.gateway.listener is None:
            super().server_close()
        else:
            # shared with the other workers: shutting it down, as pynetdicom does, would stop theirs too
            self.socket.close()


# -- the command: one process, or a supervisor and N workers ---------------------------------------------

def _listen(*, host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # inherited by every accepted connection; each handler sets it again all the same
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    listener.listen(LISTEN_BACKLOG)
    return listener


def _stop_event() -> threading.Event:
    """An event set by SIGINT or SIGTERM (call in the main thread)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _worker(*, ae_title: str, listener: socket.socket, load, slot: int) -> None:
    stop = _stop_event()
    supervisor = os.getppid()
    gateway = Gateway(ae_title=ae_title, listener=listener, load=load, slot=slot, filer=False).start()
    while not stop.wait(1.0):
        if os.getppid() != supervisor:  # the supervisor was killed outright: do not serve on unsupervised
            break
    gateway.stop()


def _filer_worker(*, share: tuple[int, int]) -> None:
    stop = _stop_event()
    supervisor = os.getppid()

    def watch() -> None:  # the supervisor was killed outright: do not file on unsupervised
        while not stop.wait(1.0):
            if os.getppid() != supervisor:
                stop.set()

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
    filer = Filer(spool=Spool(settings.INTAKE_SPOOL_DIR), who=f"filer {share[0]}: ", share=share)
    filer.run(stop)
    # the receivers stopped first: file what they left, for as long as the supervisor waits
    if not filer.drain(timeout=STOP_GRACE_SECONDS):
        log.warning("filer: stopped with instances still in the spool; they are filed at the next start")


def serve(*, ae_title: str = DEFAULT_AE_TITLE, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          processes: int = DEFAULT_PROCESSES) -> int:
    """Run the gateway until SIGINT or SIGTERM; returns the exit status. Raises OSError if the port is taken.

    With ``processes`` > 1 this process binds the port and supervises that many workers (forked, each a
    ``Gateway`` on the shared socket) and as many filers: a process that dies is replaced, unless it dies
    within seconds of starting, which stops everything with status 1. What an earlier run left in the
    spool is filed first (files half-written when it was killed, never acknowledged, are removed).
    """
    stop = _stop_event()
    spool = Spool(settings.INTAKE_SPOOL_DIR)
    if discarded := spool.discard_partials():
        log.warning("removed %d partly received instances an earlier run left in the spool", discarded)
    # our own line per association says more than pynetdicom's accepted/released pair
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    if processes <= 1:
        gateway = Gateway(ae_title=ae_title, host=host, port=port).start()
        log.info("DICOM gateway %s listening on %s:%d (1 process)", ae_title, host, gateway.port)
        stop.wait()
        log.info("DICOM gateway stopping")
        gateway.stop()
        return 0

    import multiprocessing

    listener = _listen(host=host, port=port)
    context = multiprocessing.get_context("fork")
    load = context.Array("i", processes)
    connections.close_all()  # a forked worker must never share the supervisor's database connection

    filers = range(processes, 2 * processes)  # the filers' slots, after the receivers': one per receiver

    def spawn(slot: int):
        if slot in filers:
            process = context.Process(target=_filer_worker, name=f"dicom-gateway-filer-{slot - processes}",
                                      kwargs={"share": (slot - processes, processes)})
        else:
            load[slot] = 0
            process = context.Process(target=_worker, name=f"dicom-gateway-{slot}",
                                      kwargs={"ae_title": ae_title, "listener": listener, "load": load,
                                              "slot": slot})
        process.start()
        return process, time.monotonic()

    workers = {slot: spawn(slot) for slot in range(2 * processes)}
    log.info("DICOM gateway %s listening on %s:%d (%d receiving and %d filing processes)", ae_title, host, port,
             processes, processes)
    status = 0
    while not stop.wait(0.5):
        for slot, (process, started) in list(workers.items()):
            if process.is_alive():
                continue
            if time.monotonic() - started < 10:
                log.error("gateway worker %d exited with status %s right after starting; stopping", slot,
                          process.exitcode)
                status = 1
                stop.set()
                break
            log.warning("gateway worker %d exited with status %s; starting another", slot, process.exitcode)
            workers[slot] = spawn(slot)
    log.info("DICOM gateway stopping")
    # receivers first, so the filer files what their last associations spooled
    order = [workers[slot] for slot in range(processes)], [workers[slot] for slot in filers]
    for group in order:
        for process, _ in group:
            if process.is_alive():
                process.terminate()
        for process, _ in group:
            process.join(STOP_GRACE_SECONDS + 10)
            if process.is_alive():
                process.kill()
                process.join()
    listener.close()
    return status
