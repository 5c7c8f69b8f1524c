"""The Optimizely Tracking API door through HTTP: auth, fields, bulk, IPs, TrackID, sessions."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from profiles.models import Guest, Identity, Session
from tests.conftest import T0
from tests.factories import SourceFactory
from tracking.models import Door, Event, FailedEvent, InboxRequest

pytestmark = pytest.mark.django_db

# The example of Optimizely's track event documentation.
DOC_EVENT = {
    "DeviceId": "91687965-bc76-49a2-862c-e014441b8f6b",
    "EventType": "home",
    "Value": "Visited the start page.",
    "PageUri": "https://example.com/en/",
    "RemoteAddress": "::1",
    "Payload": {
        "name": "Home page",
        "contentGuid": "440be34f-d08a-4a7e-b019-55448d065d28",
        "contentLink": "163204",
        "contentTypeID": 170,
        "parentLink": "163198",
    },
    "EventTime": "2017-09-15T07:16:34.7957819Z",
    "CountryCode": "Localhost",
}


def event(**fields):
    return {"DeviceId": "device-1", "EventType": "epiPageView", "Value": "Start page", **fields}


class Tracker:
    """Sends requests the way a site's tracking client does and runs what they queue."""

    def __init__(self, client, capture, source):
        self.client, self.capture, self.source = client, capture, source

    def post(self, route, payload, *, key=None, **headers):
        key = self.source.write_key if key is None else key
        if key:
            headers.setdefault("HTTP_AUTHORIZATION", f"epi-single {key}")
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        with self.capture(execute=True):
            return self.client.post(
                f"/api/v1.0/{route}", body, content_type="application/json", **headers
            )


@pytest.fixture
def tracker(client, django_capture_on_commit_callbacks, source):
    return Tracker(client, django_capture_on_commit_callbacks, source)


def test_the_documented_track_event_is_stored_with_its_payload(tracker):
    response = tracker.post("Track", DOC_EVENT)

    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 1}
    stored = Event.objects.get()
    assert (stored.door, stored.type, stored.name) == (Door.OPTIMIZELY, "track", "home")
    assert stored.payload == DOC_EVENT
    assert stored.properties["eventValue"] == "Visited the start page."
    assert stored.properties["contentLink"] == "163204"
    assert stored.properties["pageUri"] == "https://example.com/en/"
    assert stored.properties["countryCode"] == "Localhost"
    assert stored.timestamp == datetime(2017, 9, 15, 7, 16, 34, 795781, tzinfo=UTC)
    assert stored.ip == "::1"
    identity = Identity.objects.get()
    assert (identity.kind, identity.value) == ("device_id", DOC_EVENT["DeviceId"])
    assert identity.guest_id == stored.guest_id


def test_camel_case_and_user_email_make_a_known_guest(tracker):
    response = tracker.post(
        "Track",
        {
            "user": {"name": "Ada Lovelace", "email": "Ada@Example.com", "info": {"plan": "pro"}},
            "payload": {"sku": "A-1"},
            "deviceId": "device-9",
            "eventType": "basket",
            "value": "Added to basket",
            "scope": "shop-se",
        },
    )

    assert response.status_code == 200, response.content
    stored = Event.objects.get()
    assert stored.name == "basket"
    assert stored.properties["scope"] == "shop-se"
    guest = Guest.objects.get()
    assert guest.guest_type == Guest.Type.CUSTOMER
    assert guest.email == "ada@example.com"
    assert guest.traits["plan"] == "pro"
    assert set(guest.identities.values_list("kind", "value")) == {
        ("device_id", "device-9"),
        ("email", "ada@example.com"),
    }


@pytest.mark.parametrize("missing", ["DeviceId", "EventType", "Value"])
def test_a_required_field_missing_is_a_400_naming_it(tracker, missing):
    payload = event()
    del payload[missing]
    response = tracker.post("Track", payload)

    assert response.status_code == 400
    assert response.json()["field"] == missing
    assert missing in response.json()["message"]
    assert not InboxRequest.objects.exists()


