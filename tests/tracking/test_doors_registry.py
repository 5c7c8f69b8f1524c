"""The door registry is complete, and the pipeline, the replay and the schema read it."""

from datetime import UTC, datetime, timedelta

import pytest

from tracking.doors import DOORS
from tracking.doors.base import DoorSpec, InboxContext
from tracking.doors.schema import ERROR, operation
from tracking.models import Door

# One valid message per door, as a failed event's payload holds it.
PAYLOADS = {
    Door.SEGMENT: {"type": "track", "userId": "u-1", "event": "Played"},
    Door.STREAM: {"type": "VIEW", "channel": "WEB", "browser_id": "b-1"},
    Door.OPTIMIZELY: {"DeviceId": "d-1", "EventType": "Played", "Value": "v"},
    Door.COLLECT: {"ea": "Played", "ec": "media", "uid": "u-1"},
    # A refused exposure keeps the decision and the request.
    Door.PERSONALIZE: {
        "decision": {
            "ref": "cd1d1bd4-0d6a-4ebb-9560-ca0c5add7367",
            "eventRef": "bbb59075-d283-45c6-b278-47f4fb8bc302",
            "variant": "B",
            "flowExecution": {
                "ref": "cd1d1bd4-0d6a-4ebb-9560-ca0c5add7367",
                "occurredAt": 1704910078560,
                "flowRef": "d82b756a-f581-43a8-a857-c2afda9ff119",
                "flowFriendlyId": "Played",
                "flowVariantRef": "bb728433-9507-4ec7-9ba6-7cf7cc7fcccb",
                "guestRef": "456f308b-289f-44e3-8d6c-950afdd0502e",
                "flowExecutionTimeMs": 2,
                "status": "SUCCESS",
            },
        },
        "request": {"clientKey": "k", "friendlyId": "Played", "browserId": "b-1"},
    },
}


def test_every_inbox_door_is_registered():
    # /v2/callFlows' exposures too: the workers store them from the inbox.
    assert set(DOORS) == set(Door.values)
    assert all(spec.key == key for key, spec in DOORS.items())


@pytest.mark.parametrize("key", sorted(DOORS))
def test_a_replayed_payload_parses_back_through_its_door(key):
    spec = DOORS[key]
    requests = spec.replay_requests([PAYLOADS[key]])
    assert requests

    for body, meta in requests:
        assert meta["replay"] is True
        messages, rejected = spec.parse(
            InboxContext(
                body=body,
                meta=meta,
                inbox_id=7,
                workspace_id=1,
                source_id=2,
                source_kind="web",
                ip=None,
                received_at=datetime(2026, 3, 1, tzinfo=UTC),
                max_future_skew=timedelta(hours=1),
            )
        )
        assert rejected == []
        [message] = messages
        assert message.door == key
        assert message.name in ("Played", "VIEW")


def test_the_schema_describes_the_doors_of_the_registry(client, monkeypatch):
    fifth = DoorSpec(
        key="fifth",
        parse=lambda ctx: ([], []),
        replay_requests=lambda payloads: [],
        openapi_paths=lambda: {
            "/fifth": {"post": operation("fifth", "A fifth door", "…", responses={"400": ERROR})}
        },
    )
    monkeypatch.setitem(DOORS, "fifth", fifth)

    paths = client.get("/api/schema/?format=json").json()["paths"]

    described = {
        path for spec in DOORS.values() if spec.openapi_paths for path in spec.openapi_paths()
    }
    assert "/fifth" in described
    assert "/api/v1.0/TrackBulk" in described
    assert described <= set(paths)
