"""Ingestion throughput against the SPEC 10 targets, next to raw PostgreSQL COPY.

    make bench                      # the full run (a few minutes)
    make bench BENCH_ARGS=--quick   # seconds: proves the benchmark still runs

Starts Footprint the production way on local PostgreSQL (its own database,
``footprint_ingest_bench``, rebuilt each run) and Redis: gunicorn and a Celery worker. Then:

1. accept: ``/v1/batch`` with 100-message batches while no worker runs, so the web tier is
   measured alone; messages/s and latency;
2. single ``/v1/track`` requests: requests/s and latency;
3. process: 1, then 2, then 4 Celery worker processes (solo pools) drain the same inbox (kept
   aside after accepting and put back, with no guest or event, before each count) into stored,
   deduplicated, identity-resolved, sessionised events; events/s, and for each count that the
   events stored equal the unique messages sent (exactly once however many workers share it);
4. ``/v2/callFlows`` at a fixed 500 decisions/s (open loop: latency counts from the moment a
   request was due, so a stall is not hidden);
5. baseline: the accepted messages as rows of the events table's shape, loaded with one raw
   ``COPY``; rows/s, and every figure above as a ratio to it;
6. backfill: ``manage.py import_events`` of a gzipped NDJSON export of a month-old history
   (its own messages, about 5% of the lines without a messageId), run in this process with the
   worker's threads, next to the worker's processing rate; then the same file again, which
   must store nothing.

The messages are Segment-spec track/page/identify calls of 300 to 800 bytes from a pool of
returning visitors, some of whom identify; about 1% repeat an earlier messageId. The load
generator is one asyncio process speaking HTTP/1.1 over keep-alive connections; its own CPU
share is reported. At the end the benchmark checks that stored events = unique messages sent
and that nothing failed. Timings are never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gzip
import io
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
DATABASE = "footprint_ingest_bench"
BATCH_SIZE = 100
CALL_FLOWS_RATE = 500
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
EVENT_NAMES = ["Product Viewed", "Product Added", "Cart Viewed", "Checkout Started", "Search"]
PAGES = ["/", "/shoes", "/shoes/trail", "/cart", "/checkout", "/account", "/blog/running"]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, to prove it runs")
    parser.add_argument("--batches", type=int, help="100-message batches to send")
    parser.add_argument("--tracks", type=int, help="single /v1/track requests to send")
    parser.add_argument("--imports", type=int, help="lines of the NDJSON file to import")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--concurrency", type=int, default=16, help="connections of the generator")
    parser.add_argument("--port", type=int, default=0, help="gunicorn port (0: a free one)")
    parser.add_argument(
        "--database-url",
        default=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        help="a PostgreSQL database the benchmark may drop and rebuild",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument(
        "--profile",
        type=Path,
        help="a folder: py-spy (if installed) records each Footprint phase there, as folded stacks",
    )
    parser.add_argument("--cache-db", type=int, default=11, help="Redis db of the cache")
    parser.add_argument("--broker-db", type=int, default=12, help="Redis db of the broker")
    parser.add_argument(
        "--only",
        type=phases_parse,
        help="accept and/or track (comma-separated): only the doors next to the lean peer, "
        "checking that every accepted request is in the inbox; process: accept the batches, then "
        "only the processing phases and the COPY baseline; callflows: /v2/callFlows alone, with "
        "one Celery worker storing",
    )
    parser.add_argument("--flows", type=int, help="/v2/callFlows requests of the saturated run")
    parser.add_argument(
        "--workers",
        default="1,2,4",
        help="worker process counts the processing phase runs with, comma-separated",
    )
    args = parser.parse_args()
    args.worker_counts = tuple(int(count) for count in args.workers.split(","))
    args.batches = args.batches or (30 if args.quick else 2000)
    args.tracks = args.tracks or (300 if args.quick else 20000)
    args.imports = args.imports or (3000 if args.quick else 100_000)
    args.call_flows_seconds = 1 if args.quick else 10
    args.flows = args.flows or (1000 if args.quick else 10_000)
    # Repeat guests: each browser is sent once, and drained, before anything is measured.
    args.flow_guests = 200 if args.quick else 2000
    return args


DOOR_PHASES = ("accept", "track")
ALONE_PHASES = ("process", "callflows")


def phases_parse(text: str) -> set[str]:
    phases = {part.strip() for part in text.split(",") if part.strip()}
    unknown = phases - set(DOOR_PHASES) - set(ALONE_PHASES)
    if not phases or unknown:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(DOOR_PHASES + ALONE_PHASES)}")
    if phases & set(ALONE_PHASES) and len(phases) > 1:
        raise argparse.ArgumentTypeError(f"{' and '.join(ALONE_PHASES)} each run alone")
    return phases


# --- messages ------------------------------------------------------------------------------


def messages_make(count: int, *, visitors: int, rng: random.Random) -> list[dict]:
    """Segment-spec messages, oldest first, with about 1% repeating an earlier messageId."""
    now = datetime.now(UTC)
    start = now - timedelta(hours=2)
    step = timedelta(hours=2) / max(count, 1)
    made: list[dict] = []
    for index in range(count):
        if made and rng.random() < 0.01:
            made.append(made[rng.randrange(len(made))])
            continue
        visitor = int(rng.paretovariate(1.2)) % visitors  # a few visitors come back a lot
        made.append(message_make(visitor, start + step * index, rng))
    return made


def message_make(visitor: int, at: datetime, rng: random.Random, roll: float | None = None) -> dict:
    roll = rng.random() if roll is None else roll
    page = rng.choice(PAGES)
    context = {
        "ip": f"10.{visitor % 250}.{visitor // 250 % 250}.{rng.randrange(1, 250)}",
        "locale": "en-GB",
        "userAgent": USER_AGENT,
        "library": {"name": "analytics.js", "version": "5.2.0"},
        "page": {
            "path": page,
            "url": f"https://shop.example.com{page}",
            "referrer": "https://www.google.com/",
            "title": "Shop",
        },
    }
    message = {
        "messageId": str(uuid.uuid4()),
        "anonymousId": f"anon-{visitor:07d}",
        "timestamp": at.isoformat(),
        "context": context,
    }
    if roll < 0.6:
        message |= {
            "type": "track",
            "event": rng.choice(EVENT_NAMES),
            "properties": {
                "product_id": f"sku-{rng.randrange(5000)}",
                "price": round(rng.uniform(5, 200), 2),
                "currency": "EUR",
            },
        }
    elif roll < 0.92:
        message |= {"type": "page", "name": page, "properties": {"path": page}}
    else:
        message |= {
            "type": "identify",
            "userId": f"user-{visitor:07d}",
            "traits": {
                "email": f"visitor{visitor}@example.com",
                "firstName": "Visitor",
                "plan": rng.choice(["free", "plus", "pro"]),
            },
        }
    padding = rng.randrange(300, 800) - len(orjson.dumps(message))
    if padding > 20:
        message.setdefault("properties", {})["note"] = "x" * (padding - 12)
    return message


# --- the load generator --------------------------------------------------------------------


class Connection:
    """A keep-alive HTTP/1.1 connection that sends prebuilt requests."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
                continue  # the server closed an idle keep-alive connection: send again
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            length, closing = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    closing = True
            body = await self.reader.readexactly(length) if length else b""
            if closing:
                self.close()
            return status, body
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def http_request(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    # As behind a TLS-terminating proxy: production settings redirect plain HTTP.
    lines += ["X-Forwarded-Proto: https", "Connection: keep-alive", "", ""]
    return "\r\n".join(lines).encode() + body


@dataclass
class Phase:
    name: str
    requests: int = 0
    items: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    # Answers that said so in their body (callFlows: EXPOSED decisions).
    marked: int = 0
    seconds: float = 0.0
    generator_cpu: float = 0.0
    web_cpu: float = 0.0
    # The most uneven share of the connections between the web workers seen, as "12/4".
    split: str = ""

    def web_ms(self) -> str:
        """Web CPU per request, in milliseconds."""
        return f"{self.web_cpu / max(self.requests, 1) * 1000:.2f}"

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def closed_loop(
    port: int,
    requests: list[tuple[bytes, int]],
    concurrency: int,
    phase: Phase,
    mark: bytes | None = None,
) -> None:
    """Send every request, ``concurrency`` at a time, each connection as fast as it is answered."""
    queue = iter(requests)

    async def run() -> None:
        connection = Connection(port)
        for request, items in queue:
            started = time.perf_counter()
            status, body = await connection.send(request)
            phase.latencies.append(time.perf_counter() - started)
            phase.requests += 1
            if status == 200:
                phase.items += items
                phase.marked += mark is not None and mark in body
            else:
                phase.errors[status] = phase.errors.get(status, 0) + 1
                if len(phase.errors) == 1 and phase.errors[status] == 1:
                    print(f"  {phase.name}: HTTP {status}: {body[:300]!r}", file=sys.stderr)
        connection.close()

    await asyncio.gather(*(run() for _ in range(concurrency)))


async def open_loop(
    port: int,
    requests: list[bytes],
    rate: float,
    phase: Phase,
    connections: int = 32,
    mark: bytes | None = None,
) -> None:
    """Send request i at ``i / rate`` seconds; latency counts from that moment."""
    start = time.perf_counter() + 0.05
    queue: asyncio.Queue = asyncio.Queue()
    for index, request in enumerate(requests):
        queue.put_nowait((start + index / rate, request))

    async def run() -> None:
        connection = Connection(port)
        while not queue.empty():
            due, request = queue.get_nowait()
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status, body = await connection.send(request)
            phase.latencies.append(time.perf_counter() - due)
            phase.requests += 1
            if status == 200:
                phase.items += 1
                phase.marked += mark is not None and mark in body
            else:
                phase.errors[status] = phase.errors.get(status, 0) + 1
        connection.close()

    await asyncio.gather(*(run() for _ in range(connections)))


def timed(phase: Phase, work, web: psutil.Process | None = None) -> Phase:
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    web_before = tree_cpu(web)
    started = time.perf_counter()
    asyncio.run(work)
    phase.seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    phase.generator_cpu = (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
    phase.web_cpu = tree_cpu(web) - web_before
    return phase


class ConnectionSplit(threading.Thread):
    """Samples how the generator's connections are spread over the gunicorn workers."""

    def __init__(self, root: psutil.Process, port: int):
        super().__init__(daemon=True)
        self.root, self.port = root, port
        self.samples: list[tuple[int, ...]] = []
        self.stopped = threading.Event()

    def __enter__(self) -> ConnectionSplit:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.join()

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            counts = []
            for child in self.root.children():
                try:
                    connections = child.net_connections(kind="tcp")
                except psutil.Error:
                    continue
                counts.append(
                    sum(
                        1
                        for c in connections
                        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == self.port
                    )
                )
            if sum(counts):
                self.samples.append(tuple(sorted(counts, reverse=True)))

    def widest(self) -> str:
        if not self.samples:
            return ""
        return "/".join(map(str, max(self.samples, key=lambda c: (c[0] - c[-1], c))))


def tree_cpu(root: psutil.Process | None) -> float:
    """CPU seconds used so far by a process and its children (the gunicorn workers)."""
    if root is None:
        return 0.0
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += sum(process.cpu_times()[:2])
    return total


@contextlib.contextmanager
def profiled(args: argparse.Namespace, name: str, pid: int):
    """py-spy records the process ``pid`` and its children while the block runs (``--profile``)."""
    spy = shutil.which("py-spy") or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)
    if args.profile is None or spy is None:
        yield
        return
    args.profile.mkdir(parents=True, exist_ok=True)
    out = args.profile / (name.split(":")[0].lower().replace(" ", "-") + ".txt")
    recorder = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--subprocesses", "--rate", "250"]
        + ["--format", "raw", "--output", str(out), "--nonblocking"]
        # For example --gil: only the samples that hold the GIL (CPU spent in Python).
        + os.environ.get("PY_SPY_ARGS", "").split(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # py-spy attaches
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)


# --- processes -----------------------------------------------------------------------------


class MemoryWatch(threading.Thread):
    """Samples the resident memory of the web and worker processes; keeps each one's peak."""

    def __init__(self):
        super().__init__(daemon=True)
        self.roots: dict[str, psutil.Process] = {}
        self.peaks: dict[str, int] = {}
        self.stopped = threading.Event()

    def watch(self, role: str, pid: int) -> None:
        self.roots[role] = psutil.Process(pid)

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            for role, root in list(self.roots.items()):
                try:
                    processes = [root, *root.children(recursive=True)]
                    peak = max(p.memory_info().rss for p in processes)
                except psutil.Error:
                    continue
                self.peaks[role] = max(self.peaks.get(role, 0), peak)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(http_request("GET", "/healthz", b"", {}))
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer on port {port}")


def gunicorn_start(
    args: argparse.Namespace,
    env: dict[str, str],
    port: int,
    log=None,
    *,
    app: str = "config.wsgi",
    cwd: Path = ROOT,
) -> subprocess.Popen:
    """gunicorn as in production: gthread workers behind loopback; its log to ``log`` if given.

    ``app`` (run from ``cwd``) is Footprint by default; the lean peer gets the same settings.
    """
    # Footprint's gunicorn settings (README, Production), for the lean peer too.
    config = ROOT / "config" / "gunicorn.py"
    return subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            app,
            *(["--config", str(config)] if config.exists() else []),
            "--workers",
            str(args.web_workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--threads",
            str(args.threads),
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
        ],
        cwd=cwd,
        env=env,
        stderr=log,
    )


