"""The /v1 door through HTTP: auth, bodies, limits, validation, answers."""

import base64
import gzip

import orjson
import pytest

from profiles.models import Guest
from tests.conftest import track
from tracking import services
from tracking.models import Event, FailedEvent, InboxRequest

pytestmark = pytest.mark.django_db


def test_track_is_stored_and_answered_with_success(door):
    response = door.post("track", track(event="Signed Up", properties={"plan": "pro"}))

    assert response.status_code == 200
    assert response.json() == {"success": True}
    event = Event.objects.get()
    assert (event.type, event.name, event.user_id) == ("track", "Signed Up", "user-1")
    assert event.properties == {"plan": "pro"}
    assert event.guest.workspace_id == door.source.workspace_id
    assert InboxRequest.objects.get().status == InboxRequest.Status.DONE


@pytest.mark.parametrize(
    ("route", "payload", "stored_type", "stored_name"),
    [
        ("identify", {"userId": "u", "traits": {"email": "a@b.c"}}, "identify", ""),
        ("page", {"anonymousId": "a", "name": "Home"}, "page", "Home"),
        ("screen", {"anonymousId": "a", "name": "Cart"}, "screen", "Cart"),
        ("group", {"userId": "u", "groupId": "g1"}, "group", ""),
        ("alias", {"userId": "u", "previousId": "a"}, "alias", ""),
        ("t", {"userId": "u", "event": "Short"}, "track", "Short"),
        ("i", {"userId": "u"}, "identify", ""),
        ("p", {"userId": "u", "name": "P"}, "page", "P"),
        ("s", {"userId": "u", "name": "S"}, "screen", "S"),
        ("g", {"userId": "u", "groupId": "g"}, "group", ""),
        ("a", {"userId": "u", "previousId": "p"}, "alias", ""),
    ],
)
def test_every_route_stores_its_type(door, route, payload, stored_type, stored_name):
    response = door.post(route, payload)

    assert response.status_code == 200, response.content
    event = Event.objects.get()
    assert (event.type, event.name) == (stored_type, stored_name)


def test_route_type_wins_over_body_type(door):
    door.post("track", track(type="identify"))

    assert Event.objects.get().type == "track"


@pytest.mark.parametrize("route", ["batch", "b", "import"])
def test_batch_routes_store_every_message(door, route):
    batch = [track(messageId=f"m{i}") for i in range(3)] + [
        {"type": "page", "anonymousId": "a", "name": "Home"}
    ]
    response = door.post(route, {"batch": batch})

    assert response.status_code == 200
    assert Event.objects.count() == 4


class TestAuth:
    def test_basic_without_colon(self, door):
        header = "Basic " + base64.b64encode(door.source.write_key.encode()).decode()
        assert door.post("track", track(), HTTP_AUTHORIZATION=header).status_code == 200

    def test_bearer(self, door):
        header = f"Bearer {door.source.write_key}"
        assert door.post("track", track(), HTTP_AUTHORIZATION=header).status_code == 200

    def test_write_key_in_body(self, door):
        response = door.post(
            "batch", {"writeKey": door.source.write_key, "batch": [track()]}, key=""
        )
        assert response.status_code == 200
        assert Event.objects.count() == 1

    @pytest.mark.parametrize("key", ["nope", ""])
    def test_unknown_or_missing_key_is_401(self, door, key):
        response = door.post("track", track(), key=key)

        assert response.status_code == 401
        assert response.json()["code"] == "invalid_write_key"
        assert not InboxRequest.objects.exists()

    def test_garbage_basic_credentials_are_401(self, door):
        response = door.post("track", track(), HTTP_AUTHORIZATION="Basic !!!")
        assert response.status_code == 401

    def test_inactive_source_is_refused(self, door):
        door.source.is_active = False
        door.source.save()
        assert door.post("track", track()).status_code == 401


