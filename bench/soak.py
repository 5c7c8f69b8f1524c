"""A bounded soak of ingestion: mixed valid and invalid traffic with a worker killed mid-run.

    make soak                             # three minutes
    make soak SOAK_ARGS=--quick           # about 20 seconds: proves the soak still runs
    make soak SOAK_ARGS="--minutes 10"
    make soak SOAK_ARGS="--quick --topology"   # past one machine, as CI runs it

With ``--topology`` it runs as an installation past one machine does: two gunicorn instances
(the generator's connections take them in turn), three Celery worker processes on ``ingest`` and
one on ``segments``, beat, a PgBouncer in transaction mode between every process and
PostgreSQL (``bench/pooler.py``; ``DATABASE_POOLED=1``), and RabbitMQ as the broker (a virtual
host of the run's own; Redis stays the cache). The SIGKILL then hits whichever ingest worker is
caught inside a processing transaction, found through PgBouncer's ``SHOW CLIENTS`` and
``SHOW SERVERS``.

Starts Footprint the production way on local PostgreSQL (its own database, ``footprint_soak``,
dropped and rebuilt each run) and Redis (databases 9 and 10, not the benchmark's): gunicorn
(gthread), one Celery worker (solo pool) and celery beat, whose sweep re-queues inbox rows no
task picked up. For the whole run one asyncio process sends a steady, paced mix to ``/v1`` over
loopback keep-alive connections:

- valid batches (some gzip-compressed) and valid single track, page and identify requests;
- exact repeats: an accepted request sent again as it was (a client retry), and accepted
  messages again inside new batches and single requests;
- batches that hold some invalid messages (no event, no user or anonymous id, a bad timestamp,
  type or currency, a message that is not an object, U+0000, one over 32 KB, one nested too
  deep …): each must become one failed event;
- whole requests that must be refused with a 4xx and store nothing: malformed JSON, wrong
  envelope types, oversize bodies, too many messages, a bad or missing write key, an invalid
  single message, an unsupported or corrupt encoding, the wrong method.

The soak keeps its own ledger from the answers: the unique valid messageIds of the requests
answered 200, the invalid messages inside those requests (by expected reason), and the refused
requests by status and code. Halfway through it kills the Celery worker with SIGKILL while its
processing transaction is open (it waits for the worker's database session to have written) and
starts a new one; at three quarters it sends SIGTERM to one gunicorn worker, which gunicorn
replaces. At the end it waits, bounded, until the inbox is processed and checks in SQL:

- the events stored for the source are exactly the unique valid messageIds accepted;
- the failed events are exactly the invalid messages sent inside accepted requests, by reason;
- every accepted request is one inbox row, done; none is left pending or failed;
- one guest per person: as many unmerged guests as visitors stored, each visitor's events on one;
- the counters scraped from ``/metrics`` (added up over every process) agree with the above;
- no answer was a 5xx and every request was answered as expected.

It prints the counts and exits non-zero on any mismatch. Timings are never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import gzip
import io
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psutil
from ingest import (
    BIN,
    ROOT,
    Connection,
    MemoryWatch,
    database_rebuild,
    environment,
    free_port,
    gunicorn_start,
    http_request,
    message_make,
    process_stop,
    wait_http,
)
from pooler import pgbouncer_start

DATABASE = "footprint_soak"
CACHE_DB = 9
BROKER_DB = 10
VISITORS = 20_000
# Accepted messages kept to send again, and accepted requests kept to resend as they were.
POOL_SIZE = 20_000
RESEND_SIZE = 500
MAX_BATCH_BYTES = 500 * 1024
MAX_MESSAGE_BYTES = 32 * 1024
DEEP_PLACEHOLDER = "<nested 300 levels deep>"
# What the generator sends, by weight.
MIX = {
    "batch": 20,
    "batch gzip": 5,
    "single": 33,
    "resend request": 5,
    "repeat messages": 7,
    "batch with invalid": 15,
    "refused request": 15,
}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to send traffic")
    parser.add_argument("--quick", action="store_true", help="about 20 seconds")
    parser.add_argument("--rate", type=float, default=60, help="requests per second, paced")
    parser.add_argument("--concurrency", type=int, default=8, help="connections of the generator")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--worker-kills", type=int, default=1, help="SIGKILLs of the worker")
    parser.add_argument(
        "--no-web-restart", action="store_true", help="leave the gunicorn workers alone"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=240, help="seconds to wait for the inbox at the end"
    )
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--port", type=int, default=0, help="gunicorn port (0: a free one)")
    parser.add_argument(
        "--database-url",
        default=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        help="a PostgreSQL database the soak may drop and rebuild",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument(
        "--topology",
        action="store_true",
        help="past one machine: two gunicorn instances, three Celery workers on ingest and one "
        "on segments, beat, PgBouncer (transaction mode) and RabbitMQ as the broker",
    )
    parser.add_argument(
        "--rabbitmq-url",
        default="amqp://guest:guest@127.0.0.1:5672",
        help="RabbitMQ for --topology; the soak uses a virtual host of its own",
    )
    parser.add_argument("--cache-db", type=int, default=CACHE_DB, help="Redis db of the cache")
    parser.add_argument("--broker-db", type=int, default=BROKER_DB, help="Redis db of the broker")
    args = parser.parse_args()
    args.seconds = 20.0 if args.quick else args.minutes * 60
    return args


# --- the traffic ---------------------------------------------------------------------------


@dataclass
class Planned:
    """One request and what its answer must be."""

    kind: str
    request: bytes
    # messageIds of the valid messages inside (repeats included) and the fresh ones to remember.
    valid: list[str] = field(default_factory=list)
    fresh: list[dict] = field(default_factory=list)
    # The failed-event codes its invalid messages must become once accepted.
    invalid: list[str] = field(default_factory=list)
    # For a request that must be refused as a whole: the status it must get.
    refuse: int | None = None
    # messageIds inside a refused request: none may be stored.
    refused_ids: list[str] = field(default_factory=list)


def message_ids(messages: list) -> list[str]:
    return [m["messageId"] for m in messages if isinstance(m, dict) and "messageId" in m]


class Traffic:
    """Builds the mix, and remembers what was accepted so that it can be sent again."""

    def __init__(self, write_key: str, rng: random.Random):
        self.rng = rng
        self.auth = {
            "Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode(),
            "Content-Type": "application/json",
        }
        self.pool: list[dict] = []
        self.accepted: list[Planned] = []
        kinds = list(MIX)
        self.kinds, self.weights = kinds, [MIX[k] for k in kinds]

    # Memory of what was accepted.

    def remember(self, planned: Planned) -> None:
        for message in planned.fresh:
            if len(self.pool) < POOL_SIZE:
                self.pool.append(message)
            else:
                self.pool[self.rng.randrange(POOL_SIZE)] = message
        if planned.kind != "resend request":
            if len(self.accepted) < RESEND_SIZE:
                self.accepted.append(planned)
            else:
                self.accepted[self.rng.randrange(RESEND_SIZE)] = planned

    # Building blocks.

    def message(self, roll: float | None = None) -> dict:
        visitor = int(self.rng.paretovariate(1.2)) % VISITORS
        return message_make(visitor, datetime.now(UTC), self.rng, roll=roll)

    def messages(self, low: int, high: int) -> list[dict]:
        return [self.message() for _ in range(self.rng.randint(low, high))]

    def batch_body(self, messages: list, **envelope) -> bytes:
        return orjson.dumps({"batch": messages, "sentAt": datetime.now(UTC).isoformat()} | envelope)

    def post(self, path: str, body: bytes, **headers: str) -> bytes:
        return http_request("POST", path, body, self.auth | headers)

    # The mix.

    def next(self) -> Planned:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        if kind in ("resend request", "repeat messages") and not self.accepted:
            kind = "batch"
        return getattr(self, "make_" + kind.replace(" ", "_"))()

    def make_batch(self) -> Planned:
        messages = self.messages(5, 60)
        for _ in range(self.rng.choice([0, 0, 0, 1, 2])):  # exact repeats inside the batch
            messages.insert(self.rng.randrange(len(messages)), self.rng.choice(messages))
        return Planned(
            "batch",
            self.post("/v1/batch", self.batch_body(messages)),
            valid=message_ids(messages),
            fresh=messages,
        )

    def make_batch_gzip(self) -> Planned:
        messages = self.messages(5, 60)
        body = gzip.compress(self.batch_body(messages), compresslevel=5)
        return Planned(
            "batch gzip",
            self.post("/v1/batch", body, **{"Content-Encoding": "gzip"}),
            valid=message_ids(messages),
            fresh=messages,
        )

    def make_single(self) -> Planned:
        message = self.message()
        return Planned(
            "single",
            self.post(f"/v1/{message['type']}", orjson.dumps(message)),
            valid=[message["messageId"]],
            fresh=[message],
        )

    def make_resend_request(self) -> Planned:
        """A client retry: an accepted request again, byte for byte."""
        earlier = self.rng.choice(self.accepted)
        return Planned(
            "resend request", earlier.request, valid=earlier.valid, invalid=earlier.invalid
        )

    def make_repeat_messages(self) -> Planned:
        repeats = [self.rng.choice(self.pool) for _ in range(self.rng.randint(1, 30))]
        if self.rng.random() < 0.3:
            message = repeats[0]
            request = self.post(f"/v1/{message['type']}", orjson.dumps(message))
            return Planned("repeat messages", request, valid=[message["messageId"]])
        fresh = self.messages(0, 10)
        messages = repeats + fresh
        self.rng.shuffle(messages)
        return Planned(
            "repeat messages",
            self.post("/v1/batch", self.batch_body(messages)),
            valid=message_ids(messages),
            fresh=fresh,
        )

    def make_batch_with_invalid(self) -> Planned:
        messages: list = self.messages(5, 40)
        valid = message_ids(messages)
        codes = []
        for _ in range(self.rng.randint(1, 5)):
            code, bad = self.invalid_message()
            codes.append(code)
            messages.insert(self.rng.randrange(len(messages) + 1), bad)
        body = self.batch_body(messages).replace(
            orjson.dumps(DEEP_PLACEHOLDER), b"[" * 300 + b"0" + b"]" * 300
        )
        return Planned(
            "batch with invalid",
            self.post("/v1/batch", body),
            valid=valid,
            fresh=[m for m in messages if isinstance(m, dict) and m.get("messageId") in valid],
            invalid=codes,
        )

    def invalid_message(self) -> tuple[str, object]:
        """A message the worker must refuse, and the failed event's code."""
        message = self.message(roll=0.0)  # a track
        roll = self.rng.random()
        if roll < 0.15:
            del message["event"]
            return "missing_event", message
        if roll < 0.30:
            del message["anonymousId"]
            return "no_user_anon_id", message
        if roll < 0.42:
            message["timestamp"] = "yesterday at noon"
            return "invalid_timestamp", message
        if roll < 0.52:
            message["type"] = "purchase"
            return "invalid_type", message
        if roll < 0.60:
            del message["type"]
            return "missing_type", message
        if roll < 0.66:
            return "invalid_message", self.rng.choice([42, "track", None, ["a", "b"]])
        if roll < 0.74:
            message["properties"]["currency"] = "EURO"
            return "invalid_currency", message
        if roll < 0.80:
            message["properties"]["revenue"] = "a lot"
            return "invalid_revenue", message
        if roll < 0.86:
            message["userId"] = {"id": 7}
            return "invalid_id", message
        if roll < 0.92:
            message["properties"]["note"] = "before\x00after"
            return "invalid_character", message
        if roll < 0.97:
            message["properties"]["note"] = "x" * (MAX_MESSAGE_BYTES + 100)
            return "message_too_large", message
        # orjson writes at most 254 levels: the placeholder is swapped for 300 after dumping.
        message["properties"]["deep"] = DEEP_PLACEHOLDER
        return "too_deep", message

    def make_refused_request(self) -> Planned:
        """A request that must be refused as a whole: its status, and nothing stored."""
        pick = self.rng.randrange(16)
        messages = self.messages(2, 10)
        ids = message_ids(messages)
        batch = self.batch_body(messages)
        if pick == 0:
            request, status = self.post("/v1/batch", batch[:-9]), 400  # malformed JSON
        elif pick == 1:
            request, status = self.post("/v1/batch", orjson.dumps(messages)), 400  # an array
        elif pick == 2:
            body = orjson.dumps({"batch": {"first": messages[0]}})
            request, status = self.post("/v1/batch", body), 400  # batch is not a list
        elif pick == 3:
            body = self.batch_body(messages, sentAt="soon")
            request, status = self.post("/v1/batch", body), 400  # a bad sentAt
        elif pick == 4:
            body = self.batch_body(messages, context="web")
            request, status = self.post("/v1/batch", body), 400  # context is not an object
        elif pick == 5 and self.rng.random() < 0.3:  # over 500 KB: rarer, it is costly to build
            while len(batch) <= MAX_BATCH_BYTES:
                messages += self.messages(100, 100)
                batch = self.batch_body(messages)
            ids = message_ids(messages)
            request, status = self.post("/v1/batch", batch), 400
        elif pick == 5:
            message = self.message(roll=0.0)
            message["properties"]["note"] = "x" * MAX_MESSAGE_BYTES
            ids = [message["messageId"]]
            request, status = self.post("/v1/track", orjson.dumps(message)), 400  # over 32 KB
        elif pick == 6:
            body = orjson.dumps({"batch": [{}] * 2501})
            request, status = self.post("/v1/batch", body), 400  # too many messages
        elif pick == 7:
            key = base64.b64encode(b"not-a-key:").decode()
            request = self.post("/v1/batch", batch, Authorization=f"Basic {key}")
            status = 401
        elif pick == 8:
            headers = {"Content-Type": "application/json"}
            request, status = http_request("POST", "/v1/batch", batch, headers), 401  # no key
        elif pick == 9:
            request = self.post("/v1/batch", batch, Authorization="Basic not*base64")
            status = 401
        elif pick == 10:
            message = self.message(roll=0.0)
            del message["event"]
            ids = [message["messageId"]]
            request, status = self.post("/v1/track", orjson.dumps(message)), 400
        elif pick == 11:
            message = self.message(roll=0.7)
            del message["anonymousId"]
            ids = [message["messageId"]]
            request, status = self.post("/v1/page", orjson.dumps(message)), 400
        elif pick == 12:
            request = self.post("/v1/batch", batch, **{"Content-Encoding": "br"})
            status = 415
        elif pick == 13:
            body = bytearray(gzip.compress(batch))
            for index in range(12, len(body) - 8, 7):
                body[index] ^= 0x5A
            request = self.post("/v1/batch", bytes(body), **{"Content-Encoding": "gzip"})
            status = 400
        elif pick == 14:
            request, status = http_request("GET", "/v1/batch", b"", self.auth), 405
            ids = []
        else:
            message = self.message(roll=0.0)
            message["timestamp"] = "2026-13-45T99:00:00Z"
            ids = [message["messageId"]]
            request, status = self.post("/v1/track", orjson.dumps(message)), 400
        return Planned("refused request", request, refuse=status, refused_ids=ids)