def celery_worker_start(env: dict[str, str], log=None, *, name: str = "") -> subprocess.Popen:
    """One Celery worker process (solo pool) on the ingest queue; its log to ``log`` if given.
    Several workers on one broker need a ``name`` each."""
    return subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            *(["-n", f"{name}@%h"] if name else []),
            "-Q",
            "ingest",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def process_stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


# --- the run -------------------------------------------------------------------------------


def environment(
    args: argparse.Namespace, *, cache_db: int = 11, broker_db: int = 12
) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "0",
        "DATABASE_URL": args.database_url,
        "CELERY_BROKER_URL": f"{args.redis_url}/{broker_db}",
        "CACHE_URL": f"{args.redis_url}/{cache_db}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
    }


def database_rebuild(
    args: argparse.Namespace, env: dict[str, str], *, redis_dbs: tuple[int, ...] = (11, 12)
) -> None:
    name = args.database_url.rsplit("/", 1)[1]
    pg = ["-h", "127.0.0.1", "-U", "postgres"]
    subprocess.run(["dropdb", *pg, "--if-exists", "--force", name], check=True)
    subprocess.run(["createdb", *pg, name], check=True)
    subprocess.run(
        [str(BIN / "python"), "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    import redis

    for db in redis_dbs:
        redis.Redis.from_url(f"{args.redis_url}/{db}").flushdb()


def main() -> None:
    args = arguments()
    env = environment(args, cache_db=args.cache_db, broker_db=args.broker_db)
    os.environ.update(env)
    print(f"Preparing {args.database_url.rsplit('/', 1)[1]} …", file=sys.stderr)
    database_rebuild(args, env, redis_dbs=(args.cache_db, args.broker_db))

    import django

    django.setup()
    if args.only and "callflows" in args.only:
        call_flows_only(args, env)
        return
    from django.db import connection

    from tracking import services
    from tracking.models import Event, FailedEvent, InboxRequest

    workspace = flow_experience_make()
    source = services.source_create(workspace=workspace, name="Shop")
    connection.close()

    rng = random.Random(20261123)
    visitors = max(1000, args.batches * BATCH_SIZE // 10)
    batch_messages = messages_make(args.batches * BATCH_SIZE, visitors=visitors, rng=rng)
    track_messages = [
        message_make(rng.randrange(visitors), datetime.now(UTC), rng, roll=0.0)
        for _ in range(0 if args.only and "process" in args.only else args.tracks)
    ]
    auth = {
        "Authorization": "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    sent_at = datetime.now(UTC).isoformat()
    batch_requests = [
        (
            http_request(
                "POST",
                "/v1/batch",
                orjson.dumps({"batch": batch_messages[i : i + BATCH_SIZE], "sentAt": sent_at}),
                auth,
            ),
            BATCH_SIZE,
        )
        for i in range(0, len(batch_messages), BATCH_SIZE)
    ]
    track_requests = [
        (http_request("POST", "/v1/track", orjson.dumps(m), auth), 1) for m in track_messages
    ]
    port = args.port or free_port()
    if args.only and "process" in args.only:
        process_only(args, env, port, batch_requests, batch_messages, workspace, source)
        return
    peer_port = free_port()
    lean_peer_prepare(args.database_url)
    memory = MemoryWatch()
    memory.start()
    web = gunicorn_start(args, env, port)
    peer = gunicorn_start(
        args,
        {**env, "LEAN_PEER_DATABASE_URL": args.database_url},
        peer_port,
        app="lean_peer:application",
        cwd=ROOT / "bench",
    )
    try:
        wait_http(port)
        wait_http(peer_port)
        memory.watch("web", web.pid)
        warm = [(http_request("GET", "/healthz", b"", {}), 0)] * 50
        for warm_port in (port, peer_port):
            asyncio.run(closed_loop(warm_port, warm, args.concurrency, Phase("warm")))
        web_tree, peer_tree = psutil.Process(web.pid), psutil.Process(peer.pid)

        def both(name: str, requests: list, concurrency: int) -> tuple[Phase, Phase]:
            """The same requests to Footprint, then to the lean peer, back to back."""
            print(f"{name} …", file=sys.stderr)
            ours, theirs = Phase(name), Phase(f"{name} (lean peer)")
            with profiled(args, name, web.pid), ConnectionSplit(web_tree, port) as split:
                timed(ours, closed_loop(port, requests, concurrency, ours), web_tree)
            ours.split = split.widest()
            timed(theirs, closed_loop(peer_port, requests, concurrency, theirs), peer_tree)
            return ours, theirs

        if args.only:
            doors = {}
            if "accept" in args.only:
                doors["accept"] = both("Accept: /v1/batch", batch_requests, args.concurrency)
            if "track" in args.only:
                doors["track"] = both("Single: /v1/track", track_requests, args.concurrency * 2)
            memory.stopped.set()
            sent = sum(
                len(requests)
                for name, requests in (("accept", batch_requests), ("track", track_requests))
                if name in doors
            )
            doors_report(args, doors, memory.peaks, sent, InboxRequest.objects.count())
            return
        accept, accept_peer = both("Accept: /v1/batch", batch_requests, args.concurrency)
        single, single_peer = both("Single: /v1/track", track_requests, args.concurrency * 2)
        process_stop(peer)

        unique = len({m["messageId"] for m in batch_messages + track_messages})
        processes = processes_measure(args, env, source, unique, memory)
        connection.close()

        print(f"Import: {args.imports:,} lines of NDJSON, twice …", file=sys.stderr)
        backfill = services.source_create(workspace=workspace, name="Backfill")
        imported = import_measure(args, backfill, visitors=visitors, rng=rng)
        connection.close()

        flows_run = call_flows_measure(args, env, port, web_tree, workspace, rng)
        flows, flows_max = flows_run.paced, flows_run.saturated
        memory.stopped.set()

        print("Baseline: raw COPY …", file=sys.stderr)
        copy_rate = copy_baseline(batch_messages, workspace.pk, source.pk)

        tracking_stored = Event.objects.filter(source=source).count()
        backfill_stored = Event.objects.filter(source=backfill).count()
        failed = FailedEvent.objects.count()
    finally:
        memory.stopped.set()
        process_stop(peer)
        process_stop(web)
    report(
        args,
        accept=accept,
        accept_peer=accept_peer,
        single=single,
        single_peer=single_peer,
        processes=processes,
        flows=flows,
        flows_max=flows_max,
        copy_rate=copy_rate,
        memory=memory.peaks,
        unique=unique,
        stored=tracking_stored,
        failed=failed,
        imported=imported,
        backfill_stored=backfill_stored,
        flows_run=flows_run,
    )
    flows_check(flows_run)
    if tracking_stored != unique or failed:
        raise SystemExit(f"stored {tracking_stored} events for {unique} unique messages sent")
    if backfill_stored != imported.unique or imported.again_stored:
        raise SystemExit(
            f"the import stored {backfill_stored} events for {imported.unique} unique lines, "
            f"and {imported.again_stored} more the second time"
        )


# --- /v2/callFlows ---------------------------------------------------------------------------

FLOW_CONNECTIONS = 8
EXPOSED = b'"decision":"EXPOSED"'


@dataclass
class Flows:
    saturated: Phase
    paced: Phase
    # EXPOSED answers, the warm-up's included, and what the worker stored for them.
    exposed: int
    stored: int
    executions: int
    failed: int
    # From the last answer to an inbox with nothing pending: how long the worker trailed.
    drain_seconds: float


def flow_experience_make():
    """The benchmark's workspace with its live two-variant experience ``hero``."""
    from experiences.flows import experiences_source
    from experiences.models import Experience, Variant
    from tracking import services

    workspace = services.workspace_create(name="Bench")
    experience = Experience.objects.create(
        workspace=workspace, friendly_id="hero", name="Hero", status=Experience.Status.LIVE
    )
    Variant.objects.create(experience=experience, name="A", is_control=True, content={"t": "a"})
    Variant.objects.create(experience=experience, name="B", content={"t": "Hi {{firstName}}"})
    experiences_source(workspace)
    return workspace


def flow_request(workspace, browser: int) -> bytes:
    body = {
        "clientKey": workspace.client_key,
        "friendlyId": "hero",
        "channel": "WEB",
        "pointOfSale": "shop/nl",
        "browserId": f"browser-{browser}",
    }
    return http_request(
        "POST", "/v2/callFlows", orjson.dumps(body), {"Content-Type": "application/json"}
    )


def inbox_settled(seconds: float = 600) -> None:
    """Wait until no inbox request is pending (the worker stored them all)."""
    from django.db import connection

    from tracking.models import InboxRequest

    deadline = time.monotonic() + seconds
    while InboxRequest.objects.filter(status=InboxRequest.Status.PENDING).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the inbox still had pending requests after {seconds:.0f} s")
        time.sleep(0.05)
    connection.close()


def call_flows_measure(
    args, env, port: int, web_tree: psutil.Process, workspace, rng: random.Random
) -> Flows:
    """``/v2/callFlows`` for repeat guests, with one Celery worker storing what it answers.

    Every guest is sent once first (not measured) and its exposure drained, so each measured
    call is a repeat guest's. Then as fast as ``FLOW_CONNECTIONS`` connections go, then paced
    (open loop) at 500/s or 80% of what that sustained, whichever is lower. Last, the worker
    drains, and the TRACKING events and flow executions stored are counted against the EXPOSED
    answers given.
    """
    from django.db import connection

    from experiences.models import FlowExecution
    from tracking.models import Event, InboxRequest

    warm = [(flow_request(workspace, b), 1) for b in range(args.flow_guests)]
    measured = [
        flow_request(workspace, rng.randrange(args.flow_guests))
        for _ in range(args.flows + CALL_FLOWS_RATE * args.call_flows_seconds)
    ]
    connection.close()
    worker = celery_worker_start(env, name="bench-flows")
    try:
        workers_answer(1)
        print(f"callFlows: {len(warm):,} guests once (warm-up) …", file=sys.stderr)
        warming = Phase("callFlows warm-up")
        timed(warming, closed_loop(port, warm, FLOW_CONNECTIONS, warming, mark=EXPOSED))
        inbox_settled()
        # The statistics autovacuum would have gathered by now in a running installation (the
        # database was made a moment ago): without them a guest's read plans as for an empty
        # table and filters every identity of the workspace.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

        print("callFlows: as fast as it goes …", file=sys.stderr)
        saturated = Phase("callFlows max")
        capacity = [(r, 1) for r in measured[: args.flows]]
        with (
            profiled(args, "callFlows", web_tree.pid),
            profiled(args, "callFlows-worker", worker.pid),
        ):
            timed(
                saturated,
                closed_loop(port, capacity, FLOW_CONNECTIONS, saturated, mark=EXPOSED),
                web_tree,
            )
        # Open loop at the target rate, or below the measured capacity when that is lower (an
        # overloaded open loop only measures its own queue).
        rate = min(CALL_FLOWS_RATE, 0.8 * saturated.items / saturated.seconds)
        print(f"callFlows: open loop at {rate:.0f}/s …", file=sys.stderr)
        paced = Phase("callFlows")
        requests = measured[args.flows :][: int(rate * args.call_flows_seconds)]
        timed(paced, open_loop(port, requests, rate, paced, mark=EXPOSED), web_tree)
        answered = time.perf_counter()
        inbox_settled()
        drain_seconds = time.perf_counter() - answered
    finally:
        process_stop(worker)
    result = Flows(
        saturated=saturated,
        paced=paced,
        exposed=warming.marked + saturated.marked + paced.marked,
        stored=Event.objects.filter(workspace=workspace, type="TRACKING").count(),
        executions=FlowExecution.objects.filter(experience__workspace=workspace).count(),
        failed=InboxRequest.objects.filter(status=InboxRequest.Status.FAILED).count(),
        drain_seconds=drain_seconds,
    )
    connection.close()
    return result


def flows_stored_line(flows: Flows) -> str:
    return (
        f"callFlows answered {flows.exposed:,} exposures; stored {flows.stored:,} TRACKING "
        f"events and {flows.executions:,} flow executions ({flows.failed} inbox requests "
        f"failed); the worker was done {flows.drain_seconds:.1f} s after the last answer"
    )


def flows_check(flows: Flows) -> None:
    if flows.stored != flows.exposed or flows.executions != flows.exposed or flows.failed:
        raise SystemExit(
            f"callFlows stored {flows.stored} TRACKING events and {flows.executions} flow "
            f"executions for {flows.exposed} exposures answered ({flows.failed} failed)"
        )


def call_flows_only(args, env) -> None:
    """``--only callflows``: gunicorn and one worker, the callFlows phases, their targets."""
    from django.db import connection

    workspace = flow_experience_make()
    connection.close()
    port = args.port or free_port()
    web = gunicorn_start(args, env, port)
    memory = MemoryWatch()
    memory.start()
    try:
        wait_http(port)
        memory.watch("web", web.pid)
        flows = call_flows_measure(
            args, env, port, psutil.Process(web.pid), workspace, random.Random(20261123)
        )
    finally:
        memory.stopped.set()
        process_stop(web)
    cores = os.cpu_count() or 1
    saturated, paced = flows.saturated, flows.paced
    saturated_rate = saturated.items / saturated.seconds
    paced_rate = paced.items / paced.seconds
    paced_p99 = paced.percentile(99)
    print()
    print(
        f"Footprint /v2/callFlows benchmark: {cores} cores, gunicorn {args.web_workers} workers "
        f"x {args.threads} threads, one Celery worker; {args.flow_guests:,} repeat guests; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    table_print(
        [
            ("figure", "measured", "p50 ms", "p99 ms", "server CPU", "gen. CPU"),
            *(
                (
                    label,
                    f"{phase.items / phase.seconds:,.0f} req/s",
                    f"{phase.percentile(50):.1f}",
                    f"{phase.percentile(99):.1f}",
                    f"{phase.web_ms()} ms/request",
                    f"{phase.generator_cpu / (phase.seconds * cores):.0%}",
                )
                for label, phase in (
                    (f"/v2/callFlows, {FLOW_CONNECTIONS} connections", saturated),
                    (f"/v2/callFlows paced at {paced_rate:,.0f}/s", paced),
                )
            ),
            ("peak RSS web", f"{memory.peaks.get('web', 0) / 2**20:,.0f} MiB", "", "", "", ""),
        ]
    )
    print()
    table_print(
        [
            ("target (SPEC 10)", "measured", ""),
            (
                "callFlows >= 1,000 decisions/s (repeat guests)",
                f"{saturated_rate:,.0f}/s",
                met(saturated_rate >= 1000),
            ),
            (
                f"callFlows p99 <= 20 ms paced at {CALL_FLOWS_RATE}/s",
                f"{paced_p99:.0f} ms at {paced_rate:,.0f}/s",
                met(paced_rate >= 0.95 * CALL_FLOWS_RATE and paced_p99 <= 20),
            ),
        ]
    )
    errors = {**saturated.errors, **paced.errors}
    print(f"\n{flows_stored_line(flows)}; HTTP errors {errors or 'none'}")
    flows_check(flows)


def workers_answer(count: int) -> None:
    """Wait until ``count`` Celery workers answer a ping."""
    from config.celery import app

    deadline = time.monotonic() + 120
    while len(app.control.ping(timeout=1.0) or []) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{count} Celery workers did not all start within 120 s")


def processes_measure(args, env, source, unique: int, memory) -> list[Drain]:
    """1, 2 and 4 worker processes drain the same (kept) inbox; each must store every unique
    message exactly once. Counts the deadlocks PostgreSQL saw and samples lock waits."""
    from django.db import connection

    from tracking.models import Event, FailedEvent, InboxRequest

    inbox_keep()
    processes = []
    for count in args.worker_counts:
        print(f"Process: {count} worker process(es) drain the inbox …", file=sys.stderr)
        inbox_restore()
        pending_before = InboxRequest.objects.filter(status=InboxRequest.Status.PENDING).count()
        # The drain tasks the accepted requests queued would start the first worker early.
        drains_forget()
        workers = [celery_worker_start(env, name=f"bench-{i}") for i in range(count)]
        if memory is not None:
            memory.watch("worker", workers[0].pid)
        deadlocks = deadlocks_count(connection)
        try:
            with profiled(args, f"process-{count}", workers[0].pid):
                drains_send(count)
                drain = drain_measure(pending_before, InboxRequest, Event, workers)
        finally:
            for one in workers:
                process_stop(one)
        drain.deadlocks = deadlocks_count(connection) - deadlocks
        drain.stored = Event.objects.filter(source=source).count()
        drain.failed = FailedEvent.objects.count()
        processes.append(drain)
        if drain.stored != unique or drain.failed:
            raise SystemExit(
                f"{count} workers stored {drain.stored} events for {unique} unique messages"
            )
    return processes


def deadlocks_count(connection) -> int:
    """Deadlocks PostgreSQL detected in this database so far (its statistics lag a little)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def process_only(args, env, port, batch_requests, batch_messages, workspace, source) -> None:
    """``--only process``: accept the batches (gunicorn, no worker), then the processing phases
    at 1, 2 and 4 worker processes and the raw COPY baseline, each worker count's figure per
    worker process next to COPY."""
    from django.db import connection

    web = gunicorn_start(args, env, port)
    try:
        wait_http(port)
        print("Accept: /v1/batch …", file=sys.stderr)
        accept = Phase("accept")
        asyncio.run(closed_loop(port, batch_requests, args.concurrency, accept))
    finally:
        process_stop(web)
    if accept.errors:
        raise SystemExit(f"accepting failed: {accept.errors}")
    unique = len({m["messageId"] for m in batch_messages})
    processes = processes_measure(args, env, source, unique, None)
    connection.close()
    print("Baseline: raw COPY …", file=sys.stderr)
    copy_rate = copy_baseline(batch_messages, workspace.pk, source.pk)
    cores = os.cpu_count() or 1
    print()
    print(
        f"Footprint processing benchmark: {cores} cores, {args.batches:,} batches of "
        f"{BATCH_SIZE}, {unique:,} unique messages; load {os.getloadavg()[0]:.1f}"
    )
    rows = [
        (
            "figure",
            "events/s",
            "per worker",
            "of COPY",
            "worker CPU",
            "machine busy",
            "lock waits",
            "deadlocks",
            "",
        )
    ]
    for drain in processes:
        total = drain.events / drain.seconds
        per_worker = total / drain.workers
        ratio = per_worker / copy_rate
        rows.append(
            (
                f"process ({drain.workers} worker process{'es' if drain.workers > 1 else ''})",
                f"{total:,.0f}",
                f"{per_worker:,.0f}",
                f"{ratio:.2f}",
                f"{drain.worker_cpu / max(drain.events, 1) * 1e6:.0f} us/event, "
                f"{drain.worker_cpu / drain.seconds / cores:.0%} of the cores",
                f"{drain.machine_busy:.0%}",
                f"{drain.lock_waits:.2f}",
                f"{drain.deadlocks}",
                met(per_worker >= 10_000 and ratio >= 0.3),
            )
        )
    rows.append(("  raw COPY, same rows", f"{copy_rate:,.0f}", "", "1.00", "", "", "", "", ""))
    table_print(rows)
    print(
        "\ntarget: >= 10,000 events/s per worker process and >= 0.3 of raw COPY; lock waits: "
        "drain backends waiting on a lock, averaged over the phase"
    )
    for drain in processes:
        for what, n in drain.waiting.items():
            print(f"  {drain.workers} worker(s), waiting {n:.2f} on average: {what}")
    print(f"stored = unique sent ({unique:,}) at every worker count, nothing failed")


@dataclass
class Drain:
    events: int
    seconds: float
    worker_cpu: float
    workers: int = 1
    stored: int = 0
    failed: int = 0
    deadlocks: int = 0
    # Backends of this database waiting on a lock, averaged over the samples of the phase.
    lock_waits: float = 0.0
    # The share of the whole machine's CPU time that was busy (everything running on it).
    machine_busy: float = 0.0
    # The statements most often seen waiting on a lock, with their average count.
    waiting: dict = field(default_factory=dict)


def inbox_keep() -> None:
    """Keep a copy of the pending inbox, so every worker count processes the same requests."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_inbox")
        cursor.execute(
            "CREATE TABLE bench_inbox AS SELECT * FROM tracking_inboxrequest "
            "WHERE status = 'pending'"
        )


def inbox_restore() -> None:
    """Back to the state after accepting: no guest, event, key, rollup or session; the kept
    inbox."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE tracking_event, tracking_dedupkey, tracking_failedevent, "
            "tracking_eventrollup, tracking_failedeventrollup, tracking_catalogueevent, "
            "tracking_cataloguekey, profiles_guestday, profiles_guestrollup, "
            "profiles_dirtyguest, profiles_guest CASCADE"
        )
        cursor.execute("DELETE FROM tracking_inboxrequest")
        cursor.execute("INSERT INTO tracking_inboxrequest SELECT * FROM bench_inbox")
        cursor.execute("ANALYZE tracking_inboxrequest")


def drains_forget() -> None:
    """Empty the ingest queue of the drain tasks the accepted requests queued."""
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("ingest")


def drains_send(count: int) -> None:
    """One drain task per worker, once all ``count`` workers answer a ping."""
    from tracking.tasks import inbox_drain

    workers_answer(count)
    for _ in range(count):
        inbox_drain.delay()


def drain_measure(pending: int, InboxRequest, Event, workers: list[subprocess.Popen]) -> Drain:
    """Time the workers from the first committed claim to an empty inbox.

    Counting from the first commit leaves the workers' start-up out of the figure; the events
    stored before that moment are left out too.
    """
    procs = [psutil.Process(worker.pid) for worker in workers]

    def cpu() -> float:
        return sum(sum(proc.cpu_times()[:2]) for proc in procs)

    def machine() -> tuple[float, float]:
        times = psutil.cpu_times()
        return sum(times) - times.idle - times.iowait, sum(times)

    import collections

    from django.db import connection

    first_at = first_events = first_cpu = None
    waits = samples = 0
    waiting: collections.Counter = collections.Counter()
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        if any(worker.poll() is not None for worker in workers):
            raise SystemExit("a Celery worker exited")
        left = InboxRequest.objects.filter(status=InboxRequest.Status.PENDING).count()
        if first_at is not None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) "
                    "FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                for wait_event, query in cursor.fetchall():
                    waiting[f"{wait_event}: {query}"] += 1
                    waits += 1
                samples += 1
        now = time.perf_counter()
        if first_at is None and left < pending:
            first_at, first_events = now, Event.objects.count()
            first_cpu, first_machine = cpu(), machine()
        if left == 0:
            events = Event.objects.count()
            if first_at is None:  # everything went in one claim
                return Drain(events, float("nan"), float("nan"), workers=len(workers))
            seconds = (now - first_at) or float("nan")  # drained within one look: too quick
            return Drain(
                events - first_events,
                seconds,
                cpu() - first_cpu,
                workers=len(workers),
                lock_waits=waits / max(samples, 1),
                waiting={what: n / max(samples, 1) for what, n in waiting.most_common(3)},
                machine_busy=(machine()[0] - first_machine[0])
                / max(machine()[1] - first_machine[1], 1e-9),
            )
        time.sleep(0.05)
    raise SystemExit("the inbox did not drain within an hour")


@dataclass
class Imported:
    lines: int
    unique: int
    stored: int
    seconds: float
    cpu: float
    again_stored: int
    again_seconds: float


def exported_lines(count: int, *, visitors: int, rng: random.Random) -> tuple[bytes, int]:
    """An export as Segment writes it (gzipped NDJSON, times of a month ago, corrected
    ``timestamp``, ``sentAt``, ``receivedAt``); about 5% of the lines carry no messageId.
    Returns the file's bytes and how many distinct events it holds."""
    month_ago = timedelta(days=30)
    ids: set[str] = set()
    without_id = 0
    lines = []
    for message in messages_make(count, visitors=visitors, rng=rng):
        at = datetime.fromisoformat(message["timestamp"]) - month_ago
        line = {
            **message,
            "originalTimestamp": (at - timedelta(milliseconds=200)).isoformat(),
            "timestamp": at.isoformat(),
            "sentAt": (at + timedelta(milliseconds=300)).isoformat(),
            "receivedAt": (at + timedelta(milliseconds=400)).isoformat(),
        }
        if message["messageId"] not in ids and rng.random() < 0.05:
            del line["messageId"]  # each such line is an event of its own
            without_id += 1
        else:
            ids.add(line["messageId"])
        lines.append(orjson.dumps(line))
    return gzip.compress(b"\n".join(lines) + b"\n", compresslevel=6), len(ids) + without_id


def import_measure(args, source, *, visitors: int, rng: random.Random) -> Imported:
    """``manage.py import_events`` of one export, then of the same file again, in this
    process (the worker's drain threads); time and CPU from the command's start to its end."""
    import re
    import tempfile

    from django.core.management import call_command

    data, unique = exported_lines(args.imports, visitors=visitors, rng=rng)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.ndjson.gz"
        path.write_bytes(data)
        for _ in range(2):
            out = io.StringIO()
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            call_command(
                "import_events", str(path), f"--write-key={source.write_key}", "--quiet", stdout=out
            )
            seconds = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            used = (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
            stored = int(re.search(r"stored +([\d,]+)", out.getvalue())[1].replace(",", ""))
            runs.append((stored, seconds, used))
            print("  " + out.getvalue().strip().replace("\n", "\n  "), file=sys.stderr)
    (stored, seconds, cpu), (again_stored, again_seconds, _) = runs
    return Imported(args.imports, unique, stored, seconds, cpu, again_stored, again_seconds)


def lean_peer_prepare(database_url: str) -> None:
    """The lean peer's table, empty, in the benchmark's database."""
    import psycopg

    sys.path.insert(0, str(ROOT / "bench"))
    from lean_peer import table_create

    with psycopg.connect(database_url, autocommit=True) as conn:
        table_create(conn)


def copy_baseline(messages: list[dict], workspace_id: int, source_id: int) -> float:
    """Rows/s of one raw COPY of the messages into a table shaped like the events table."""
    import psycopg
    from django.conf import settings

    database = settings.DATABASES["default"]
    buffer = io.StringIO()
    for m in messages:
        row = [
            workspace_id,
            source_id,
            1,
            "segment",
            m["type"],
            m.get("event") or m.get("name") or "",
            m["messageId"],
            m.get("userId", ""),
            m.get("anonymousId", ""),
            orjson.dumps(m.get("properties", {})).decode(),
            orjson.dumps(m.get("context", {})).decode(),
            orjson.dumps(m.get("traits", {})).decode(),
            m["timestamp"],
            m["timestamp"],
            "",
            "",
            "f",
            "browser",
            m.get("properties", {}).get("currency", ""),
        ]
        buffer.write("\t".join(copy_text(value) for value in row) + "\n")
    data = buffer.getvalue().encode()
    columns = (
        "workspace_id, source_id, guest_id, door, type, name, message_id, user_id, anonymous_id, "
        "properties, context, traits, timestamp, received_at, group_id, previous_id, "
        "timestamp_clamped, channel, currency"
    )
    with psycopg.connect(
        host=database["HOST"],
        port=database["PORT"],
        user=database["USER"],
        dbname=database["NAME"],
        autocommit=True,
    ) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (LIKE tracking_event INCLUDING ALL)")
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy(
                f"COPY bench_copy ({columns}) FROM STDIN"  # noqa: S608 - our own names
            ) as copy,
        ):
            for start in range(0, len(data), 1 << 20):
                copy.write(data[start : start + (1 << 20)])
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy")
    return len(messages) / seconds


def copy_text(value) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def report(
    args,
    *,
    accept,
    accept_peer,
    single,
    single_peer,
    processes,
    flows,
    flows_max,
    copy_rate,
    memory,
    unique,
    stored,
    failed,
    imported,
    backfill_stored,
    flows_run,
):
    cores = os.cpu_count() or 1

    def share(phase: Phase) -> str:
        return f"{phase.generator_cpu / (phase.seconds * cores):.0%}"

    def rate(phase: Phase) -> float:
        return phase.items / phase.seconds

    accept_rate, accept_peer_rate = rate(accept), rate(accept_peer)
    single_rate, single_peer_rate = rate(single), rate(single_peer)
    process = processes[0]
    process_rate = process.events / process.seconds
    flows_rate, flows_max_rate = rate(flows), rate(flows_max)
    web_mib, worker_mib = memory.get("web", 0) / 2**20, memory.get("worker", 0) / 2**20
    accept_ratio = accept_rate / accept_peer_rate
    single_ratio = single_rate / single_peer_rate
    copy_ratio = process_rate / copy_rate
    paced_p99 = flows.percentile(99)
    header = (
        "figure",
        "measured",
        "p50 ms",
        "p99 ms",
        "baseline",
        "server CPU",
        "gen. CPU",
        "conns/worker",
    )
    import_rate = imported.stored / imported.seconds
    rows = [
        header,
        (
            f"accept /v1/batch ({BATCH_SIZE}/batch)",
            f"{accept_rate:,.0f} msg/s",
            f"{accept.percentile(50):.1f}",
            f"{accept.percentile(99):.1f}",
            f"{accept_ratio:.2f} of lean peer",
            f"{accept.web_ms()} ms/request",
            share(accept),
            accept.split,
        ),
        (
            "  lean peer, same requests",
            f"{accept_peer_rate:,.0f} msg/s",
            f"{accept_peer.percentile(50):.1f}",
            f"{accept_peer.percentile(99):.1f}",
            "1.00",
            f"{accept_peer.web_ms()} ms/request",
            share(accept_peer),
            "",
        ),
        (
            "single /v1/track",
            f"{single_rate:,.0f} req/s",
            f"{single.percentile(50):.1f}",
            f"{single.percentile(99):.1f}",
            f"{single_ratio:.2f} of lean peer",
            f"{single.web_ms()} ms/request",
            share(single),
            single.split,
        ),
        (
            "  lean peer, same requests",
            f"{single_peer_rate:,.0f} req/s",
            f"{single_peer.percentile(50):.1f}",
            f"{single_peer.percentile(99):.1f}",
            "1.00",
            f"{single_peer.web_ms()} ms/request",
            share(single_peer),
            "",
        ),
        *(
            (
                f"process ({drain.workers} worker process{'es' if drain.workers > 1 else ''})",
                f"{drain.events / drain.seconds:,.0f} events/s",
                "",
                "",
                f"{drain.events / drain.seconds / copy_rate:.2f} of COPY"
                if drain.workers == 1
                else f"exactly once: {drain.stored:,}",
                f"{drain.worker_cpu / max(drain.events, 1) * 1e6:.0f} us/event, "
                f"{drain.worker_cpu / drain.seconds / drain.workers:.0%} busy",
                "",
                "",
            )
            for drain in processes
        ),
        ("  raw COPY, same rows", f"{copy_rate:,.0f} rows/s", "", "", "1.00", "", "", ""),
        (
            f"/v2/callFlows, {FLOW_CONNECTIONS} connections",
            f"{flows_max_rate:,.0f} req/s",
            f"{flows_max.percentile(50):.1f}",
            f"{flows_max.percentile(99):.1f}",
            "",
            f"{flows_max.web_ms()} ms/request",
            share(flows_max),
            "",
        ),
        (
            f"/v2/callFlows paced at {flows_rate:,.0f}/s",
            f"{flows_rate:,.0f} req/s",
            f"{flows.percentile(50):.1f}",
            f"{paced_p99:.1f}",
            "",
            f"{flows.web_ms()} ms/request",
            share(flows),
            "",
        ),
        (
            "import_events (NDJSON .gz)",
            f"{import_rate:,.0f} events/s",
            "",
            "",
            f"{import_rate / copy_rate:.2f} of COPY, {import_rate / process_rate:.2f}x process",
            f"{imported.cpu / max(imported.stored, 1) * 1e6:.0f} us/event, "
            f"{imported.cpu / imported.seconds:.0%} busy",
            "",
            "",
        ),
        (
            "  same file again (stores nothing)",
            f"{imported.lines / imported.again_seconds:,.0f} lines/s",
            "",
            "",
            "",
            f"stored {imported.again_stored:,}",
            "",
            "",
        ),
        ("peak RSS per process", f"web {web_mib:,.0f} MiB", "", "", "", "", "", ""),
        ("", f"worker {worker_mib:,.0f} MiB", "", "", "", "", "", ""),
    ]
    paced_at_target = flows_rate >= 0.95 * CALL_FLOWS_RATE
    targets = [
        (
            "accept >= 0.5 of lean peer, p99 <= 100 ms",
            f"{accept_ratio:.2f}, {accept.percentile(99):.0f} ms",
            accept_ratio >= 0.5 and accept.percentile(99) <= 100,
        ),
        ("accept >= 20,000 msg/s (SPEC)", f"{accept_rate:,.0f}", accept_rate >= 20_000),
        (
            "single >= 0.6 of lean peer, >= 1,500 req/s, p99 <= 50 ms",
            f"{single_ratio:.2f}, {single_rate:,.0f}/s, {single.percentile(99):.0f} ms",
            single_ratio >= 0.6 and single_rate >= 1500 and single.percentile(99) <= 50,
        ),
        (
            "process >= 10,000 events/s and >= 0.3 of COPY",
            f"{process_rate:,.0f}/s, {copy_ratio:.2f}",
            process_rate >= 10_000 and copy_ratio >= 0.3,
        ),
        (
            "callFlows >= 1,000 decisions/s (repeat guests)",
            f"{flows_max_rate:,.0f}/s",
            flows_max_rate >= 1000,
        ),
        (
            f"callFlows p99 <= 20 ms paced at {CALL_FLOWS_RATE}/s",
            f"{paced_p99:.0f} ms at {flows_rate:,.0f}/s",
            paced_at_target and paced_p99 <= 20,
        ),
        (
            "import_events >= the worker's rate; again stores 0",
            f"{import_rate / process_rate:.2f}x, stored {imported.again_stored:,}",
            import_rate >= process_rate and imported.again_stored == 0,
        ),
        (
            "RSS web <= 150 MiB, worker <= 250 MiB",
            f"{web_mib:,.0f} / {worker_mib:,.0f} MiB",
            web_mib <= 150 and worker_mib <= 250,
        ),
    ]
    print()
    print(
        f"Footprint ingestion benchmark: {cores} cores, gunicorn {args.web_workers} workers x "
        f"{args.threads} threads, {args.concurrency} connections "
        f"({args.concurrency * 2} for single tracks), "
        f"{args.batches:,} batches + {args.tracks:,} tracks + {args.imports:,} lines imported; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    table_print(rows)
    print()
    table_print(
        [("target (SPEC 10)", "measured", "")]
        + [(name, value, met(ok)) for name, value, ok in targets]
    )
    errors = {
        **accept.errors,
        **single.errors,
        **accept_peer.errors,
        **single_peer.errors,
        **flows.errors,
        **flows_max.errors,
    }
    print(
        f"\nsent {unique:,} unique messages (+ ~1% repeated ids), stored {stored:,}, "
        f"failed {failed}; HTTP errors {errors or 'none'}"
    )
    print(flows_stored_line(flows_run))
    print(
        f"imported {imported.lines:,} lines ({imported.unique:,} distinct events), stored "
        f"{backfill_stored:,}; the same file again stored {imported.again_stored:,}"
    )


def doors_report(
    args, doors: dict[str, tuple[Phase, Phase]], memory: dict, sent: int, stored: int
) -> None:
    """The report of ``--only``: the doors next to the lean peer, their targets, and that the
    inbox holds every request the doors accepted."""
    cores = os.cpu_count() or 1
    header = (
        "figure",
        "measured",
        "p50 ms",
        "p99 ms",
        "baseline",
        "server CPU",
        "gen. CPU",
        "conns/worker",
    )
    rows, targets = [header], [("target (SPEC 10)", "measured", "")]
    for name, (ours, peer) in doors.items():
        unit = "msg/s" if name == "accept" else "req/s"
        ratio = (ours.items / ours.seconds) / (peer.items / peer.seconds)
        label = f"accept /v1/batch ({BATCH_SIZE}/batch)" if name == "accept" else "single /v1/track"
        for phase, title, baseline in (
            (ours, label, f"{ratio:.2f} of lean peer"),
            (peer, "  lean peer, same requests", "1.00"),
        ):
            rows.append(
                (
                    title,
                    f"{phase.items / phase.seconds:,.0f} {unit}",
                    f"{phase.percentile(50):.1f}",
                    f"{phase.percentile(99):.1f}",
                    baseline,
                    f"{phase.web_ms()} ms/request",
                    f"{phase.generator_cpu / (phase.seconds * cores):.0%}",
                    ours.split if phase is ours else "",
                )
            )
        p99, rate = ours.percentile(99), ours.items / ours.seconds
        if name == "accept":
            ok = ratio >= 0.5 and p99 <= 100
            targets.append(
                ("accept >= 0.5 of lean peer, p99 <= 100 ms", f"{ratio:.2f}, {p99:.0f} ms", met(ok))
            )
        else:
            ok = ratio >= 0.6 and rate >= 1500 and p99 <= 50
            targets.append(
                (
                    "single >= 0.6 of lean peer, >= 1,500 req/s, p99 <= 50 ms",
                    f"{ratio:.2f}, {rate:,.0f}/s, {p99:.0f} ms",
                    met(ok),
                )
            )
    web_mib = memory.get("web", 0) / 2**20
    targets.append(("RSS web <= 150 MiB", f"{web_mib:,.0f} MiB", met(web_mib <= 150)))
    print()
    print(
        f"Footprint doors benchmark: {cores} cores, gunicorn {args.web_workers} workers x "
        f"{args.threads} threads, {args.concurrency} connections "
        f"({args.concurrency * 2} for single tracks); load {os.getloadavg()[0]:.1f}"
    )
    table_print(rows)
    print()
    table_print(targets)
    errors = {}
    for ours, peer in doors.values():
        errors |= ours.errors | peer.errors
    print(f"\naccepted requests {sent:,}, inbox rows {stored:,}; HTTP errors {errors or 'none'}")
    if stored != sent or errors:
        raise SystemExit(f"the inbox holds {stored} rows for {sent} requests sent")


def table_print(rows: list[tuple]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


if __name__ == "__main__":
    if (
        not shutil.which("pg_isready")
        or subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode
    ):
        raise SystemExit("needs PostgreSQL on 127.0.0.1:5432")
    main()