class TestBodies:
    def test_text_plain(self, door):
        response = door.post("t", track(), content_type="text/plain")
        assert response.status_code == 200
        assert Event.objects.count() == 1

    def test_gzip(self, door):
        response = door.post("batch", {"batch": [track(), track(messageId="x")]}, gzip_body=True)
        assert response.status_code == 200
        assert Event.objects.count() == 2

    def test_corrupt_gzip_is_400(self, door):
        response = door.post("track", b"not gzip at all", HTTP_CONTENT_ENCODING="gzip")
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_encoding"

    def test_gzip_bomb_is_refused_before_inflating(self, door):
        bomb = gzip.compress(b'{"batch": [' + b" " * (50 * 1024 * 1024) + b"]}")
        assert len(bomb) < 500 * 1024
        response = door.post("batch", bomb, HTTP_CONTENT_ENCODING="gzip")
        assert response.status_code == 400
        assert response.json()["code"] == "request_too_large"
        assert "500 KB" in response.json()["message"]

    def test_unknown_encoding_is_415(self, door):
        response = door.post("track", track(), HTTP_CONTENT_ENCODING="br")
        assert response.status_code == 415
        assert response.json()["code"] == "unsupported_encoding"

    @pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b""])
    def test_malformed_json_is_400(self, door, body):
        response = door.post("track", body)
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_json"
        assert set(response.json()) >= {"code", "message"}

    def test_body_must_be_an_object(self, door):
        response = door.post("track", [1, 2])
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_body"

    def test_get_is_405(self, client, source):
        response = client.get("/v1/track")
        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"


class TestLimits:
    def test_message_over_32kb_is_400_and_names_the_limit(self, door):
        response = door.post("track", track(properties={"blob": "x" * 33_000}))

        assert response.status_code == 400
        assert response.json()["code"] == "request_too_large"
        assert "32 KB" in response.json()["message"]
        assert not Event.objects.exists()

    def test_batch_over_500kb_is_400(self, door):
        batch = [track(messageId=str(i), properties={"blob": "x" * 30_000}) for i in range(20)]
        response = door.post("batch", {"batch": batch})

        assert response.status_code == 400
        assert "500 KB" in response.json()["message"]
        assert not InboxRequest.objects.exists()

    def test_batch_over_2500_messages_is_400(self, door):
        response = door.post("batch", {"batch": [{}] * 2501})

        assert response.status_code == 400
        assert response.json()["code"] == "batch_too_large"
        assert "2500" in response.json()["message"]

    def test_oversize_message_in_batch_is_rejected_alone(self, door):
        batch = [track(messageId="big", properties={"blob": "x" * 33_000}), track(messageId="ok")]
        response = door.post("batch", {"batch": batch})

        assert response.status_code == 200
        assert list(Event.objects.values_list("message_id", flat=True)) == ["ok"]
        failed = FailedEvent.objects.get()
        assert failed.code == "message_too_large"
        assert failed.payload["messageId"] == "big"


class TestValidation:
    @pytest.mark.parametrize(
        ("route", "payload", "code", "field"),
        [
            ("track", {"userId": "u"}, "missing_event", "event"),
            ("track", {"userId": "u", "event": "   "}, "missing_event", "event"),
            ("track", {"event": "E"}, "no_user_anon_id", "userId"),
            ("alias", {"userId": "u"}, "missing_previousId", "previousId"),
            ("group", {"userId": "u"}, "missing_groupId", "groupId"),
            ("track", track(timestamp="yesterday"), "invalid_timestamp", "timestamp"),
            ("track", track(properties=[1]), "invalid_field", "properties"),
            (
                "track",
                track(properties={"revenue": "lots"}),
                "invalid_revenue",
                "properties.revenue",
            ),
            (
                "track",
                track(properties={"currency": "dollars"}),
                "invalid_currency",
                "properties.currency",
            ),
            ("track", track(properties={"value": "high"}), "invalid_value", "properties.value"),
            ("track", track(userId={"a": 1}), "invalid_id", "userId"),
            ("track", track(event="x\u0000y"), "invalid_character", ""),
        ],
    )
    def test_single_message_errors_are_400_naming_the_field(
        self, door, route, payload, code, field
    ):
        response = door.post(route, payload)

        assert response.status_code == 400
        body = response.json()
        assert body["code"] == code
        assert body.get("field", "") == field
        assert body["message"]
        assert not InboxRequest.objects.exists()

    def test_batch_keeps_good_messages_and_records_the_bad_one(self, door):
        bad = {"type": "track", "userId": "u", "messageId": "bad"}
        batch = [track(messageId="a"), bad, {"type": "nope", "userId": "u"}, track(messageId="b")]
        response = door.post("batch", {"batch": batch})

        assert response.status_code == 200
        assert sorted(Event.objects.values_list("message_id", flat=True)) == ["a", "b"]
        failures = {f.code: f for f in FailedEvent.objects.all()}
        assert set(failures) == {"missing_event", "invalid_type"}
        assert failures["missing_event"].payload == bad
        assert failures["missing_event"].reason == "event is required"
        assert failures["missing_event"].source_id == door.source.pk

    def test_batch_message_without_type_is_rejected(self, door):
        door.post("batch", {"batch": [{"userId": "u", "event": "E"}]})
        assert FailedEvent.objects.get().code == "missing_type"

    def test_batch_must_be_a_list(self, door):
        response = door.post("batch", {"batch": {"a": 1}})
        assert response.status_code == 400
        assert response.json()["field"] == "batch"