@pytest.mark.parametrize(
    "header", ["", "epi-single wrong-key", "Bearer {key}", "epi-single", "Basic abc"]
)
def test_without_a_valid_epi_single_key_it_is_a_401(tracker, header):
    header = header.format(key=tracker.source.write_key)
    response = tracker.post("Track", event(), key="", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert "message" in response.json()
    assert not InboxRequest.objects.exists()


class TestTrackId:
    def test_a_repeat_within_72_hours_is_skipped_silently(self, tracker, clock):
        tracker.post("Track", event(TrackId="order-1", Value="first"))
        clock.set(T0 + timedelta(hours=71, minutes=59))
        response = tracker.post("Track", event(TrackId="order-1", Value="again"))

        assert response.status_code == 200
        assert [e.properties["eventValue"] for e in Event.objects.all()] == ["first"]

    def test_a_repeat_after_72_hours_is_tracked_again(self, tracker, clock):
        # The source's own dedup window (for messageIds) is shorter; TrackID keeps 72 hours.
        assert tracker.source.dedup_window == timedelta(hours=12)
        tracker.post("Track", event(TrackId="order-1", Value="first"))
        clock.set(T0 + timedelta(hours=13))
        tracker.post("Track", event(TrackId="order-1", Value="still a repeat"))
        clock.set(T0 + timedelta(hours=72, seconds=1))
        tracker.post("Track", event(TrackId="order-1", Value="tracked again"))

        assert sorted(e.properties["eventValue"] for e in Event.objects.all()) == [
            "first",
            "tracked again",
        ]

    def test_same_track_id_in_another_scope_or_source_is_another_event(self, tracker):
        tracker.post("Track", event(TrackId="t", Scope="se"))
        tracker.post("Track", event(TrackId="t", Scope="no"))
        other = SourceFactory(workspace=tracker.source.workspace)
        tracker.post("Track", event(TrackId="t", Scope="se"), key=other.write_key)
        tracker.post("Track", event(TrackId="t", Scope="se"))

        assert Event.objects.count() == 3

    def test_no_track_id_means_no_dedup(self, tracker):
        tracker.post("Track", event())
        tracker.post("Track", event())

        assert Event.objects.count() == 2

    def test_a_track_id_is_trimmed_to_64_characters(self, tracker):
        long_id = "x" * 64 + "-first-tail"
        tracker.post("Track", event(TrackId=long_id))
        tracker.post("Track", event(TrackId="x" * 64 + "-other-tail"))

        stored = Event.objects.get()
        assert stored.properties["trackId"] == "x" * 64
        assert stored.payload["TrackId"] == long_id

    def test_repeats_inside_one_bulk_keep_the_first(self, tracker):
        response = tracker.post(
            "TrackBulk", [event(TrackId="t", Value="one"), event(TrackId="t", Value="two")]
        )

        assert response.json() == {"accepted": 2}
        assert [e.properties["eventValue"] for e in Event.objects.all()] == ["one"]


class TestBulk:
    def test_header_ip_applies_unless_the_event_names_its_own(self, tracker):
        response = tracker.post(
            "TrackBulk",
            [
                event(Value="header"),
                event(Value="own", RemoteAddress="198.51.100.7"),
                event(Value="camel", remoteAddress="2001:db8::1"),
            ],
            HTTP_EPI_USER_IP_ADDRESS="203.0.113.5",
        )

        assert response.status_code == 200
        ips = dict(Event.objects.values_list("properties__eventValue", "ip"))
        assert ips == {"header": "203.0.113.5", "own": "198.51.100.7", "camel": "2001:db8::1"}

    def test_without_the_header_the_callers_address_is_used(self, tracker):
        tracker.post("TrackBulk", [event()], REMOTE_ADDR="192.0.2.10")

        assert Event.objects.get().ip == "192.0.2.10"

    def test_more_than_100_events_are_refused(self, tracker):
        response = tracker.post("TrackBulk", [event() for _ in range(101)])

        assert response.status_code == 400
        assert "100" in response.json()["message"]
        assert not InboxRequest.objects.exists()

    def test_an_event_over_256_kb_is_refused_and_the_others_stored(self, tracker):
        big = event(Value="big", Payload={"blob": "x" * (256 * 1024)})
        response = tracker.post("TrackBulk", [event(Value="small"), big, {"DeviceId": "d"}])

        assert response.status_code == 200
        answer = response.json()
        assert answer["accepted"] == 1
        assert [(r["index"], r["code"]) for r in answer["rejected"]] == [
            (1, "event_too_large"),
            (2, "missing_EventType"),
        ]
        assert list(Event.objects.values_list("properties__eventValue", flat=True)) == ["small"]
        failed = FailedEvent.objects.order_by("id")
        assert [(f.door, f.code) for f in failed] == [
            (Door.OPTIMIZELY, "event_too_large"),
            (Door.OPTIMIZELY, "missing_EventType"),
        ]

    def test_a_list_with_no_valid_event_is_a_400(self, tracker):
        response = tracker.post("TrackBulk", [{"EventType": "x", "Value": "y"}])

        assert response.status_code == 400
        assert response.json()["rejected"][0]["field"] == "DeviceId"
        assert not InboxRequest.objects.exists()

    def test_track_takes_one_object_and_bulk_a_list(self, tracker):
        assert tracker.post("Track", [event()]).status_code == 400
        assert tracker.post("TrackBulk", event()).status_code == 400


def test_session_id_is_the_session(tracker):
    tracker.post("TrackBulk", [event(SessionId="s-1"), event(SessionId="s-1", Value="later")])
    tracker.post("Track", event(SessionId="s-2"))

    sessions = {s.client_session_id: s for s in Session.objects.all()}
    assert set(sessions) == {"s-1", "s-2"}
    assert sessions["s-1"].event_count == 2
    assert Event.objects.filter(session=sessions["s-1"]).count() == 2


def test_event_types_are_event_names_for_segments(tracker, api):
    tracker.post("Track", event(EventType="purchase", Value="Bought"))

    response = api.get("/api/events/", {"event": "purchase"})

    assert response.status_code == 200
    [listed] = response.json()["results"]
    assert listed["door"] == Door.OPTIMIZELY
    assert listed["payload"]["EventType"] == "purchase"
