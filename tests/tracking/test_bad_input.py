"""Bad input at the /v1 door, generated: whatever arrives, the answer is a 2xx or a 4xx with a
``code`` and a ``message``, never a 500; an accepted request is processed without crashing the
worker; and one bad message in a batch never costs the valid ones."""

import json
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracking.models import Event, FailedEvent, InboxRequest

pytestmark = pytest.mark.django_db

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

SEGMENT_KEYS = [
    "type",
    "userId",
    "anonymousId",
    "event",
    "name",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "properties",
    "traits",
    "context",
    "integrations",
    "groupId",
    "previousId",
    "channel",
    "writeKey",
]
DATES = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-14:00",
            "2026-02-30T10:00:00Z",
            "",
            " ",
            "now",
        ]
    ),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([10**400, -(10**400), 1e308, 5e-324, 2**63, 2**64 + 1]),
)
TEXT = st.text(max_size=40) | st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "USD"])
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT | DATES
KEYS = st.sampled_from([*SEGMENT_KEYS, "revenue", "currency", "value", "ip", ""]) | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias"]) | JSON,
        "userId": st.sampled_from(["u1", "u2"]) | JSON,
        "anonymousId": st.just("a1") | JSON,
        "event": st.just("Played") | JSON,
        "timestamp": DATES | JSON,
        "sentAt": DATES,
        "originalTimestamp": DATES,
        "properties": st.dictionaries(KEYS, JSON, max_size=5)
        | st.fixed_dictionaries({"revenue": NUMBERS | TEXT, "value": NUMBERS | TEXT}),
        "context": st.dictionaries(KEYS, JSON, max_size=5) | JSON,
        "traits": st.dictionaries(KEYS, JSON, max_size=5) | JSON,
        "integrations": JSON,
        "messageId": JSON,
        "groupId": JSON,
        "previousId": JSON,
        "channel": JSON,
    },
).flatmap(lambda m: st.dictionaries(KEYS, JSON, max_size=3).map(lambda extra: {**extra, **m}))


