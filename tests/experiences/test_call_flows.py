"""/v2/callFlows: decisions, sticky assignment, eligibility and the TRACKING event it leaves."""

import uuid

import pytest
from django.db import connection
from rest_framework.test import APIClient

from experiences.flows import flow_definitions_forget
from experiences.models import Assignment, Experience, FlowExecution, Variant
from profiles.models import Identity, SegmentMembership, Session
from profiles.segments import segment_recompute
from tests.factories import ExperienceFactory, SegmentFactory, VariantFactory
from tracking.models import Door, Event, InboxRequest

pytestmark = pytest.mark.django_db

# Seed 004's example TRACKING event.
SEED_004 = {
    "ref": "bbb59075-d283-45c6-b278-47f4fb8bc302",
    "clientKey": "ZpHxO9WvLOfQRVPlvo0BqB8YjGYuFfNe",
    "createdAt": "2025-01-10T18:07:59.247Z",
    "modifiedAt": "2025-01-10T18:07:59.257Z",
    "type": "TRACKING",
    "status": "PROCESSED",
    "channel": "WEB",
    "pointOfSale": "myretailsite/ireland",
    "browserRef": "a38b230c-11eb-4cf9-8d5d-274e9f344925",
    "sessionRef": "a7584ec5-7a5f-443e-a5e3-59106f6e22b3",
    "flowExecutionRef": "cd1d1bd4-0d6a-4ebb-9560-ca0c5add7367",
    "arbitraryData": {
        "flowExecution": {
            "ref": "cd1d1bd4-0d6a-4ebb-9560-ca0c5add7367",
            "occurredAt": 1704910078560,
            "flowRef": "d82b756a-f581-43a8-a857-c2afda9ff119",
            "flowFriendlyId": "running_shoes_popup_02",
            "flowVariantRef": "bb728433-9507-4ec7-9ba6-7cf7cc7fcccb",
            "guestRef": "456f308b-289f-44e3-8d6c-950afdd0502e",
            "flowExecutionTimeMs": 23,
            "status": "SUCCESS",
        },
        "_bx_arbitraryDataV3ga": {
            "core": {"pointOfSale": "myretailsite/ireland", "channel": "WEB"},
            "bxt": {
                "flowExecution": {
                    "ref": "cd1d1bd4-0d6a-4ebb-9560-ca0c5add7367",
                    "occurredAt": 1704910078560,
                    "flowRef": "d82b756a-f581-43a8-a857-c2afda9ff119",
                    "flowFriendlyId": "running_shoes_popup_02",
                    "flowVariantRef": "bb728433-9507-4ec7-9ba6-7cf7cc7fcccb",
                    "guestRef": "456f308b-289f-44e3-8d6c-950afdd0502e",
                    "flowExecutionTimeMs": 23,
                    "status": "SUCCESS",
                },
                "category": "EXECUTED",
            },
        },
    },
}