# --- the ledger ----------------------------------------------------------------------------


@dataclass
class Ledger:
    requests: Counter = field(default_factory=Counter)  # by kind
    statuses: Counter = field(default_factory=Counter)
    accepted_requests: int = 0
    accepted_ids: set[str] = field(default_factory=set)
    valid_sent: int = 0  # valid messages inside accepted requests, repeats included
    invalid_expected: Counter = field(default_factory=Counter)  # failed-event code -> count
    refused: Counter = field(default_factory=Counter)  # (status, code) -> count
    refused_ids: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)
    unexpected_count: int = 0
    transport_errors: int = 0
    resent_on_closed: int = 0
    events: list[str] = field(default_factory=list)

    def answer(self, planned: Planned, status: int, body: bytes, traffic: Traffic) -> None:
        self.requests[planned.kind] += 1
        self.statuses[status] += 1
        if planned.refuse is None and status == 200:
            self.accepted_requests += 1
            self.accepted_ids.update(planned.valid)
            self.valid_sent += len(planned.valid)
            self.invalid_expected.update(planned.invalid)
            traffic.remember(planned)
            return
        if planned.refuse is not None and status == planned.refuse:
            try:
                answer = orjson.loads(body)
                code = answer["code"] if isinstance(answer.get("message"), str) else None
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                code = None
            self.refused[(status, code or "(no {code, message} body)")] += 1
            self.refused_ids.update(planned.refused_ids)
            if code is None:
                self.mismatch(f"{planned.kind}: HTTP {status} without a code and message")
            return
        self.refused_ids.update(planned.refused_ids)
        expected = planned.refuse or 200
        self.mismatch(f"{planned.kind}: HTTP {status}, expected {expected}: {body[:200]!r}")

    def mismatch(self, text: str) -> None:
        self.unexpected_count += 1
        if len(self.unexpected) < 10:
            self.unexpected.append(text)
            print(f"  unexpected: {text}", file=sys.stderr)

    def note(self, text: str) -> None:
        self.events.append(text)
        print(f"  {text}", file=sys.stderr)


