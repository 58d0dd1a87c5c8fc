"""The gunicorn worker class of the service (``worker_class`` in gunicorn.conf.py).

gunicorn's own workers each lack something this service needs (bench/README.md has the
measurements): sync and gthread workers give a request thread to a client before its request
has arrived, so a few clients that send their headers slowly stop the service; a gthread
worker keeps every kept-alive connection it accepted, so one of two workers can end up with
all of them; and every class queues health checks behind inference, and queues requests
without bound until clients time out.  This worker keeps gunicorn's signals, settings and arbiter
protocol, and handles connections its own way:

- **A buffering front.**  One event loop per worker owns every socket.  It reads each request,
  headers and body, without blocking (a slow client costs a connection, not a thread), hands
  it on only once it is complete, and sends the response without blocking (the application
  writes it to memory).  A request must arrive within REQUEST_READ_TIMEOUT of its first byte
  (else 408); one larger than MAX_UPLOAD_BYTES gets 413 before its body is read; the bytes
  one worker holds are bounded by MAX_BUFFERED_BYTES.
- **Two lanes.**  Requests that change nothing (GET, HEAD, OPTIONS: health, readiness,
  metrics, model listings) run on the event loop as soon as they are read, so they never
  wait behind inference.  Inference requests (every other method) run on ``threads`` request
  threads (WORKER_THREADS), except cheap ones (under 20 ms lately for their path and body size,
  a body under 1 MiB, at most 50 ms of them per round of I/O), which also run on the loop:
  passing them to a thread and back costs more than a small request takes.
- **Admission control.**  An inference request waits for a thread in a queue of at most
  MAX_QUEUED_REQUESTS, for at most MAX_QUEUE_WAIT seconds; one whose wait would be longer
  (predicted from the recent service time) is answered 503 with Retry-After at once, as is
  one that has waited that long (serving_shed_requests_total).
- **Balanced accepting.**  The workers publish their open connection counts in memory shared
  through the fork, and a worker accepts only while it holds no more connections than the
  least loaded live one, so kept-alive connections spread evenly over the workers.
- **One parse, one write.**  Each request's head is split once to frame it, then the complete
  request is checked by llhttp (httptools, in C) as it builds the WSGI environ, and the app's
  response is written out whole in one piece: gunicorn's pure-Python parser and Response cost
  more than a small request's inference.  gunicorn's limit_request_line/_fields/_field_size,
  keepalive and max_requests apply; its pre_request/post_request hooks and access log do not
  (the service logs each request itself), nor do TLS and X-Forwarded-Proto (url_scheme is http).
- **Drain.**  On SIGTERM readiness answers 503 at once (service.lifecycle); the connections
  already in the listen backlog are accepted and the listening socket is closed, so new
  connections are refused; requests already received are answered (``Connection: close``);
  a kept-alive connection idle for 2 s is closed; the worker exits when no connection is
  left, or at graceful_timeout.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import mmap
import os
import queue
import re
import selectors
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from functools import partial
from urllib.parse import unquote_to_bytes

import httptools
from gunicorn import SERVER_SOFTWARE
from gunicorn.workers import base, gthread

from service import lifecycle
from service.config import ServiceConfig
from service.logs import ACCEPTABLE_REQUEST_ID, new_request_id

access_log = logging.getLogger("service.access")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_SIZE = 1 << 20  # bytes asked of one recv(): a phone photo arrives in a few calls
MAX_HEAD = 64 * 1024  # request line and headers together
SWEEP_INTERVAL = 0.1  # seconds between two looks for expired deadlines
DRAIN_IDLE_LINGER = gthread.STOP_KEEPALIVE_LINGER  # a draining worker's idle keep-alive wait
CLOSE_LINGER = 2.0  # reading what a client still sends after a final response, then closing
WRITE_TIMEOUT = 30.0  # a client that reads none of its response for this long is dropped
PEER_STALE_NS = 250_000_000  # a worker whose loop has not run for 0.25 s is not waited for
BALANCE_RECHECK = 0.02  # seconds between two looks at the others while not accepting
SERVICE_TIME_WEIGHT = 0.2  # of the newest request in the moving average of service times
# A request whose path and body size took less CPU than this lately (and whose body is small)
# runs on the event loop itself: handing it to a thread and back would cost more than the request
# (the loop is held no longer than such a request takes, so health checks still wait for nothing).
# CPU time, not wall time: the same in every worker however busy the machine, so that workers
# make the same choice.
INLINE_COST = 0.02
INLINE_BODY = 1 << 20
# The loop runs such requests for at most this long per round of I/O; the rest of a burst waits
# for a thread, in the queue, where admission control applies.
INLINE_BUDGET = 0.05
TRACKED_KINDS = 1024  # (path, body size) pairs whose cost is remembered; others go to the threads


class ConnectionBoard:
    """Each worker's open connection count and heartbeat, in memory shared by all workers.

    It is created when this module is imported, in the gunicorn master (which loads the
    worker class before it forks), so every worker inherits the same anonymous shared
    mapping.  A worker writes only its own slot (its age modulo SLOTS: unique among live
    workers unless SLOTS workers are spawned while one lives) and reads the others.
    """

    SLOTS = 32

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, self.SLOTS * 3 * 8)
        cells = memoryview(self._memory).cast("q")
        self._pids, self._counts, self._beats = cells[0::3], cells[1::3], cells[2::3]

    def publish(self, slot: int, pid: int, connections: int) -> None:
        self._pids[slot] = pid
        self._counts[slot] = connections
        self._beats[slot] = time.monotonic_ns()

    def leave(self, slot: int) -> None:
        self._pids[slot] = 0

    def fewest_elsewhere(self, slot: int) -> int | None:
        """The fewest connections any other live worker holds; None when there is none."""
        fresh_since = time.monotonic_ns() - PEER_STALE_NS
        pids, counts, beats = self._pids.tolist(), self._counts.tolist(), self._beats.tolist()
        pids[slot] = 0
        return min((count for pid, count, beat in zip(pids, counts, beats) if pid and beat >= fresh_since),
                   default=None)


class Refused(ValueError):
    """A request the front answers from its head alone: unframeable, or beyond a limit."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason  # serving_refused_requests_total's label