def encode(value, ascii_only: bool) -> bytes:
    """JSON as a client might send it; lone surrogates come out as escapes or raw bytes."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


BODIES = st.one_of(
    st.builds(encode, MESSAGES, st.booleans()),
    st.builds(encode, JSON, st.booleans()),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


def assert_answered(response):
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["code"], str) and body["code"]
        assert isinstance(body["message"], str) and body["message"]


def assert_processed():
    """Nothing accepted is left pending or failed: every message became an event or a
    failed event with its reason."""
    assert not InboxRequest.objects.exclude(status=InboxRequest.Status.DONE).exists(), list(
        InboxRequest.objects.exclude(status=InboxRequest.Status.DONE).values("error")
    )


@pytest.mark.parametrize("route", ["track", "identify", "page"])
@given(body=BODIES)
@EXAMPLES
def test_any_single_message_body_gets_a_clear_answer(door, route, body):
    assert_answered(door.post(route, body))
    assert_processed()


@given(body=BODIES, gzip_body=st.booleans())
@EXAMPLES
def test_any_batch_body_gets_a_clear_answer(door, body, gzip_body):
    assert_answered(door.post("batch", body, gzip_body=gzip_body))
    assert_processed()


@given(messages=st.lists(MESSAGES, max_size=8))
@EXAMPLES
def test_any_batch_of_messages_is_accepted_and_processed(door, messages):
    response = door.post("batch", encode({"batch": messages}, ascii_only=True))
    assert_answered(response)
    assert_processed()


def parses(value) -> bool:
    """Whether the door's JSON parser reads the value (a number beyond a double's range makes
    the whole body unreadable: the request is refused with 400 invalid_json, nothing lost)."""
    try:
        orjson.loads(encode(value, ascii_only=True))
    except orjson.JSONDecodeError:
        return False
    return True


@given(
    invalid=st.lists(
        (
            MESSAGES.filter(lambda m: not m.get("userId") and not m.get("anonymousId"))
            | JSON.filter(lambda v: not isinstance(v, dict))
        ).filter(parses),
        min_size=1,
        max_size=6,
    ),
    valid_count=st.integers(min_value=1, max_value=6),
    data=st.data(),
)
@EXAMPLES
def test_a_bad_message_never_costs_the_valid_ones(door, invalid, valid_count, data):
    run = uuid.uuid4().hex
    valid = [
        {"type": "track", "userId": "u1", "event": "Played", "messageId": f"{run}-{n}"}
        for n in range(valid_count)
    ]
    batch = data.draw(st.permutations(valid + invalid))
    failed_before = FailedEvent.objects.count()

    response = door.post("batch", encode({"batch": batch}, ascii_only=True))

    assert response.status_code == 200, response.content
    assert_processed()
    stored = set(
        Event.objects.filter(message_id__startswith=run).values_list("message_id", flat=True)
    )
    assert stored == {m["messageId"] for m in valid}
    assert FailedEvent.objects.count() - failed_before == len(invalid)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b'{"userId": "u", "event": "a\\u0000b"}', "invalid_character", id="nul"),
        pytest.param(b'{"userId": "u", "event": "\xff\xfe"}', "invalid_json", id="bad-utf8"),
        pytest.param(b'{"userId": "u", "event": "\\ud800"}', "invalid_json", id="surrogate"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "request_too_large", id="deep"),
        pytest.param(b'{"a":' * 5000 + b"1" + b"}" * 5000, "invalid_json", id="deep-object"),
        pytest.param(
            b'{"userId": "u", "event": "E", "properties": ' + b"[" * 600 + b"]" * 600 + b"}",
            "too_deep",
            id="deep-in-a-message",
        ),
        pytest.param(
            json.dumps(
                {"userId": "u", "event": "E", "properties": {f"p{n}": n for n in range(10_000)}}
            ).encode(),
            "request_too_large",
            id="10k-properties",
        ),
        pytest.param(
            b'{"userId": "u", "event": "E", "properties": {"value": 1' + b"0" * 400 + b"}}",
            "invalid_json",
            id="huge-number",
        ),
        pytest.param(
            b'{"userId": "u", "event": "E", "timestamp": "0001-01-01T00:00:00Z",'
            b' "sentAt": "9999-12-31T23:59:59Z"}',
            "invalid_timestamp",
            id="dates-out-of-range",
        ),
        pytest.param(b'{"userId": " ", "event": " "}', "missing_event", id="blank"),
        pytest.param(
            b'{"userId": "u", "event": "E", "properties": {"": 1, " ": 2}}', None, id="empty-keys"
        ),
    ],
)
def test_named_bad_inputs(door, body, code):
    response = door.post("track", body)
    assert_answered(response)
    if code is None:
        assert response.status_code == 200
    else:
        assert response.json()["code"] == code, response.json()
    assert_processed()


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/api/segments/a%00b/", "the path"),
        ("/api/guests/?identifier=a%00b", "'identifier'"),
        ("/v1.2/event/create.json?client_key=k%00&message=%7B%7D", "'client_key'"),
        ("/collect?portal_id=1&prop_id=1&ea=view&ec=x&uid=u%00", "'uid'"),
    ],
)
def test_a_nul_in_the_path_or_query_is_a_400_naming_where(api, path, named):
    answer = api.get(path)

    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_character"
    assert named in answer.json()["message"]


@pytest.mark.parametrize("route", ["track", "identify", "page"])
@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_a_timestamp_at_the_ends_of_the_calendar_is_stored(door, route, timestamp):
    """Sessions look a timeout either side of an event; at year 1 or 9999 that arithmetic left
    the calendar and the accepted request failed in processing."""
    body = {"userId": "u", "anonymousId": "a", "event": "E", "name": "P", "timestamp": timestamp}
    response = door.post(route, body)
    assert response.status_code == 200, response.content
    assert_processed()