class Link(Connection):
    """A connection that counts requests sent again after the server closed it."""

    def __init__(self, port: int):
        super().__init__(port)
        self.closes = 0

    def close(self) -> None:
        if self.writer is not None:
            self.closes += 1
        super().close()

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        before = self.closes
        status, body = await self.send(request)
        # One close is the server's "Connection: close" after the answer; any other is a resend.
        resent = self.closes - before - (1 if self.writer is None else 0) > 0
        return status, body, resent


async def traffic_send(
    ports: list[int],
    traffic: Traffic,
    ledger: Ledger,
    *,
    rate: float,
    seconds: float,
    connections: int,
) -> None:
    """Send request i at ``i / rate`` seconds until ``seconds`` have passed; the connections
    take the web instances' ports in turn."""
    start = time.perf_counter() + 0.05
    counter = iter(range(10**9))

    async def run(port: int) -> None:
        link = Link(port)
        while True:
            due = start + next(counter) / rate
            if due - start >= seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            planned = traffic.next()
            try:
                status, body, resent = await link.exchange(planned.request)
            except (OSError, asyncio.IncompleteReadError) as exc:
                ledger.transport_errors += 1
                ledger.requests[planned.kind] += 1
                ledger.mismatch(f"{planned.kind}: no answer ({type(exc).__name__}: {exc})")
                link.close()
                continue
            ledger.resent_on_closed += resent
            ledger.answer(planned, status, body, traffic)
        link.close()

    await asyncio.gather(*(run(ports[i % len(ports)]) for i in range(connections)))