_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


@dataclass(frozen=True)
class HeadLimits:
    """gunicorn's limit_request_line, limit_request_fields and limit_request_field_size (0: none)."""

    line: int
    fields: int
    field_size: int


@dataclass
class RequestHead:
    """What the front needs of a request's head: its lane, its length, how to answer it."""

    method: str
    path: str
    length: int  # of the head itself, blank line included
    content_length: int  # 0 for chunked (unknown) and for no body
    chunked: bool
    expects_continue: bool
    wants_close: bool
    request_id: str
    http10: bool

    @classmethod
    def parse(cls, head: bytes, limits: HeadLimits) -> RequestHead:
        request_line, *header_lines = head[:-4].split(b"\r\n")
        if limits.line and len(request_line) > limits.line:
            raise Refused(414, "headers_too_large",
                          f"the request line is {len(request_line)} bytes; the limit is {limits.line}")
        if len(header_lines) > limits.fields:
            raise Refused(431, "headers_too_large",
                          f"{len(header_lines)} header fields; the limit is {limits.fields}")
        parts = request_line.split(b" ")
        if len(parts) != 3:  # llhttp would take "GET /" for HTTP/0.9
            raise Refused(400, "bad_request", "the request line must be: method, a space, target, a space, HTTP/1.1")
        method, path, version = parts[0].decode("latin-1"), parts[1].split(b"?", 1)[0].decode("latin-1"), parts[2]
        lengths, codings, expect, connection, request_id = set(), [], b"", b"", ""
        for line in header_lines:
            if limits.field_size and len(line) > limits.field_size:
                raise Refused(431, "headers_too_large",
                              f"a header field is {len(line)} bytes; the limit is {limits.field_size}")
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length":
                lengths.add(value)
            elif name == b"transfer-encoding":
                codings += [coding.strip().lower() for coding in value.split(b",")]
            elif name == b"expect":
                expect = value.lower()
            elif name == b"connection":
                connection = value.lower()
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
        if codings and lengths:
            raise Refused(400, "bad_framing", "a request may carry Content-Length or Transfer-Encoding, not both")
        if codings and codings != [b"chunked"]:
            raise Refused(501, "bad_framing", "the only transfer coding accepted is chunked")
        if len(lengths) > 1 or (lengths and not next(iter(lengths)).isdigit()):
            raise Refused(400, "bad_framing", "Content-Length must be one decimal number")
        return cls(
            method=method,
            path=path,
            length=len(head),
            content_length=int(next(iter(lengths))) if lengths else 0,
            chunked=bool(codings),
            expects_continue=expect == b"100-continue" and version == b"HTTP/1.1",
            wants_close=b"close" in connection or (version == b"HTTP/1.0" and b"keep-alive" not in connection),
            request_id=request_id if ACCEPTABLE_REQUEST_ID.match(request_id) else "",
            http10=version == b"HTTP/1.0",
        )