class TestServerFills:
    def test_message_id_received_at_ip_and_original_timestamp(self, door):
        response = door.post(
            "track", track(timestamp="2026-01-02T03:04:05Z"), REMOTE_ADDR="10.1.2.3"
        )

        assert response.status_code == 200
        event = Event.objects.get()
        assert event.message_id.startswith("fp-")
        assert event.received_at is not None
        assert event.context["ip"] == "10.1.2.3"
        assert event.ip == "10.1.2.3"
        assert event.original_timestamp.isoformat() == "2026-01-02T03:04:05+00:00"

    def test_client_ip_is_kept(self, door):
        door.post("track", track(context={"ip": "8.8.8.8"}), REMOTE_ADDR="10.1.2.3")
        assert Event.objects.get().ip == "8.8.8.8"

    def test_forwarded_for_is_believed_only_for_trusted_proxies(self, door, settings):
        forwarded = {"HTTP_X_FORWARDED_FOR": "1.1.1.1, 203.0.113.9", "REMOTE_ADDR": "10.0.0.1"}
        door.post("track", track(messageId="untrusted"), **forwarded)
        settings.TRUSTED_PROXY_HOPS = 1
        door.post("track", track(messageId="trusted"), **forwarded)

        ips = dict(Event.objects.values_list("message_id", "ip"))
        assert ips == {"untrusted": "10.0.0.1", "trusted": "203.0.113.9"}

    def test_batch_context_and_integrations_merge_into_messages(self, door):
        payload = {
            "batch": [track(context={"locale": "fr"}, integrations={"Mixpanel": False})],
            "context": {"library": {"name": "x"}, "locale": "en"},
            "integrations": {"All": True},
        }
        door.post("batch", payload)

        event = Event.objects.get()
        assert event.context["library"] == {"name": "x"}
        assert event.context["locale"] == "fr"
        assert event.integrations == {"All": True, "Mixpanel": False}

    def test_reserved_properties_are_typed(self, door):
        door.post("track", track(properties={"revenue": "19.99", "currency": "eur", "value": 3}))

        event = Event.objects.get()
        assert str(event.revenue) == "19.9900"
        assert event.currency == "EUR"
        assert event.value == 3.0

    def test_currency_defaults_to_usd_with_revenue(self, door):
        door.post("track", track(properties={"revenue": 5}))
        assert Event.objects.get().currency == "USD"


def test_every_stored_event_has_a_guest(door):
    door.post("batch", {"batch": [track(messageId="1"), track(messageId="2", userId="other")]})

    assert Event.objects.filter(guest__isnull=True).count() == 0
    assert Guest.objects.count() == 2
    assert set(Guest.objects.values_list("guest_type", flat=True)) == {"customer"}


def test_raw_request_is_kept_in_the_inbox_until_processed(client, source):
    payload = track(properties={"x": 1})
    response = client.post(
        "/v1/track",
        payload,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {source.write_key}",
    )
    assert response.status_code == 200
    row = InboxRequest.objects.get()
    assert orjson.loads(bytes(row.body)) == payload

    services.inbox_drain()

    row.refresh_from_db()
    assert row.status == InboxRequest.Status.DONE
    assert bytes(row.body) == b""
    assert Event.objects.get().properties == {"x": 1}


@pytest.mark.django_db
def test_write_key_lookups_are_cached_and_rotation_ends_them_at_once(door, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.FOOTPRINT = {**settings.FOOTPRINT, "SOURCE_CACHE_SECONDS": 60.0}
    assert door.post("track", {"userId": "u", "event": "One"}).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert door.post("track", {"userId": "u", "event": "Two"}).status_code == 200
    # Accepting is then the inbox INSERT alone; processing (eager here) reads what it needs.
    first = queries.captured_queries[0]["sql"]
    assert first.startswith('INSERT INTO "tracking_inboxrequest"'), first

    old_key = door.source.write_key
    services.source_rotate_write_key(source=door.source)

    assert door.post("track", {"userId": "u", "event": "Three"}, key=old_key).status_code == 401
    assert door.post("track", {"userId": "u", "event": "Four"}).status_code == 200