# --- the disruptions -----------------------------------------------------------------------


class Disruptor(threading.Thread):
    """Kills the Celery worker mid-batch and restarts a gunicorn worker, on schedule."""

    def __init__(self, args, env, processes: dict, ledger: Ledger, memory: MemoryWatch, logs):
        super().__init__(daemon=True)
        self.logs = logs
        self.args, self.env, self.processes = args, env, processes
        self.ledger, self.memory = ledger, memory
        self.stopped = threading.Event()
        self.kills = 0
        self.web_restarts = 0
        self.error: BaseException | None = None
        plan = [((i + 1) / (args.worker_kills + 1), "worker") for i in range(args.worker_kills)]
        if not args.no_web_restart:
            plan.append((0.75, "web"))
        self.plan = sorted(plan)

    def run(self) -> None:
        started = time.monotonic()
        try:
            for fraction, what in self.plan:
                if self.stopped.wait(
                    max(0, started + fraction * self.args.seconds - time.monotonic())
                ):
                    return
                if what == "worker":
                    self.worker_kill(time.monotonic() - started)
                else:
                    self.web_restart(time.monotonic() - started)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def worker_kill(self, at: float) -> None:
        """SIGKILL an ingest worker inside a processing transaction: preferably while it writes
        events or dedup keys, else as soon as it holds claimed inbox rows."""
        import psycopg

        roles = self.args.ingest_roles
        caught = role = None
        with psycopg.connect(self.args.database_url, autocommit=True) as conn:
            started = time.monotonic()
            while caught is None and time.monotonic() < started + 20:
                writing = time.monotonic() < started + 10
                for candidate in roles:
                    backends = self.backends(conn, self.processes[candidate])
                    if not backends:
                        continue
                    # A transaction id is assigned once the claim's FOR UPDATE locks rows.
                    caught = conn.execute(
                        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 60) "
                        "FROM pg_stat_activity WHERE pid = ANY(%s) "
                        "AND backend_xid IS NOT NULL AND xact_start IS NOT NULL "
                        "AND (NOT %s OR (state = 'active' AND query ~ '^\\s*(COPY|INSERT)'))",
                        [backends, writing],
                    ).fetchone()
                    if caught is not None:
                        role = candidate
                        break
                if caught is None:
                    time.sleep(0.002)
            role = role or roles[0]
            worker: subprocess.Popen = self.processes[role]
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            pending = conn.execute(
                "SELECT count(*) FROM tracking_inboxrequest WHERE status = 'pending'"
            ).fetchone()[0]
        self.kills += 1
        where = (
            f"inbox rows claimed, transaction open, running: {caught[0].strip()}…"
            if caught
            else "no open transaction caught within 20 s"
        )
        self.ledger.note(
            f"{at:.0f} s: SIGKILL Celery worker {worker.pid} ({role}; {where}); "
            f"{pending} inbox rows pending"
        )
        log = self.logs.open(f"{role}-after-kill-{self.kills}")
        self.processes[role] = replacement = ingest_worker_start(self.env, log, role)
        self.memory.watch(role, replacement.pid)
        self.ledger.note(f"{at:.0f} s: new Celery worker {replacement.pid} ({role})")

    def backends(self, conn, worker: subprocess.Popen) -> list[int]:
        """The PostgreSQL backend pids serving ``worker`` now: its own connections, or through
        PgBouncer the server connections linked to its client connections."""
        try:
            local = {
                c.laddr.port: c.raddr.port
                for c in psutil.Process(worker.pid).net_connections(kind="tcp")
                if c.raddr
            }
        except psutil.Error:
            return []
        direct = [port for port, remote in local.items() if remote == 5432]
        if self.args.pooler_port is None:
            if not direct:
                return []
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", [direct]
            ).fetchall()
            return [row[0] for row in rows]
        pooled = {port for port, remote in local.items() if remote == self.args.pooler_port}
        if not pooled:
            return []
        clients = pgbouncer_show(self.args.pooler_port, "CLIENTS")
        servers = {row["ptr"]: row for row in pgbouncer_show(self.args.pooler_port, "SERVERS")}
        return [
            int(servers[row["link"]]["remote_pid"])
            for row in clients
            if row["port"].isdigit() and int(row["port"]) in pooled and row["link"] in servers
        ]

    def web_restart(self, at: float) -> None:
        """SIGTERM one gunicorn worker: it finishes its requests and gunicorn starts another."""
        master = psutil.Process(self.processes["web"].pid)
        children = master.children()
        if not children:
            self.ledger.mismatch("gunicorn has no worker to restart")
            return
        victim = children[0]
        victim.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            current = {p.pid for p in master.children()}
            if victim.pid not in current and len(current) >= self.args.web_workers:
                break
            time.sleep(0.1)
        else:
            self.ledger.mismatch(f"gunicorn worker {victim.pid} was not replaced within 30 s")
            return
        self.web_restarts += 1
        self.ledger.note(f"{at:.0f} s: SIGTERM gunicorn worker {victim.pid}; replaced")