def shape(value):
    """Keys, nesting and value types, without the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__


@pytest.fixture
def experience(source):
    experience = ExperienceFactory(
        workspace=source.workspace,
        friendly_id="running_shoes_popup_02",
        name="Running shoes pop-up",
        status=Experience.Status.LIVE,
    )
    VariantFactory(experience=experience, name="A", is_control=True, content={"title": "Hello"})
    VariantFactory(
        experience=experience, name="B", content={"title": "Hi {{firstName}}, {{traits.plan}}"}
    )
    return experience


def flow_request(source, **body):
    payload = {
        "clientKey": source.workspace.client_key,
        "channel": "WEB",
        "pointOfSale": "myretailsite/ireland",
        "friendlyId": "running_shoes_popup_02",
        **body,
    }
    return APIClient().post("/v2/callFlows", payload, format="json")


@pytest.fixture
def call(django_capture_on_commit_callbacks):
    """Call /v2/callFlows, then run what the committed request queued: the drain task, which
    stores the exposure as the workers do."""

    def call(source, **body):
        with django_capture_on_commit_callbacks(execute=True):
            return flow_request(source, **body)

    return call


def test_the_tracking_event_has_the_seed_004_shape(call, api, source, experience):
    answer = call(source, browserId="a38b230c-11eb-4cf9-8d5d-274e9f344925").json()
    assert answer["decision"] == "EXPOSED"

    listed = api.get("/api/events/?type=TRACKING&flowFriendlyId=running_shoes_popup_02").json()
    [event] = listed["results"]

    assert shape(event) == shape(SEED_004)
    flow = event["arbitraryData"]["flowExecution"]
    assert flow["flowFriendlyId"] == "running_shoes_popup_02"
    assert flow["flowVariantRef"] == answer["variant"]["ref"]
    assert flow["guestRef"] == answer["guestRef"]
    assert event["flowExecutionRef"] == flow["ref"] == answer["flowExecutionRef"]
    assert event["arbitraryData"]["_bx_arbitraryDataV3ga"]["bxt"]["flowExecution"] == flow
    assert event["clientKey"] == source.workspace.client_key
    assert event["sessionRef"] == answer["sessionRef"]
    timeline = api.get(f"/api/guests/{answer['guestRef']}/events/").json()["results"]
    assert timeline == [event]


def test_assignment_is_sticky_and_content_is_rendered(call, door, source, experience):
    door.post(
        "identify",
        {
            "userId": "ada",
            "traits": {"email": "ada@example.com", "firstName": "Ada", "plan": "pro"},
        },
    )
    first = call(source, email="Ada@Example.com").json()
    again = [call(source, email="ada@example.com").json() for _ in range(3)]

    assert {a["variant"]["name"] for a in again} == {first["variant"]["name"]}
    assert Assignment.objects.count() == 1
    assert FlowExecution.objects.count() == 4
    assert Event.objects.filter(type="TRACKING").count() == 4
    if first["variant"]["name"] == "B":
        assert first["content"] == {"title": "Hi Ada, pro"}
    else:
        assert first["content"] == {"title": "Hello"}


def test_paused_and_unallocated_record_nothing(call, source, experience):
    experience.status = Experience.Status.PAUSED
    experience.save()
    paused = call(source, browserId="b1").json()
    experience.status = Experience.Status.LIVE
    experience.traffic_allocation = 0
    experience.save()
    outside = call(source, browserId="b2").json()

    for answer in (paused, outside):
        assert answer["decision"] == "DEFAULT"
        assert answer["variant"]["name"] == "A" and answer["flowExecutionRef"] is None
    assert not FlowExecution.objects.exists() and not Assignment.objects.exists()
    assert not Event.objects.filter(type="TRACKING").exists()


def test_targeting_and_exclusion(call, door, source, experience):
    door.post("identify", {"userId": "vip", "traits": {"email": "vip@x.io", "vip": True}})
    door.post("identify", {"userId": "plain", "traits": {"email": "plain@x.io"}})
    vips = SegmentFactory(
        workspace=source.workspace,
        slug="vip",
        name="VIP",
        rule={"trait": {"key": "vip", "op": "eq", "value": True}},
    )
    segment_recompute(vips)
    experience.target_segments.add(vips)

    assert call(source, email="plain@x.io").json()["decision"] == "DEFAULT"
    assert call(source, email="vip@x.io").json()["decision"] == "EXPOSED"

    experience.target_segments.clear()
    experience.exclusion_segments.add(vips)
    # Changed behind the API's and the admin's back: this process still has the old audience.
    assert call(source, email="plain@x.io").json()["decision"] == "DEFAULT"
    flow_definitions_forget()
    assert call(source, email="plain@x.io").json()["decision"] == "EXPOSED"
    assert call(source, email="vip@x.io").json()["decision"] == "DEFAULT"
    assert SegmentMembership.objects.filter(segment=vips).count() == 1


def test_a_merged_guest_keeps_the_known_guests_assignment(call, door, source, experience):
    door.post("identify", {"userId": "ada", "traits": {"email": "ada@x.io"}})
    known = call(source, email="ada@x.io").json()
    # The same person browses anonymously; give that browser the other variant.
    anonymous = call(source, browserId="browser-9").json()
    other = Variant.objects.exclude(ref=known["variant"]["ref"]).get()
    Assignment.objects.filter(guest__ref=anonymous["guestRef"]).update(variant=other)

    door.post(
        "identify",
        {"userId": "ada", "context": {"externalIds": [{"id": "browser-9", "type": "browser"}]}},
    )

    assert Identity.objects.get(kind="browser", value="browser-9").guest.ref.hex == known[
        "guestRef"
    ].replace("-", "")
    assert Assignment.objects.count() == 1
    after = call(source, browserId="browser-9").json()
    assert after["guestRef"] == known["guestRef"]
    assert after["variant"]["ref"] == known["variant"]["ref"]


def test_bad_requests_are_clear(call, source, experience):
    assert call(source).status_code == 400
    assert call(source, browserId="b", email="e@x.io").json()["code"] == "invalid_identifier"
    assert call(source, browserId="b", friendlyId="nope").status_code == 404
    bad_key = APIClient().post(
        "/v2/callFlows", {"clientKey": "nope", "friendlyId": "x", "browserId": "b"}, format="json"
    )
    assert bad_key.status_code == 401


def test_an_exposure_joins_the_visit_it_happened_in(call, door, source, experience):
    """A website's /v1 page and its callFlows exposure are one visit: one WEB session."""
    door.post(
        "page",
        {
            "anonymousId": "anon-7",
            "name": "Shoes",
            "properties": {"url": "https://shop.example/shoes"},
            "context": {"externalIds": [{"id": "browser-7", "type": "browser"}]},
        },
    )
    answer = call(source, browserId="browser-7").json()

    session = Session.objects.get()
    assert answer["sessionRef"] == str(session.ref)
    assert session.channel == "WEB"
    assert (session.event_count, session.page_view_count) == (2, 1)
    assert set(Event.objects.values_list("channel", flat=True)) == {"WEB"}


