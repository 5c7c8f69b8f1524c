"""One person's activity through every front door ends as one guest with one timeline."""

import orjson
import pytest

from profiles.models import Guest, SegmentMembership
from profiles.segments import segment_recompute
from tests.factories import SegmentFactory
from tracking.models import Door, Event

pytestmark = pytest.mark.django_db

EMAIL = "grace@navy.example"


def test_the_same_person_through_all_four_doors_is_one_customer(
    client, door, api, django_capture_on_commit_callbacks
):
    workspace = door.source.workspace
    capture = django_capture_on_commit_callbacks

    # Segment spec: an anonymous page view, then the sign-in that names the user.
    door.post("page", {"anonymousId": "anon-1", "name": "Home"})
    door.post("identify", {"userId": "u-1", "anonymousId": "anon-1", "traits": {"email": EMAIL}})

    # Sitecore Stream API: a new browser views a page, then says who it is.
    browser = client.get(
        "/v1.2/browser/create.json", {"client_key": workspace.client_key, "message": "{}"}
    ).json()["ref"]
    for message in (
        {"type": "VIEW", "page": "/shoes"},
        {"type": "IDENTITY", "email": EMAIL.upper(), "firstname": "Grace"},
    ):
        with capture(execute=True):
            response = client.get(
                "/v1.2/event/create.json",
                {
                    "client_key": workspace.client_key,
                    "message": orjson.dumps({"channel": "WEB", "browser_id": browser, **message}),
                },
            )
        assert response.status_code == 200, response.content

    # Optimizely: a device seen anonymously, then with the user's email.
    for event in (
        {"DeviceId": "dev-1", "EventType": "epiPageView", "Value": "Start"},
        {"deviceId": "dev-1", "eventType": "basket", "value": "Added", "user": {"email": EMAIL}},
    ):
        with capture(execute=True):
            response = client.post(
                "/api/v1.0/Track",
                orjson.dumps(event),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"epi-single {door.source.write_key}",
            )
        assert response.status_code == 200, response.content

    # Event Track API: a purchase by the user id.
    with capture(execute=True):
        response = client.get(
            "/collect",
            {
                "portal_id": workspace.portal_id,
                "prop_id": door.source.prop_id,
                "resp_type": "json",
                "ea": "purchase",
                "ec": "checkout",
                "uid": "u-1",
            },
        )
    assert response.status_code == 200, response.content

    [person] = Guest.objects.filter(merged_into__isnull=True)
    assert person.guest_type == Guest.Type.CUSTOMER
    assert person.email == EMAIL
    assert person.first_name == "Grace"
    assert response.json()["client_id"] == str(person.ref)
    assert Event.objects.count() == 7
    assert set(Event.objects.values_list("guest_id", flat=True)) == {person.pk}
    assert set(person.identities.values_list("kind", flat=True)) == {
        "anonymous_id",
        "user_id",
        "email",
        "browser",
        "device_id",
    }

    timeline = api.get(f"/api/guests/{person.ref}/events/").json()["results"]
    assert len(timeline) == 7
    assert {item["door"] for item in timeline} == {
        Door.SEGMENT,
        Door.STREAM,
        Door.OPTIMIZELY,
        Door.COLLECT,
    }
    payloads = {(item["door"], item["type"], item["event"]): item["payload"] for item in timeline}
    assert payloads[(Door.COLLECT, "track", "purchase")]["ea"] == "purchase"
    assert payloads[(Door.OPTIMIZELY, "track", "basket")]["deviceId"] == "dev-1"
    assert payloads[(Door.STREAM, "IDENTITY", "IDENTITY")]["browser_id"] == browser
    assert payloads[(Door.SEGMENT, "identify", None)] is None
    # A website's channel has one name whichever door saw it.
    assert {item["channel"] for item in timeline} == {"WEB"}

    # Segment rules see every door's event names alike.
    segment = SegmentFactory(
        workspace=workspace,
        slug="all-doors",
        name="Bought after a basket and an identity",
        rule={
            "all": [
                {"event": {"name": "purchase", "count": {"op": "gte", "value": 1}}},
                {"event": {"name": "basket", "count": {"op": "gte", "value": 1}}},
                {"event": {"name": "IDENTITY", "count": {"op": "gte", "value": 1}}},
            ]
        },
    )
    segment_recompute(segment)
    assert list(
        SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).values_list(
            "guest_id", flat=True
        )
    ) == [person.pk]


def test_the_admin_shows_the_door_the_payload_and_the_normalised_fields(
    client, admin_client, source, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        client.get(
            "/collect",
            {
                "portal_id": source.workspace.portal_id,
                "prop_id": source.prop_id,
                "ea": "signup",
                "ec": "account",
                "uid": "u-9",
                "dims": '{"plan_code": "P-77"}',
            },
        )
    stored = Event.objects.get()

    listing = admin_client.get("/admin/tracking/event/", {"door": Door.COLLECT})
    page = admin_client.get(f"/admin/tracking/event/{stored.pk}/change/")

    assert listing.status_code == 200
    assert "Event Track API (/collect)" in listing.content.decode()
    html = page.content.decode()
    assert page.status_code == 200
    assert "As received" in html and "Normalised" in html
    assert "&quot;ea&quot;: &quot;signup&quot;" in html
    assert "&quot;category&quot;: &quot;account&quot;" in html
    assert "P-77" in html