# --- the run -------------------------------------------------------------------------------


class Logs:
    """The servers' logs, one file each, kept after the run in a directory of their own."""

    # Django's warning for every 4xx answer: the refused requests, expected.
    EXPECTED = re.compile(
        rb"^(Bad Request|Unauthorized|Method Not Allowed|Unsupported Media Type):"
    )
    NOTABLE = re.compile(rb"Traceback|ERROR|CRITICAL|[Ee]xception|failed|database error|[Ll]ost")

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="footprint-soak-"))
        self.files = []

    def open(self, name: str):
        handle = (self.directory / f"{name}.log").open("wb")
        self.files.append(handle)
        return handle

    def close(self) -> None:
        for handle in self.files:
            handle.close()

    def notable(self) -> tuple[int, int, list[str]]:
        """Lines in all, 4xx warnings among them, and the lines worth reading."""
        lines = expected = 0
        found = []
        for path in sorted(self.directory.glob("*.log")):
            for line in path.read_bytes().splitlines():
                lines += 1
                if self.EXPECTED.match(line):
                    expected += 1
                elif self.NOTABLE.search(line):
                    found.append(f"{path.name}: {line.decode(errors='replace')[:160]}")
        return lines, expected, found


def pgbouncer_show(port: int, what: str) -> list[dict[str, str]]:
    """A ``SHOW`` of PgBouncer's admin console (it speaks only the simple query protocol)."""
    out = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "--csv",
            "-c",
            f"SHOW {what}",
            "pgbouncer",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return list(csv.DictReader(io.StringIO(out)))