def drain():
    """What a worker runs when woken: the inbox drain task."""
    from tracking.tasks import inbox_drain

    return inbox_drain.delay().get()


def test_an_exposure_is_in_the_inbox_when_answered_and_stored_once_by_the_workers(
    source, experience
):
    answer = flow_request(source, browserId="browser-1").json()

    # Answered: the exposure is an inbox row, not yet a TRACKING event or a flow execution.
    [row] = InboxRequest.objects.all()
    assert (row.door, row.status) == (Door.PERSONALIZE, InboxRequest.Status.PENDING)
    assert not Event.objects.exists() and not FlowExecution.objects.exists()

    assert drain()["stored"] == 1
    execution = FlowExecution.objects.select_related("guest", "variant", "session").get()
    event = Event.objects.get(type="TRACKING")
    assert str(execution.ref) == answer["flowExecutionRef"]
    assert str(execution.guest.ref) == answer["guestRef"] == str(event.guest.ref)
    assert str(execution.variant.ref) == answer["variant"]["ref"]
    assert str(execution.session.ref) == answer["sessionRef"]
    assert event.session_id == execution.session_id
    assert execution.browser_ref == "browser-1"
    assert event.properties["flowExecutionRef"] == answer["flowExecutionRef"]

    # A drain that runs the same request again (its first run lost) stores nothing twice.
    InboxRequest.objects.filter(pk=row.pk).update(status=InboxRequest.Status.PENDING)
    assert drain()["stored"] == 0
    assert FlowExecution.objects.count() == 1
    assert Event.objects.filter(type="TRACKING").count() == 1


def test_calls_answered_before_the_workers_store_them_name_one_new_visit(call, source, experience):
    answers = [flow_request(source, browserId="browser-2").json() for _ in range(3)]
    drain()

    session = Session.objects.get()
    assert {a["sessionRef"] for a in answers} == {str(session.ref)}
    assert session.event_count == 3
    assert set(FlowExecution.objects.values_list("session_id", flat=True)) == {session.pk}
    # Still within the visit: the next call names it and joins it.
    assert call(source, browserId="browser-2").json()["sessionRef"] == str(session.ref)
    assert Session.objects.get().event_count == 4


def test_a_visit_that_timed_out_is_followed_by_a_new_one(call, clock, source, experience):
    first = call(source, browserId="browser-3").json()
    clock.set(clock.now + source.workspace.session_timeout * 2)
    later = call(source, browserId="browser-3").json()

    assert first["sessionRef"] != later["sessionRef"]
    assert set(Session.objects.values_list("ref", flat=True)) == {
        uuid.UUID(first["sessionRef"]),
        uuid.UUID(later["sessionRef"]),
    }


def test_a_repeat_guest_is_decided_and_exposed_in_one_statement(
    call, source, experience, django_assert_num_queries
):
    first = call(source, browserId="browser-4").json()
    # PostgreSQL reads the guest and writes the exposure in one statement; SQLite in two.
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        answer = flow_request(source, browserId="browser-4").json()
    assert answer["decision"] == "EXPOSED"
    assert (answer["variant"], answer["guestRef"]) == (first["variant"], first["guestRef"])
    assert answer["sessionRef"] == first["sessionRef"]

    row = InboxRequest.objects.latest("pk")
    assert (row.door, row.status, row.meta["ref"]) == (
        Door.PERSONALIZE,
        InboxRequest.Status.PENDING,
        answer["flowExecutionRef"],
    )
    assert drain()["stored"] == 1
    execution = FlowExecution.objects.select_related("guest", "variant", "session").get(
        ref=answer["flowExecutionRef"]
    )
    assert str(execution.guest.ref) == answer["guestRef"]
    assert str(execution.variant.ref) == answer["variant"]["ref"]
    assert str(execution.session.ref) == answer["sessionRef"]
    flow = Event.objects.get(type="TRACKING", message_id=f"flow-{answer['flowExecutionRef']}")
    assert flow.properties["arbitraryData"]["flowExecution"]["guestRef"] == answer["guestRef"]
    assert Event.objects.filter(type="TRACKING").count() == 2


def test_a_repeat_guest_excluded_since_leaves_no_exposure(call, door, source, experience):
    door.post("identify", {"userId": "vip", "traits": {"email": "vip@x.io", "vip": True}})
    assert call(source, email="vip@x.io").json()["decision"] == "EXPOSED"
    vips = SegmentFactory(
        workspace=source.workspace,
        slug="vip",
        name="VIP",
        rule={"trait": {"key": "vip", "op": "eq", "value": True}},
    )
    segment_recompute(vips)
    experience.exclusion_segments.add(vips)
    flow_definitions_forget()
    rows = InboxRequest.objects.count()

    # Assigned and within a visit, but excluded now: the statement writes nothing.
    answer = call(source, email="vip@x.io").json()
    assert (answer["decision"], answer["variant"]["name"]) == ("DEFAULT", "A")
    assert answer["flowExecutionRef"] is None
    assert InboxRequest.objects.count() == rows
