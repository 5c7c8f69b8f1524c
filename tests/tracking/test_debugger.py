"""A source's live debugger: its JSON endpoint lists the requests sent through the real doors,
with their messages, refusals and payloads, to the source's own workspaces only."""

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache

from tests.factories import SourceFactory, UserFactory
from tracking.models import InboxRequest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


def marketer_of(*workspaces):
    user = UserFactory(is_staff=True, workspaces=list(workspaces))
    user.groups.add(Group.objects.get(name="Marketers"))
    return user


@pytest.fixture
def marketer(client, source):
    client.force_login(marketer_of(source.workspace))
    return client


def debugger(client, source):
    answer = client.get(f"/admin/tracking/source/{source.pk}/debugger/")
    assert answer.status_code == 200, answer.content
    return answer.json()["requests"]


def test_requests_show_with_messages_refusals_and_payload(marketer, door, source):
    page = marketer.get(f"/admin/tracking/source/{source.pk}/change/")
    assert page.status_code == 200
    assert 'id="fp-debugger"' in page.content.decode()
    assert debugger(marketer, source) == []

    door.post(
        "batch",
        {
            "batch": [
                {"type": "track", "userId": "u1", "event": "Signed Up"},
                {"type": "track", "userId": "u1"},  # no event name: refused
                {"type": "page", "anonymousId": "a1", "name": "Home"},
            ]
        },
    )
    door.post("track", {"userId": "u1", "event": "Order Completed"})

    latest, first = debugger(marketer, source)
    assert latest["messages"] == 1 and latest["accepted"] == 1 and latest["rejected"] == []
    assert first["door"] == "Segment spec (/v1)" and first["status"] == "Done"
    assert (first["messages"], first["accepted"], first["rejected_count"]) == (3, 2, 1)
    assert "event" in first["rejected"][0]["reason"]

    shown = marketer.get(f"/admin/tracking/source/{source.pk}/debugger/{first['id']}/").json()
    assert [m.get("event") for m in shown["payload"]["batch"]] == ["Signed Up", None, None]
    assert shown["refused"][0]["payload"] == {"type": "track", "userId": "u1"}
    # Processing emptied the inbox row all the same: the copy is the debugger's own.
    assert bytes(InboxRequest.objects.get(pk=first["id"]).body) == b""


def test_payloads_are_kept_only_while_someone_watches(marketer, door, source):
    door.post("track", {"userId": "u1", "event": "Before"})
    (request,) = debugger(marketer, source)  # opening the debugger starts the watch
    assert request["messages"] == 1
    before = marketer.get(f"/admin/tracking/source/{source.pk}/debugger/{request['id']}/")
    assert before.json()["payload"] is None

    door.post("track", {"userId": "u1", "event": "After"})
    after = debugger(marketer, source)[0]
    shown = marketer.get(f"/admin/tracking/source/{source.pk}/debugger/{after['id']}/").json()
    assert shown["payload"]["event"] == "After"


def test_other_workspaces_see_nothing(client, door, source):
    door.post("track", {"userId": "u1", "event": "Secret"})
    row = InboxRequest.objects.get(source=source)
    client.force_login(marketer_of(SourceFactory().workspace))

    assert client.get(f"/admin/tracking/source/{source.pk}/debugger/").status_code == 404
    assert client.get(f"/admin/tracking/source/{source.pk}/debugger/{row.pk}/").status_code == 404
    assert source.name not in client.get("/admin/tracking/source/").content.decode()
    # Nor another source's request through one's own source.
    own = SourceFactory()
    client.force_login(marketer_of(own.workspace))
    answer = client.get(f"/admin/tracking/source/{own.pk}/debugger/{row.pk}/")
    assert answer.status_code == 404


@pytest.mark.parametrize("bad", ["abc", "99999999999999999999999", "%00"])
def test_malformed_addresses_are_not_found(marketer, bad):
    # U+0000 is refused before any view (400); anything else names no source.
    assert marketer.get(f"/admin/tracking/source/{bad}/debugger/").status_code in (400, 404)


def test_source_list_says_when_the_last_request_came(marketer, door, source):
    listing = marketer.get("/admin/tracking/source/").content.decode()
    assert "nothing yet" in listing
    door.post("track", {"userId": "u1", "event": "Signed Up"})
    listing = marketer.get("/admin/tracking/source/").content.decode()
    assert "nothing yet" not in listing and "fp-badge-good" in listing


def test_a_body_the_door_cannot_read_is_answered_at_once_and_not_listed(marketer, door, source):
    answer = door.post("batch", b"{not json", content_type="application/json")
    assert answer.status_code == 400  # the sender is told at once; nothing reached the inbox
    assert debugger(marketer, source) == []