def worker_start(env: dict[str, str], queues: str, log, *, name: str) -> subprocess.Popen:
    """One Celery worker process (solo pool) on ``queues``, named ``name`` (unique per broker)."""
    return subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "-n",
            f"{name}@%h",
            "-Q",
            queues,
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


def ingest_worker_start(env: dict[str, str], log, role: str = "worker") -> subprocess.Popen:
    return worker_start(env, "ingest", log, name=role)


def rabbitmq_vhost(args, create: bool) -> str:
    """A RabbitMQ virtual host of this run's own, so no other run's tasks mix with it."""
    vhost = f"footprint-soak-{os.getpid()}"
    if create:
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
        )
    else:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)
    return f"{args.rabbitmq_url.rstrip('/')}/{vhost}"


def metrics_scrape(port: int, token: str) -> dict[tuple[str, tuple], float]:
    """Every sample of ``GET /metrics`` on a web instance."""
    from prometheus_client.parser import text_string_to_metric_families

    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            http_request("GET", "/metrics", b"", {"Authorization": f"Bearer {token}"}).replace(
                b"Connection: keep-alive", b"Connection: close"
            )
        )
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"GET /metrics answered {head[:60]!r}")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metrics_rows(samples: dict, ledger: Ledger, found: Found) -> list[tuple[str, int, int]]:
    """The scraped counters, added up over every process, against what was sent and stored."""

    def total(name: str, **labels) -> int:
        return round(
            sum(
                value
                for (sample, sample_labels), value in samples.items()
                if sample == name
                and all(dict(sample_labels).get(k) == v for k, v in labels.items())
            )
        )

    invalid = sum(ledger.invalid_expected.values())
    return [
        (
            "metrics: /v1 answers 200",
            ledger.statuses[200],
            total("footprint_door_requests_total", door="segment", status="200"),
        ),
        (
            "metrics: messages accepted",
            ledger.valid_sent + invalid,
            total("footprint_messages_accepted_total"),
        ),
        ("metrics: events stored", found.events, total("footprint_events_stored_total")),
        (
            "metrics: failed events",
            sum(found.failed.values()),
            total("footprint_events_failed_total"),
        ),
        ("metrics: inbox pending", 0, total("footprint_inbox_pending")),
    ]