class Request:
    """One complete request as llhttp (httptools, in C) reads it: its target, headers and body.

    The front's own parse (RequestHead) only frames requests; this one checks the syntax of
    all of it, as gunicorn's parser did, at a tenth of the cost.
    """

    __slots__ = ("target", "headers", "chunks")

    def __init__(self, data: bytes, head: RequestHead) -> None:
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []  # of a chunked body, decoded
        try:
            # A body of known length needs no parsing (and would be copied into on_body): the head only.
            httptools.HttpRequestParser(self).feed_data(data if head.chunked else memoryview(data)[:head.length])
        except httptools.HttpParserUpgrade:
            pass  # an offer to switch protocols (curl --http2 makes one): declined by answering in HTTP/1.1
        except httptools.HttpParserError as error:
            raise Refused(400, "bad_request", f"the request is not valid HTTP/1.1: {error}") from None

    # httptools' callbacks
    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)


def wsgi_environ(request: Request, data: bytes, head: RequestHead, client, server, base_environ: dict) -> dict:
    """The WSGI environ of a request, with the keys gunicorn's would have that matter here."""
    try:
        url = httptools.parse_url(request.target)
        path, query = url.path or b"", url.query or b""
    except httptools.HttpParserInvalidURLError:  # "*" (OPTIONS *)
        path, query = request.target, b""
    environ = base_environ.copy()
    environ["REQUEST_METHOD"] = head.method
    environ["RAW_URI"] = request.target.decode("latin-1")
    environ["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/1.0" if head.http10 else "HTTP/1.1"
    environ["wsgi.input"] = io.BytesIO(b"".join(request.chunks) if head.chunked else data[head.length:])
    if isinstance(client, tuple):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    else:  # a Unix socket's peer
        environ["REMOTE_ADDR"] = client.decode() if isinstance(client, bytes) else client
    if isinstance(server, tuple):
        environ["SERVER_NAME"], environ["SERVER_PORT"] = server[0], str(server[1])
    for name, value in request.headers:
        key = name.decode("latin-1").upper()
        if "_" in key:
            continue  # as gunicorn does: X_Forwarded_For must not pass for X-Forwarded-For
        key = key.replace("-", "_")
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            environ[key] = value.decode("latin-1")
            continue
        key = "HTTP_" + key
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    if not isinstance(server, tuple):  # a Unix socket: the name the client used
        host, _, port = environ.get("HTTP_HOST", "").partition(":")
        environ["SERVER_NAME"], environ["SERVER_PORT"] = host, port or ("80" if host else "")
    return environ


class Connection:
    """One client connection and where it is: reading, waiting for a thread, served, sending."""

    READING, WAITING, SERVING, SENDING, CLOSING = "reading", "waiting", "serving", "sending", "closing"

    def __init__(self, sock: socket.socket, client, server) -> None:
        self.sock = sock
        self.client = client
        self.server = server
        self.request: Request | None = None  # the complete request being served
        self.request_bytes = b""
        self.response = b""  # its answer, whole
        self.state = self.READING
        self.buffer = bytearray()
        self.head: RequestHead | None = None
        self.chunks_scanned = 0  # offset of the next chunk-size line of a chunked body
        self.reserved = 0  # bytes of the worker's buffer budget held by the current request
        self.skip = 0  # bytes still to come of a request answered before its body arrived
        self.deadline = 0.0  # when the current state expires (monotonic seconds)
        self.keepalive = False  # after the response being sent
        self.outgoing = memoryview(b"")
        self.events = 0  # what the poller waits for on this socket
        self.started = 0.0  # when the current request got its thread
        self.kind: tuple[str, int] = ("", 0)  # its path and body size class, for Lane.costs
        self.cpu_seconds = 0.0  # what serving it cost the thread that did

    def request_length(self, limit: int) -> int | None:
        """Bytes of the complete request at the front of the buffer, None while incomplete."""
        head = self.head
        if not head.chunked:
            total = head.length + head.content_length
            return total if len(self.buffer) >= total else None
        buffer = self.buffer
        position = max(self.chunks_scanned, head.length)
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size_text = bytes(buffer[position:line_end]).split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise Refused(400, "bad_framing", "invalid chunk size in a chunked body")
            size = int(size_text, 16)
            if size == 0:
                trailers_end = buffer.find(b"\r\n\r\n", line_end)
                return trailers_end + 4 if trailers_end >= 0 else None
            following = line_end + 2 + size + 2
            if following - head.length > limit:
                raise Refused(413, "too_large",
                              f"the request body is longer than that; the limit is {limit} bytes (MAX_UPLOAD_BYTES)")
            if len(buffer) < following:
                return None
            position = self.chunks_scanned = following


class Lane:
    """The inference requests of one worker: threads, a bounded queue, a bounded wait.

    ``serve(conn)`` runs on one of the threads; ``done(conn, keepalive)`` is called there
    after it, and must hand the result back to the event loop.
    """

    def __init__(self, threads: int, queue_limit: int, max_wait: float, serve, done) -> None:
        # Plain threads on a SimpleQueue: a thread pool's futures and callbacks cost more per
        # request than the smallest requests take.  Daemons: a stuck request cannot hold up
        # the worker's exit.
        self.tasks: queue.SimpleQueue[Connection | None] = queue.SimpleQueue()
        self.serve, self.done = serve, done
        for index in range(threads):
            threading.Thread(target=self.work, name=f"request-{index}", daemon=True).start()
        self.threads = threads
        self.queue_limit = queue_limit
        self.max_wait = max_wait
        self.running = 0
        self.waiting: deque[tuple[float, Connection]] = deque()
        self.service_time = 0.0  # moving average, seconds per request on a thread
        # Moving average per path and body size (a power of two), seconds, wherever it ran:
        # a small PNG and a phone photo to the same path are different requests.
        self.costs: dict[tuple[str, int], float] = {}

    def admits(self) -> bool:
        """Room for one more, and its wait for a thread predicted within max_wait."""
        if self.running < self.threads:
            return True
        predicted_wait = (len(self.waiting) + 1) * self.service_time / self.threads
        return len(self.waiting) < self.queue_limit and predicted_wait <= self.max_wait

    def record(self, kind: tuple[str, int], cpu_seconds: float, wall_seconds: float | None) -> None:
        """A request's CPU time (what it costs, however busy the machine) and, when it ran on a
        thread, its wall time there (what the requests behind it waited)."""
        if wall_seconds is not None:
            self.service_time += SERVICE_TIME_WEIGHT * (wall_seconds - self.service_time)
        cost = self.costs.get(kind)
        if cost is not None:
            self.costs[kind] = cost + SERVICE_TIME_WEIGHT * (cpu_seconds - cost)
        elif len(self.costs) < TRACKED_KINDS:
            self.costs[kind] = cpu_seconds

    def cheap(self, kind: tuple[str, int]) -> bool:
        # Unknown kinds go to a thread first: that is where an expensive one does no harm.
        return kind[1] < INLINE_BODY.bit_length() and self.costs.get(kind, INLINE_COST) < INLINE_COST

    def work(self) -> None:
        while (conn := self.tasks.get()) is not None:
            keepalive = False
            try:
                keepalive = self.serve(conn)
            except Exception:  # serve() answers what it can; the thread must live on regardless
                logging.getLogger(__name__).exception("request thread")
            self.done(conn, keepalive)

    def stop(self) -> None:
        for _ in range(self.threads):
            self.tasks.put(None)


class ServingWorker(gthread.ThreadWorker):
    board = ConnectionBoard()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.slot = self.age % ConnectionBoard.SLOTS
        self.connections: set[Connection] = set()
        self.buffered = 0  # bytes reserved by requests being read, waiting or running
        self.next_heartbeat = 0.0
        self.next_sweep = 0.0
        self.balance_checked = (-1, 0.0)  # connection count and time of the last look at the board
        self.inline_until = 0.0  # perf_counter time until which this round may run requests inline
        self.limit_reported = 0.0
        self.keep_connections = True  # False while this worker holds more connections than its share

    # --- start, heartbeat, signals ---

    def init_process(self) -> None:
        settings = ServiceConfig.from_env()
        self.max_body = settings.max_upload_bytes
        self.max_buffered = settings.max_buffered_bytes
        self.read_timeout = settings.request_read_timeout
        self.retry_after = settings.retry_after
        self.keepalive = self.cfg.keepalive
        cfg = self.cfg
        self.head_limits = HeadLimits(cfg.limit_request_line, cfg.limit_request_fields, cfg.limit_request_field_size)
        self.base_environ = {"wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
                             "wsgi.multithread": True, "wsgi.multiprocess": cfg.workers > 1, "wsgi.run_once": False,
                             "wsgi.input_terminated": True, "SERVER_SOFTWARE": SERVER_SOFTWARE, "SCRIPT_NAME": ""}
        self.lane = Lane(max(1, self.cfg.threads), settings.max_queued_requests, settings.max_queue_wait,
                         serve=self.serve,
                         done=lambda conn, keepalive: self.method_queue.defer(self.finished_in_lane, conn, keepalive))
        # Imported after the fork: prometheus_client's per-process files belong to the worker,
        # and the master stays free of Flask.
        from service import metrics
        from service.errors import speaks_v2

        self.metrics = metrics
        self.speaks_v2 = speaks_v2
        self.poller = selectors.DefaultSelector()
        self.method_queue.init()
        self.pid = os.getpid()
        base.Worker.init_process(self)  # loads the app, then calls run()

    def notify(self) -> None:
        # gunicorn's heartbeat is an os.utime() call; the arbiter needs one per `timeout`, not
        # one per loop iteration.
        now = time.monotonic()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + min(1.0, self.timeout / 4 if self.timeout else 1.0)
            super().notify()

    def handle_exit(self, sig, frame) -> None:
        # In the signal handler, so that no request served after SIGTERM can see "ready".
        lifecycle.begin_draining()
        super().handle_exit(sig, frame)

    def handle_quit(self, sig, frame) -> None:
        base.Worker.handle_quit(self, sig, frame)  # exits at once; the request threads are daemons

    # --- the event loop ---

    def run(self) -> None:
        self.poller.register(self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks)
        while self.alive:
            if time.monotonic() >= self.next_sweep:
                # Every SWEEP_INTERVAL, idle or not: the heartbeat on the board must stay fresher
                # than PEER_STALE_NS or the other workers stop waiting for this one.
                self.notify()
                self.publish()
                self.sweep()
                if not self.is_parent_alive():
                    break
            accepting = self.update_accepting()
            self.poll(SWEEP_INTERVAL if accepting else BALANCE_RECHECK)
        self.drain()

    def publish(self) -> None:
        if self.alive:
            self.board.publish(self.slot, self.pid, len(self.connections))

    def poll(self, timeout: float) -> None:
        try:
            events = self.poller.select(timeout)
        except InterruptedError:
            return
        self.inline_until = time.perf_counter() + INLINE_BUDGET
        for key, _ in events:
            key.data(key.fileobj)

    def update_accepting(self) -> bool:
        count, now = len(self.connections), time.monotonic()
        if count == self.balance_checked[0] and now < self.balance_checked[1] + BALANCE_RECHECK:
            return self._accepting  # nothing changed here, and the others were seen just now
        self.balance_checked = (count, now)
        fewest = self.board.fewest_elsewhere(self.slot)
        allowed = count < self.worker_connections and (fewest is None or count <= fewest)
        self.set_accept_enabled(allowed)
        # A worker that holds two or more connections more than another (they came before that
        # one started, or it lost some) answers with "Connection: close" until that is no longer
        # so: the clients reconnect, and the other worker accepts.
        self.keep_connections = fewest is None or count <= fewest + 1
        return allowed

    def accept(self, listener) -> None:
        try:
            sock, client = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as error:
            if error.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                raise
            now = time.monotonic()
            if now > self.limit_reported + 10:
                self.log.warning("cannot accept a connection: %s", error)
                self.limit_reported = now
            return
        self.add(sock, client, listener.getsockname())

    def add(self, sock: socket.socket, client, server) -> None:
        sock.setblocking(False)
        conn = Connection(sock, client, server)
        conn.on_readable = partial(self.on_readable, conn)
        self.connections.add(conn)
        self.publish()
        self.read_next_request(conn)

    def watch(self, conn: Connection, events: int, callback) -> None:
        if conn.events:  # selectors makes no system call when only the callback changes
            self.poller.modify(conn.sock, events, callback)
        else:
            self.poller.register(conn.sock, events, callback)
        conn.events = events

    def unwatch(self, conn: Connection) -> None:
        if conn.events:
            self.poller.unregister(conn.sock)
            conn.events = 0

    def close(self, conn: Connection) -> None:
        self.unwatch(conn)
        self.release(conn)
        self.connections.discard(conn)
        self.publish()
        try:
            conn.sock.close()
        except OSError:
            pass

    def release(self, conn: Connection) -> None:
        self.buffered -= conn.reserved
        conn.reserved = 0

    # --- reading requests ---

    def read_next_request(self, conn: Connection) -> None:
        self.release(conn)
        conn.state = Connection.READING
        conn.head, conn.chunks_scanned = None, 0
        if conn.skip:
            conn.deadline = time.monotonic() + self.read_timeout
        elif conn.buffer:  # the client sent its next request already (pipelining)
            conn.deadline = time.monotonic() + self.read_timeout
            self.advance(conn)
            if conn.state is not Connection.READING:
                return
        else:
            # An idle connection lives `keepalive` seconds (gunicorn's setting), then closes.
            idle = self.keepalive if self.alive else min(self.keepalive, DRAIN_IDLE_LINGER)
            conn.deadline = time.monotonic() + (idle or self.read_timeout)
        self.watch(conn, selectors.EVENT_READ, conn.on_readable)

    def on_readable(self, conn: Connection, _sock=None) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(conn)
            return
        if not data:  # the client closed the connection (idle, or giving up mid-request)
            self.close(conn)
            return
        if conn.skip:  # the rest of a body already answered 503: drop it
            dropped = min(conn.skip, len(data))
            conn.skip -= dropped
            data = data[dropped:]
            if not data:
                return
        if not conn.buffer:
            conn.deadline = time.monotonic() + self.read_timeout
        conn.buffer += data
        self.advance(conn)

    def advance(self, conn: Connection) -> None:
        """Parse what has arrived; hand a complete request on, or answer a hopeless one."""
        try:
            if conn.head is None:
                end = conn.buffer.find(b"\r\n\r\n", 0, MAX_HEAD)
                if end < 0:
                    if len(conn.buffer) >= MAX_HEAD:
                        self.refuse(conn, 431, "headers_too_large",
                                    f"the request line and headers are longer than {MAX_HEAD} bytes")
                    return
                conn.head = RequestHead.parse(bytes(conn.buffer[: end + 4]), self.head_limits)
                if self.early_answer(conn):
                    return
            length = conn.request_length(self.max_body)
        except Refused as error:
            self.refuse(conn, error.status, error.reason, str(error))
            return
        if length is not None:
            self.dispatch(conn, length)

    def early_answer(self, conn: Connection) -> bool:
        """Answer from the head alone when the body cannot help; 100 Continue when it can."""
        head = conn.head
        if head.content_length > self.max_body:
            self.refuse(conn, 413, "too_large", f"the request body is {head.content_length} bytes; "
                        f"the limit is {self.max_body} bytes (MAX_UPLOAD_BYTES)")
            return True
        # A chunked body's size is known only at its end: it reserves the largest allowed.
        need = head.length + (self.max_body if head.chunked else head.content_length)
        if self.buffered + need > self.max_buffered:
            self.shed(conn, "buffers_full", complete=False)
            return True
        conn.reserved = need
        self.buffered += need
        if not head.chunked and len(conn.buffer) >= head.length + head.content_length:
            return False  # complete already
        if head.method not in SAFE_METHODS and not self.lane.admits():
            # Not worth reading a photo only to refuse it: answer now, drop the body as it comes.
            self.shed(conn, "queue_full", complete=False)
            return True
        if head.expects_continue:
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass  # then the client sends its body after its own timeout
        return False

    def dispatch(self, conn: Connection, length: int) -> None:
        if length == len(conn.buffer):
            request = bytes(conn.buffer)
            conn.buffer.clear()
        else:
            request = bytes(conn.buffer[:length])
            del conn.buffer[:length]
        try:
            conn.request = Request(request, conn.head)
        except Refused as error:
            self.refuse(conn, error.status, error.reason, str(error))
            return
        conn.request_bytes = request
        # Requests served on the loop leave the socket watched: nothing polls until they are done.
        if conn.head.method in SAFE_METHODS:
            conn.state = Connection.SERVING
            conn.response, keepalive = self.respond(conn)
            self.send_response(conn, keepalive)
            return
        lane = self.lane
        conn.kind = (conn.head.path, length.bit_length())
        if lane.cheap(conn.kind) and time.perf_counter() < self.inline_until:
            conn.state = Connection.SERVING
            keepalive = self.serve(conn)
            lane.record(conn.kind, conn.cpu_seconds, wall_seconds=None)
            self.send_response(conn, keepalive)
        elif not lane.admits():
            self.shed(conn, "queue_full", complete=True)
        elif lane.running < lane.threads:
            self.unwatch(conn)
            self.start(conn)
        else:
            self.unwatch(conn)
            conn.state = Connection.WAITING
            lane.waiting.append((time.monotonic(), conn))

    # --- running requests ---

    def start(self, conn: Connection) -> None:
        conn.state = Connection.SERVING
        conn.started = time.monotonic()
        self.lane.running += 1
        self.lane.tasks.put(conn)

    def finished_in_lane(self, conn: Connection, keepalive: bool) -> None:
        lane = self.lane
        lane.running -= 1
        lane.record(conn.kind, conn.cpu_seconds, wall_seconds=time.monotonic() - conn.started)
        self.send_response(conn, keepalive)
        while lane.waiting and lane.running < lane.threads:
            _, waiting = lane.waiting.popleft()
            self.start(waiting)

    def serve(self, conn: Connection) -> bool:
        """Run one complete inference request through the app, and note its CPU time for Lane.costs;
        whether to keep the connection."""
        started = time.thread_time()
        conn.response = b""
        try:
            conn.response, keepalive = self.respond(conn)
            return keepalive
        finally:
            conn.cpu_seconds = time.thread_time() - started

    def respond(self, conn: Connection) -> tuple[bytes, bool]:
        """The app's whole response as bytes, and whether the connection stays open after it
        (gunicorn's rules: max_requests, keepalive, the client's wish; and the balance's)."""
        head = conn.head
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:  # gunicorn's max_requests
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        keepalive = self.alive and self.keepalive > 0 and self.keep_connections and not head.wants_close
        environ = wsgi_environ(conn.request, conn.request_bytes, head, conn.client, conn.server, self.base_environ)
        started, body = [], []

        def start_response(status, headers, exc_info=None):
            started[:] = (status, headers)
            return body.append

        try:
            chunks = self.wsgi(environ, start_response)
            try:
                body.extend(chunks)
            finally:
                if hasattr(chunks, "close"):
                    chunks.close()
            status, headers = started
        except Exception:
            self.log.exception("Error handling request %s", head.path)
            request_id = head.request_id or new_request_id()
            return error_response(500, "Internal Server Error", "internal_server_error", "Internal Server Error",
                                  request_id, keepalive=False), False
        payload = b"".join(body)
        lines = [f"HTTP/1.{0 if head.http10 else 1} {status}\r\nServer: gunicorn\r\nDate: {http_date()}\r\n"
                 f"Connection: {'keep-alive' if keepalive else 'close'}\r\n"]
        sized = False
        for name, value in headers:
            lines.append(f"{name}: {value}\r\n")
            sized = sized or name.lower() == "content-length"
        # The whole body is here, so its length is known: no chunked framing needed.
        if not sized and head.method != "HEAD" and status[:1] != "1" and status[:3] not in ("204", "304"):
            lines.append(f"Content-Length: {len(payload)}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1") + payload, keepalive

    # --- sending responses ---

    def send_response(self, conn: Connection, keepalive: bool) -> None:
        data, conn.response, conn.request, conn.request_bytes = conn.response, b"", None, b""
        self.send(conn, data, keepalive, linger=CLOSE_LINGER)

    def send(self, conn: Connection, data: bytes, keepalive: bool, linger: float) -> None:
        conn.state = Connection.SENDING
        conn.keepalive = keepalive  # what the response's Connection header said
        conn.outgoing = memoryview(data)
        conn.deadline = time.monotonic() + WRITE_TIMEOUT
        self.flush(conn, linger)

    def flush(self, conn: Connection, linger: float, _sock=None) -> None:
        while conn.outgoing:
            try:
                sent = conn.sock.send(conn.outgoing)
            except (BlockingIOError, InterruptedError):
                self.watch(conn, selectors.EVENT_WRITE, partial(self.flush, conn, linger))
                return
            except OSError:
                self.close(conn)
                return
            conn.outgoing = conn.outgoing[sent:]
        if conn.keepalive:
            self.read_next_request(conn)
        else:
            self.close_after_reading(conn, linger)

    def close_after_reading(self, conn: Connection, seconds: float) -> None:
        """Half-close, and read (and drop) what the client still sends before closing.

        Closing a socket with unread data makes the kernel reset the connection, which can
        destroy the response before the client has read it (RFC 9112 section 9.6).
        """
        conn.state = Connection.CLOSING
        conn.deadline = time.monotonic() + seconds
        self.release(conn)
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close(conn)
            return
        self.watch(conn, selectors.EVENT_READ, partial(self.drop_input, conn))

    def drop_input(self, conn: Connection, _sock=None) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close(conn)

    # --- the front's own answers ---

    def shed(self, conn: Connection, reason: str, complete: bool) -> None:
        self.metrics.SHED_REQUESTS.labels(reason=reason).inc()
        message = {"queue_full": "the server is at capacity",
                   "queue_wait": "the request waited too long for its turn",
                   "buffers_full": "the server holds too many request bodies"}[reason]
        self.answer(conn, 503, "overloaded", f"{message}; retry after {self.retry_after} s", complete,
                    {"Retry-After": str(self.retry_after)})

    def refuse(self, conn: Connection, status: int, reason: str, message: str) -> None:
        self.metrics.REFUSED_REQUESTS.labels(reason=reason).inc()
        self.answer(conn, status, _REASONS[status].lower().replace(" ", "_"), message, complete=False)

    def answer(self, conn: Connection, status: int, code: str, message: str, complete: bool,
               headers: dict | None = None) -> None:
        """A JSON error in the application's format, written by the front itself.

        The connection stays open when the request has been read, or its body can be skipped
        as it arrives, and neither side wants it closed; otherwise what the client still sends
        is read and dropped for as long as it may take to arrive, then the connection closes.
        """
        head = conn.head
        skippable = not complete and head is not None and not head.chunked and status == 503
        keepalive = ((complete or skippable) and not head.wants_close and self.alive
                     and self.keepalive > 0)
        if not complete:
            if keepalive:
                conn.skip = head.length + head.content_length - len(conn.buffer)
            conn.buffer.clear()  # the rest of the request being answered
        request_id = (head.request_id if head else "") or new_request_id()
        v2 = head is not None and self.speaks_v2(head.path)
        data = error_response(status, _REASONS[status], code, message, request_id, keepalive, headers, v2=v2)
        self.unwatch(conn)
        access_log.info("%s %s %d", head.method if head else "-", head.path if head else "-", status,
                        extra={"request_id": request_id, "method": head.method if head else None,
                               "path": head.path if head else None, "status": status, "answered_by": "worker"})
        self.send(conn, data, keepalive, linger=CLOSE_LINGER if complete else self.read_timeout)

    # --- deadlines ---

    def sweep(self) -> None:
        now = time.monotonic()
        self.next_sweep = now + SWEEP_INTERVAL
        for conn in [conn for conn in self.connections if conn.deadline < now]:
            if conn.state is Connection.READING and conn.buffer and not conn.skip:
                self.refuse(conn, 408, "read_timeout", f"the request did not arrive within {self.read_timeout:g} s "
                            "of its first byte (REQUEST_READ_TIMEOUT)")
            elif conn.state in (Connection.READING, Connection.SENDING, Connection.CLOSING):
                self.close(conn)
        lane = self.lane
        while lane.waiting and now - lane.waiting[0][0] > lane.max_wait:
            _, conn = lane.waiting.popleft()
            self.shed(conn, "queue_wait", complete=True)
        self.metrics.QUEUED_REQUESTS.set(len(lane.waiting))
        self.metrics.OPEN_CONNECTIONS.set(len(self.connections))

    # --- drain ---

    def drain(self) -> None:
        lifecycle.begin_draining()
        self.board.leave(self.slot)
        self.set_accept_enabled(False)
        # The kernel completed these connections before the listener closes: answer them.
        for listener in self.sockets:
            listener.setblocking(False)
            while True:
                try:
                    sock, client = listener.accept()
                except OSError:
                    break
                self.add(sock, client, listener.getsockname())
            listener.close()
        linger = time.monotonic() + DRAIN_IDLE_LINGER
        for conn in self.connections:
            if conn.state is Connection.READING and not conn.buffer:
                conn.deadline = min(conn.deadline, linger)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self.connections and time.monotonic() < deadline:
            self.notify()
            self.poll(SWEEP_INTERVAL)
            self.sweep()
        for conn in list(self.connections):
            self.close(conn)
        self.lane.stop()
        self.poller.close()
        self.method_queue.close()


def error_response(status: int, reason: str, code: str, message: str, request_id: str, keepalive: bool,
                   headers: dict | None = None, v2: bool = False) -> bytes:
    """A whole HTTP response carrying the application's error body: {"error": {code, message}},
    or the Open Inference Protocol's {"error": message} under /v2 (as service.errors does)."""
    error = message if v2 else {"code": code, "message": message}
    body = json.dumps({"error": error}, separators=(",", ":")).encode() + b"\n"
    lines = [f"HTTP/1.1 {status} {reason}", f"Date: {http_date()}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", f"X-Request-ID: {request_id}",
             f"Connection: {'keep-alive' if keepalive else 'close'}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def http_date(_cache: list = [0, ""]) -> str:  # noqa: B006 (the per-second cache)
    now = int(time.time())
    if now != _cache[0]:
        _cache[:] = [now, formatdate(now, usegmt=True)]
    return _cache[1]


_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Request Entity Too Large", 414: "URI Too Long",
            431: "Request Header Fields Too Large", 501: "Not Implemented", 503: "Service Unavailable"}
