"""The vendors' own SDKs, unmodified, pointed at a running Footprint.

Each SDK sends identify, track, page, screen, group and alias over real HTTP to the live
server (always by address, 127.0.0.1); the events are then read back through the read API,
over HTTP too, and checked field by field. An SDK that reports an error fails the test: the
Python SDKs through their ``on_error`` callbacks (or the exception of sync mode), the Node SDK
through its ``error`` event and per-call callbacks.
"""

import http.client
import importlib
import json
import shutil
import subprocess
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from django.utils import timezone

from tests.conftest import REQUIRE_SERVICES
from tests.factories import TokenFactory, UserFactory
from tracking import services
from tracking.models import FailedEvent, InboxRequest

pytestmark = pytest.mark.django_db(transaction=True)

NODE_DIR = Path(__file__).resolve().parent.parent / "sdks" / "node"
NODE_SDK_PACKAGE = NODE_DIR / "node_modules" / "@segment" / "analytics-node"
GZIP_MAGIC = b"\x1f\x8b"


# --- The calls every SDK makes ----------------------------------------------------------------


def calls_script(tag: str) -> list[dict]:
    """The six calls, with the spec's field names, as an SDK user would make them.

    Each carries its own messageId and a timestamp a few minutes old, so the read-back can
    tell that both were kept rather than made up on arrival.
    """
    user, anonymous = f"{tag}-user", f"{tag}-anon"
    calls = [
        (
            "identify",
            {
                "userId": user,
                "anonymousId": anonymous,
                "traits": {"email": f"{tag}@example.com", "firstName": "Ada", "plan": "pro"},
            },
        ),
        (
            "track",
            {
                "userId": user,
                "event": "Order Completed",
                "properties": {"orderId": "o-1", "revenue": 19.99, "currency": "EUR"},
            },
        ),
        (
            "page",
            {
                "userId": user,
                "name": "Pricing",
                "properties": {"url": "https://shop.example/pricing", "path": "/pricing"},
            },
        ),
        ("screen", {"userId": user, "name": "Basket", "properties": {"items": 2}}),
        (
            "group",
            {"userId": user, "groupId": f"{tag}-acme", "traits": {"name": "Acme", "seats": 42}},
        ),
        ("alias", {"userId": user, "previousId": f"{tag}-legacy"}),
    ]
    start = timezone.now().replace(microsecond=250_000) - timedelta(minutes=5)
    return [
        {
            "method": method,
            "params": {
                **params,
                "messageId": f"{tag}-{method}-{uuid.uuid4()}",
                "timestamp": start + timedelta(seconds=index),
            },
        }
        for index, (method, params) in enumerate(calls)
    ]


# Spec field names to the keyword arguments of the Python SDKs' clients (all three agree).
PYTHON_KWARGS = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "messageId": "message_id",
    "groupId": "group_id",
    "previousId": "previous_id",
}


# --- Footprint, its read API and the checks ---------------------------------------------------


@pytest.fixture
def footprint(live_server) -> str:
    """The live server's base URL by address, so no SDK resolves ``localhost`` to ``::1``."""
    return f"http://127.0.0.1:{live_server.thread.port}"


class ReadApi:
    """The read API over real HTTP, with the token of a member of the source's workspace."""

    def __init__(self, base_url: str, token: str):
        self.port = urlsplit(base_url).port
        self.token = token

    def get(self, path: str, **params) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(
                "GET",
                f"{path}?{urlencode(params)}",
                headers={"Authorization": f"Token {self.token}", "Accept": "application/json"},
            )
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status == 200, body
        return json.loads(body)


@pytest.fixture
def read_api(footprint, source) -> ReadApi:
    member = UserFactory(workspaces=[source.workspace])
    return ReadApi(footprint, TokenFactory(user=member).key)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def assert_all_processed(source) -> None:
    """Nothing waits in the inbox and nothing was rejected (with the reasons if it was)."""
    stats = services.inbox_drain()
    assert stats.failed_requests == 0, stats.errors
    failed = list(FailedEvent.objects.filter(source=source).values_list("code", "reason"))
    assert failed == []
    statuses = set(InboxRequest.objects.filter(source=source).values_list("status", flat=True))
    assert statuses == {InboxRequest.Status.DONE}