def beat_start(env: dict[str, str], directory: Path, log) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "config",
            "beat",
            "--schedule",
            str(directory / "beat-schedule"),
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def inbox_wait(args, processes: dict, ledger: Ledger) -> float:
    """Seconds until no inbox row is pending (bounded by ``--drain-timeout``)."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        while True:
            pending = conn.execute(
                "SELECT count(*) FROM tracking_inboxrequest WHERE status = 'pending'"
            ).fetchone()[0]
            waited = time.monotonic() - started
            if not pending:
                return waited
            for role in args.ingest_roles:
                if processes[role].poll() is not None:
                    ledger.mismatch(f"the Celery worker {role} exited on its own")
                    return waited
            if waited > args.drain_timeout:
                ledger.mismatch(f"{pending} inbox rows still pending after {waited:.0f} s")
                return waited
            time.sleep(0.5)


@dataclass
class Found:
    events: int
    distinct: int
    missing: int
    not_accepted: int
    refused_stored: int
    other_sources: int
    failed: Counter
    inbox: Counter
    persons: int = 0
    guests: int = 0
    split: int = 0


def database_check(args, source_id: int, ledger: Ledger) -> Found:
    import psycopg

    with psycopg.connect(args.database_url, autocommit=True) as conn:
        stored = [
            row[0]
            for row in conn.execute(
                "SELECT message_id FROM tracking_event WHERE source_id = %s", [source_id]
            )
        ]
        other = conn.execute(
            "SELECT count(*) FROM tracking_event WHERE source_id <> %s", [source_id]
        ).fetchone()[0]
        failed = Counter(
            dict(
                conn.execute(
                    "SELECT code, count(*) FROM tracking_failedevent WHERE source_id = %s "
                    "GROUP BY code",
                    [source_id],
                ).fetchall()
            )
        )
        inbox = Counter(
            dict(
                conn.execute(
                    "SELECT status, count(*) FROM tracking_inboxrequest GROUP BY status"
                ).fetchall()
            )
        )
        # One guest per person: every visitor's messages carry its anonymousId.
        persons = conn.execute(
            "SELECT count(DISTINCT anonymous_id) FROM tracking_event WHERE source_id = %s",
            [source_id],
        ).fetchone()[0]
        guests = conn.execute(
            "SELECT count(*) FROM profiles_guest g JOIN tracking_source s "
            "ON s.workspace_id = g.workspace_id WHERE s.id = %s AND g.merged_into_id IS NULL",
            [source_id],
        ).fetchone()[0]
        split = conn.execute(
            "SELECT count(*) FROM (SELECT e.anonymous_id FROM tracking_event e "
            "JOIN profiles_guest g ON g.id = e.guest_id WHERE e.source_id = %s "
            "GROUP BY e.anonymous_id HAVING count(DISTINCT coalesce(g.merged_into_id, g.id)) > 1"
            ") AS split",
            [source_id],
        ).fetchone()[0]
    ids = set(stored)
    return Found(
        events=len(stored),
        distinct=len(ids),
        missing=len(ledger.accepted_ids - ids),
        not_accepted=len(ids - ledger.accepted_ids),
        refused_stored=len(ids & ledger.refused_ids),
        other_sources=other,
        failed=failed,
        inbox=inbox,
        persons=persons,
        guests=guests,
        split=split,
    )


def topology(args) -> str:
    web = f"gunicorn {args.web_workers} workers x {args.threads} threads"
    if not args.topology:
        return f"{web}, 1 Celery worker (solo pool) + beat, Redis broker"
    return (
        f"2 x {web}, 3 Celery workers on ingest + 1 on segments (solo pools) + beat, "
        "PgBouncer (transaction mode), RabbitMQ broker"
    )


def report(
    args, ledger: Ledger, found: Found, *, disruptor, drain_seconds, memory, metrics
) -> list[str]:
    """Print the counts; the failed checks."""
    sent = sum(ledger.requests.values())
    refused = sum(ledger.refused.values())
    print()
    print(
        f"Footprint soak: {args.seconds / 60:.1f} min at {args.rate:.0f} requests/s over "
        f"{args.concurrency} loopback connections; {topology(args)}"
    )
    print()
    print("sent")
    for kind in MIX:
        print(f"  {kind:<40}{ledger.requests[kind]:>10,}")
    print(f"  {'requests':<40}{sent:>10,}")
    print(f"  {'answered 200':<40}{ledger.statuses[200]:>10,}")
    print(f"  {'refused as expected (4xx)':<40}{refused:>10,}")
    for (status, code), count in sorted(ledger.refused.items()):
        print(f"    {status} {code:<34}{count:>10,}")
    server = sum(n for status, n in ledger.statuses.items() if status >= 500)
    print(f"  {'5xx':<40}{server:>10,}")
    print(f"  {'answered otherwise than expected':<40}{ledger.unexpected_count:>10,}")
    print(f"  {'no answer (transport error)':<40}{ledger.transport_errors:>10,}")
    print(f"  {'sent again on a closed connection':<40}{ledger.resent_on_closed:>10,}")
    print(f"  {'valid messages in accepted requests':<40}{ledger.valid_sent:>10,}")
    print(f"  {'  unique messageIds (accepted)':<40}{len(ledger.accepted_ids):>10,}")
    print(f"  {'  repeats':<40}{ledger.valid_sent - len(ledger.accepted_ids):>10,}")
    invalid = sum(ledger.invalid_expected.values())
    print(f"  {'invalid messages in accepted requests':<40}{invalid:>10,}")
    print(f"  {'messageIds in refused requests':<40}{len(ledger.refused_ids):>10,}")
    print()
    print("disruptions")
    print(f"  {'Celery worker SIGKILLs':<40}{disruptor.kills:>10,}")
    print(f"  {'gunicorn worker SIGTERMs':<40}{disruptor.web_restarts:>10,}")
    for event in ledger.events:
        print(f"    {event}")
    print(f"  inbox processed {drain_seconds:.0f} s after the traffic stopped")
    worker_rss = max((memory.get(role, 0) for role in args.ingest_roles), default=0)
    print(
        f"  peak RSS: web {memory.get('web', 0) / 2**20:,.0f} MiB, "
        f"worker {worker_rss / 2**20:,.0f} MiB"
    )

    rows: list[tuple[str, int, int]] = [
        ("events stored for the source", len(ledger.accepted_ids), found.events),
        ("  distinct messageIds among them", len(ledger.accepted_ids), found.distinct),
        ("  accepted messageIds not stored", 0, found.missing),
        ("  stored messageIds never accepted", 0, found.not_accepted),
        ("  messageIds of refused requests stored", 0, found.refused_stored),
        ("events stored for any other source", 0, found.other_sources),
        ("failed events", invalid, sum(found.failed.values())),
    ]
    for code in sorted(set(ledger.invalid_expected) | set(found.failed)):
        rows.append((f"  {code}", ledger.invalid_expected[code], found.failed[code]))
    rows += [
        ("guests (one per person)", found.persons, found.guests),
        ("  persons whose events are on several guests", 0, found.split),
        ("inbox requests done", ledger.accepted_requests, found.inbox["done"]),
        ("inbox requests pending", 0, found.inbox["pending"]),
        ("inbox requests failed", 0, found.inbox["failed"]),
        ("HTTP 5xx", 0, server),
        ("answers other than expected", 0, ledger.unexpected_count),
        ("requests without an answer", 0, ledger.transport_errors),
        ("Celery worker SIGKILLs", args.worker_kills, disruptor.kills),
        *metrics,
    ]
    print()
    print(f"{'check':<44}{'expected':>10}{'found':>10}")
    print(f"{'-' * 44}{'-' * 10:>10}{'-' * 10:>10}")
    failures = []
    for name, expected, got in rows:
        mark = "" if expected == got else "   MISMATCH"
        print(f"{name:<44}{expected:>10,}{got:>10,}{mark}")
        if mark:
            failures.append(f"{name.strip()}: expected {expected}, found {got}")
    return failures


def main() -> None:
    args = arguments()
    env = environment(args, cache_db=args.cache_db, broker_db=args.broker_db)
    os.environ.update(env)
    print(f"Preparing {args.database_url.rsplit('/', 1)[1]} …", file=sys.stderr)
    database_rebuild(args, env, redis_dbs=(args.cache_db, args.broker_db))

    import django

    django.setup()
    from django.db import connection

    from tracking import services

    workspace = services.workspace_create(name="Soak")
    source = services.source_create(workspace=workspace, name="Shop")
    connection.close()

    traffic = Traffic(source.write_key, random.Random(args.seed))
    ledger = Ledger()
    memory = MemoryWatch()
    memory.start()
    logs = Logs()
    print(f"Server logs in {logs.directory}", file=sys.stderr)
    # Every process counts into one directory; any web instance's /metrics adds them up.
    token = secrets.token_urlsafe(24)
    metrics_dir = logs.directory / "metrics"
    metrics_dir.mkdir()
    env.update(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), FOOTPRINT_METRICS_TOKEN=token)
    processes: dict[str, subprocess.Popen] = {}
    args.pooler_port = None
    args.ingest_roles = ["worker-1", "worker-2", "worker-3"] if args.topology else ["worker"]
    if args.topology:
        processes["pgbouncer"], pooled_url, pooler_dir = pgbouncer_start(args.database_url)
        print(f"PgBouncer's configuration and log in {pooler_dir}", file=sys.stderr)
        args.pooler_port = int(pooled_url.rsplit(":", 1)[1].split("/", 1)[0])
        env.update(
            DATABASE_URL=pooled_url,
            DATABASE_POOLED="1",
            CELERY_BROKER_URL=rabbitmq_vhost(args, create=True),
        )
    ports = [args.port or free_port()] + ([free_port()] if args.topology else [])
    disruptor = Disruptor(args, env, processes, ledger, memory, logs)
    try:
        processes["web"] = gunicorn_start(args, env, ports[0], logs.open("web"))
        if args.topology:
            processes["web-2"] = gunicorn_start(args, env, ports[1], logs.open("web-2"))
            processes["segments"] = worker_start(
                env, "segments,default", logs.open("segments"), name="segments"
            )
        for role in args.ingest_roles:
            processes[role] = ingest_worker_start(env, logs.open(role), role)
        processes["beat"] = beat_start(env, logs.directory, logs.open("beat"))
        for port in ports:
            wait_http(port)
        memory.watch("web", processes["web"].pid)
        for role in args.ingest_roles:
            memory.watch(role, processes[role].pid)
        print(f"Sending for {args.seconds:.0f} s at {args.rate:.0f} requests/s …", file=sys.stderr)
        disruptor.start()
        asyncio.run(
            traffic_send(
                ports,
                traffic,
                ledger,
                rate=args.rate,
                seconds=args.seconds,
                connections=args.concurrency,
            )
        )
        disruptor.stopped.set()
        disruptor.join()
        if disruptor.error is not None:
            raise disruptor.error
        print("Waiting for the inbox to be processed …", file=sys.stderr)
        drain_seconds = inbox_wait(args, processes, ledger)
        memory.stopped.set()
        found = database_check(args, source.pk, ledger)
        samples = metrics_scrape(ports[-1], token)
    finally:
        disruptor.stopped.set()
        memory.stopped.set()
        for role in reversed(list(processes)):
            process_stop(processes[role])
        logs.close()
        if args.topology:
            rabbitmq_vhost(args, create=False)
    failures = report(
        args,
        ledger,
        found,
        disruptor=disruptor,
        drain_seconds=drain_seconds,
        memory=memory.peaks,
        metrics=metrics_rows(samples, ledger, found),
    )
    lines, expected, notable = logs.notable()
    print(
        f"\nserver logs: {logs.directory} ({lines:,} lines, {expected:,} of them the expected "
        f"warnings of 4xx answers; {len(notable)} mention an error or failure)"
    )
    for line in notable[:8]:
        print(f"  {line}")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        for text in ledger.unexpected:
            print(f"  {text}")
        raise SystemExit(1)
    print("\nOK: stored = unique valid messages accepted, failed = invalid messages sent.")


if __name__ == "__main__":
    if (
        not shutil.which("pg_isready")
        or subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode
    ):
        raise SystemExit("needs PostgreSQL on 127.0.0.1:5432")
    main()