def assert_read_back(read_api: ReadApi, source, calls: list[dict], library: dict) -> list[dict]:
    """Every call is one stored event whose fields are the ones the SDK was given."""
    assert_all_processed(source)
    events = read_api.get("/api/events/", source=source.prop_id, page_size=50)["results"]
    by_message_id = {event["messageId"]: event for event in events}
    assert sorted(by_message_id) == sorted(call["params"]["messageId"] for call in calls)

    for call in calls:
        params = call["params"]
        event = by_message_id[params["messageId"]]
        expected = {
            "type": call["method"],
            "userId": params["userId"],
            "anonymousId": params.get("anonymousId"),
            "event": params.get("event"),
            "name": params.get("name"),
            "groupId": params.get("groupId"),
            "previousId": params.get("previousId"),
            "properties": params.get("properties", {}),
            "traits": params.get("traits", {}),
        }
        assert {key: event[key] for key in expected} == expected, call["method"]
        assert event["context"]["library"] == library
        assert event["door"] == "segment"
        assert event["source"]["propId"] == source.prop_id
        # The SDK's timestamp is kept as sent; the corrected one differs only by the time
        # between the SDK stamping sentAt and Footprint receiving the request.
        assert parse_time(event["originalTimestamp"]) == params["timestamp"]
        assert abs(parse_time(event["timestamp"]) - params["timestamp"]) < timedelta(seconds=5)
        assert not event["timestampClamped"]
        assert parse_time(event["sentAt"]) <= parse_time(event["receivedAt"]) + timedelta(seconds=5)

    track = next(event for event in events if event["type"] == "track")
    assert Decimal(track["revenue"]) == Decimal("19.99")
    assert track["currency"] == "EUR"

    # identify made a customer with the traits; alias merged the previous id into the same one.
    identify = next(call["params"] for call in calls if call["method"] == "identify")
    guests = read_api.get("/api/guests/", identifier=identify["traits"]["email"])["results"]
    assert len(guests) == 1
    guest = guests[0]
    assert guest["email"] == identify["traits"]["email"]
    assert guest["firstName"] == "Ada"
    assert guest["traits"]["plan"] == "pro"
    assert {"provider": "user_id", "id": identify["userId"]} in guest["identifiers"]
    assert {"provider": "anonymous_id", "id": identify["anonymousId"]} in guest["identifiers"]
    assert {event["guestRef"] for event in events} == {guest["ref"]}
    return events


def assert_requests(requests: list[dict], *, gzip: bool, at_least: int = 1) -> None:
    """The SDK posted to /v1/batch with the write key as Basic auth, and each post was taken."""
    assert len(requests) >= at_least
    for request in requests:
        assert request["path"] == "/v1/batch"
        assert request["status"] == 200
        assert request["authorization"] == "Basic"
        assert request["contentEncoding"] == ("gzip" if gzip else None)


# --- The Python SDKs --------------------------------------------------------------------------


# (module, its HTTP module, gzip by default)
PYTHON_SDKS = {
    "segment": ("segment.analytics", "segment.analytics.request", False),
    "rudderstack": ("rudderstack.analytics", "rudderstack.analytics.request", True),
    "customerio": ("customerio.analytics", "customerio.analytics.request", False),
}


@pytest.fixture
def http_log():
    """Watches the requests an SDK module's HTTP session makes (without changing the SDK)."""
    watched = []

    def watch(module_name: str) -> list[dict]:
        session = importlib.import_module(module_name)._session
        seen: list[dict] = []

        def record(response, *args, **kwargs):
            request = response.request
            body = request.body if isinstance(request.body, bytes) else b""
            seen.append(
                {
                    "path": urlsplit(request.url).path,
                    "status": response.status_code,
                    "authorization": request.headers.get("Authorization", "").split(" ")[0],
                    "contentEncoding": request.headers.get("Content-Encoding"),
                    "gzipped": body.startswith(GZIP_MAGIC),
                }
            )

        session.hooks["response"].append(record)
        watched.append((session, record))
        return seen

    yield watch
    for session, record in watched:
        session.hooks["response"].remove(record)
        # Drop kept-alive connections before the live server stops, so none is cut mid-way.
        session.close()


@pytest.mark.parametrize(
    ("sdk", "sync_mode", "gzip"),
    [
        pytest.param("segment", False, False, id="segment-batched"),
        pytest.param("segment", False, True, id="segment-batched-gzip"),
        pytest.param("segment", True, False, id="segment-sync"),
        pytest.param("rudderstack", False, True, id="rudderstack-batched-gzip"),
        pytest.param("rudderstack", True, True, id="rudderstack-sync-gzip"),
        pytest.param("customerio", False, False, id="customerio-batched"),
        pytest.param("customerio", False, True, id="customerio-batched-gzip"),
        pytest.param("customerio", True, False, id="customerio-sync"),
    ],
)
def test_python_sdk_delivers_every_call(
    sdk, sync_mode, gzip, footprint, source, read_api, http_log
):
    module_name, request_module, gzip_default = PYTHON_SDKS[sdk]
    analytics = importlib.import_module(module_name)
    requests_seen = http_log(request_module)
    errors = []
    # Left at the SDK's default where it matches, so the default is what is tested.
    options = {} if gzip == gzip_default else {"gzip": gzip}
    client = analytics.Client(
        source.write_key,
        host=footprint,
        on_error=lambda error, batch: errors.append((error, batch)),
        sync_mode=sync_mode,
        # A failure shows at once instead of after minutes of backoff.
        max_retries=0,
        timeout=5,
        upload_interval=0.1,
        **options,
    )
    calls = calls_script(sdk)

    for call in calls:
        kwargs = {PYTHON_KWARGS.get(key, key): value for key, value in call["params"].items()}
        accepted, _ = getattr(client, call["method"])(**kwargs)
        assert accepted, call
    if not sync_mode:
        client.flush()
        client.join()

    assert errors == []
    assert_requests(requests_seen, gzip=gzip, at_least=len(calls) if sync_mode else 1)
    assert all(request["gzipped"] == gzip for request in requests_seen)
    events = assert_read_back(
        read_api, source, calls, {"name": "analytics-python", "version": analytics.VERSION}
    )
    if sdk == "rudderstack":
        # RudderStack's SDK names its channel, "server" (and sends identify traits in
        # context.traits).
        assert {event["channel"] for event in events} == {"SERVER_SIDE"}


# --- The Node SDK -----------------------------------------------------------------------------


def node_missing() -> str | None:
    if shutil.which("node") is None:
        return "needs Node.js 20+ (`node` on PATH) to run @segment/analytics-node"
    if not NODE_SDK_PACKAGE.is_dir():
        return "needs tests/sdks/node/node_modules: run `npm ci --prefix tests/sdks/node`"
    return None


def test_node_sdk_delivers_every_call(footprint, source, read_api):
    missing = node_missing()
    if missing:
        if REQUIRE_SERVICES:
            pytest.fail(missing)
        pytest.skip(missing)
    calls = calls_script("node")
    node_calls = [
        {
            "method": call["method"],
            "params": {
                **call["params"],
                "timestamp": call["params"]["timestamp"]
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
            },
        }
        for call in calls
    ]

    result = subprocess.run(
        [shutil.which("node"), "send.js", footprint, source.write_key, json.dumps(node_calls)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["errors"] == []
    assert_requests(report["requests"], gzip=False)
    version = json.loads((NODE_SDK_PACKAGE / "package.json").read_text())["version"]
    assert_read_back(
        read_api, source, calls, {"name": "@segment/analytics-node", "version": version}
    )
