"""Identity resolution through the /v1 door: guests, merges, aliases and profiles."""

import random

import pytest

from profiles.models import Guest, GuestMerge, Identity
from tests.conftest import drain_concurrently
from tracking.models import Event

pytestmark = pytest.mark.django_db


def at(minute: int) -> str:
    return f"2026-03-01T10:{minute:02d}:00Z"


def live_guests():
    return Guest.objects.filter(merged_into__isnull=True)


def guest_of(kind: str, value: str) -> Guest:
    return Identity.objects.select_related("guest").get(kind=kind, value=value).guest


class TestNewGuests:
    def test_unknown_anonymous_id_makes_a_visitor(self, door):
        door.post("page", {"anonymousId": "a1", "name": "Home", "timestamp": at(0)})

        guest = guest_of("anonymous_id", "a1")
        assert guest.guest_type == Guest.Type.VISITOR
        assert guest.first_seen == guest.last_seen
        assert Event.objects.get().guest == guest

    def test_user_id_makes_a_customer(self, door):
        door.post("track", {"userId": "u1", "event": "E", "timestamp": at(0)})

        assert guest_of("user_id", "u1").guest_type == Guest.Type.CUSTOMER

    def test_identities_of_one_message_share_a_guest(self, door):
        door.post("track", {"userId": "u1", "anonymousId": "a1", "event": "E"})

        assert guest_of("user_id", "u1") == guest_of("anonymous_id", "a1")
        assert live_guests().count() == 1

    def test_workspaces_never_share_guests(self, door):
        from tests.factories import SourceFactory

        door.post("track", {"userId": "u1", "event": "E"})
        door.source = SourceFactory()
        door.post("track", {"userId": "u1", "event": "E"})

        assert Guest.objects.count() == 2
        assert Identity.objects.filter(kind="user_id", value="u1").count() == 2

    def test_external_ids_are_identities(self, door):
        door.post(
            "track",
            {
                "anonymousId": "a1",
                "event": "E",
                "context": {"externalIds": [{"id": "C-42", "type": "crm", "collection": "users"}]},
            },
        )

        guest = guest_of("crm", "C-42")
        assert guest == guest_of("anonymous_id", "a1")
        assert guest.guest_type == Guest.Type.CUSTOMER


class TestMerges:
    def test_browsing_then_identify_becomes_one_customer(self, door):
        for minute in range(3):
            door.post("page", {"anonymousId": "a1", "name": f"P{minute}", "timestamp": at(minute)})
        door.post("track", {"userId": "u1", "event": "Logged In", "timestamp": at(1)})
        anonymous = guest_of("anonymous_id", "a1")
        known = guest_of("user_id", "u1")
        assert anonymous != known

        door.post(
            "identify",
            {
                "userId": "u1",
                "anonymousId": "a1",
                "traits": {"email": "Ada@Example.com", "firstName": "Ada", "plan": "pro"},
                "timestamp": at(5),
            },
        )

        survivor = guest_of("anonymous_id", "a1")
        assert survivor == guest_of("user_id", "u1") == known
        assert survivor.guest_type == Guest.Type.CUSTOMER
        assert set(Event.objects.values_list("guest", flat=True)) == {survivor.pk}
        assert Event.objects.count() == 5
        assert (survivor.email, survivor.first_name) == ("Ada@Example.com", "Ada")
        assert survivor.traits == {"plan": "pro"}
        assert guest_of("email", "ada@example.com") == survivor
        assert survivor.first_seen.minute == 0 and survivor.last_seen.minute == 5

        anonymous.refresh_from_db()
        assert anonymous.merged_into == survivor
        merge = GuestMerge.objects.get()
        assert (merge.guest, merge.merged_ref, merge.reason) == (
            survivor,
            anonymous.ref,
            GuestMerge.Reason.SHARED_IDENTIFIER,
        )
        assert merge.merged_by == "pipeline"

    def test_old_ref_still_resolves_through_the_api(self, door, api):
        door.post("page", {"anonymousId": "a1", "name": "Home", "timestamp": at(0)})
        old_ref = guest_of("anonymous_id", "a1").ref
        door.post("identify", {"userId": "u1", "anonymousId": "a1", "timestamp": at(1)})

        response = api.get(f"/api/guests/{old_ref}/")

        assert response.status_code == 200
        assert response.json()["ref"] == str(guest_of("user_id", "u1").ref)

    def test_two_user_ids_never_merge_implicitly(self, door):
        door.post("track", {"userId": "alice", "anonymousId": "shared", "event": "E"})
        door.post("track", {"userId": "bob", "anonymousId": "shared", "event": "E"})
        door.post("identify", {"userId": "bob", "traits": {"email": "family@example.com"}})
        door.post("identify", {"userId": "alice", "traits": {"email": "family@example.com"}})

        alice, bob = guest_of("user_id", "alice"), guest_of("user_id", "bob")
        assert alice != bob
        assert not GuestMerge.objects.exists()
        assert guest_of("anonymous_id", "shared") == alice
        assert (
            Event.objects.filter(user_id="bob").values_list("guest", flat=True).distinct().get()
            == bob.pk
        )

    def test_alias_merges_explicitly(self, door):
        door.post("track", {"userId": "old-id", "event": "E", "timestamp": at(0)})
        door.post("track", {"userId": "new-id", "event": "E", "timestamp": at(1)})

        door.post("alias", {"userId": "new-id", "previousId": "old-id", "timestamp": at(2)})

        survivor = guest_of("user_id", "new-id")
        assert guest_of("user_id", "old-id") == survivor
        assert live_guests().count() == 1
        assert Event.objects.filter(guest=survivor).count() == 3
        assert GuestMerge.objects.get().reason == GuestMerge.Reason.ALIAS

    def test_alias_of_an_unseen_id_remembers_it(self, door):
        door.post("alias", {"userId": "u1", "previousId": "anon-later"})
        door.post("page", {"anonymousId": "anon-later", "name": "Home"})

        assert live_guests().count() == 1

    def test_a_guest_with_two_user_ids_from_an_alias_still_takes_in_its_browsers(self, door):
        door.post("track", {"userId": "old-id", "event": "E", "timestamp": at(0)})
        door.post("alias", {"previousId": "old-id", "userId": "new-id", "timestamp": at(1)})
        door.post("page", {"anonymousId": "laptop", "name": "Home", "timestamp": at(2)})

        door.post("identify", {"userId": "new-id", "anonymousId": "laptop", "timestamp": at(3)})

        assert guest_of("anonymous_id", "laptop") == guest_of("user_id", "new-id")
        assert live_guests().count() == 1

    def test_merge_inside_one_batch(self, door):
        batch = [
            {"type": "page", "anonymousId": "a1", "name": "Home", "timestamp": at(0)},
            {"type": "page", "anonymousId": "a2", "name": "Home", "timestamp": at(1)},
            {"type": "identify", "userId": "u", "anonymousId": "a1", "timestamp": at(2)},
            {"type": "identify", "userId": "u", "anonymousId": "a2", "timestamp": at(3)},
        ]
        door.post("batch", {"batch": batch})

        assert Guest.objects.count() == 1
        assert Identity.objects.count() == 3

    def test_merge_chain_resolves_old_refs(self, door, api):
        door.post("page", {"anonymousId": "a1", "name": "Home", "timestamp": at(0)})
        first_ref = guest_of("anonymous_id", "a1").ref
        door.post("page", {"anonymousId": "a1", "userId": "u1", "timestamp": at(1)})
        door.post("alias", {"userId": "u2", "previousId": "u1", "timestamp": at(2)})

        assert api.get(f"/api/guests/{first_ref}/").json()["ref"] == str(
            guest_of("user_id", "u2").ref
        )


SCENARIO = [
    # (anonymousId, userId, minute, type)
    ("a1", None, 0, "page"),
    ("a1", None, 3, "page"),
    ("a2", None, 4, "page"),
    ("a1", "u1", 6, "identify"),
    ("a3", None, 10, "page"),
    ("a2", "u2", 12, "identify"),
    (None, "u1", 20, "track"),
    ("a3", None, 58, "page"),
    ("a4", None, 59, "page"),
    ("a4", "u1", 59, "identify"),
    (None, "u2", 30, "track"),
]


def scenario_messages():
    messages = []
    for index, (anonymous_id, user_id, minute, kind) in enumerate(SCENARIO):
        message = {"type": kind, "messageId": f"m{index}", "timestamp": at(minute)}
        message |= {"name": "P"} if kind == "page" else {"event": "E"} if kind == "track" else {}
        if anonymous_id:
            message["anonymousId"] = anonymous_id
        if user_id:
            message["userId"] = user_id
        messages.append(message)
    return messages


def partition() -> set[frozenset[str]]:
    """Which messages ended up with the same guest, and in the same session."""
    guests, sessions = {}, {}
    for message_id, guest_id, session_id in Event.objects.values_list(
        "message_id", "guest_id", "session_id"
    ):
        guests.setdefault(guest_id, set()).add(message_id)
        sessions.setdefault(session_id, set()).add(message_id)
    return {frozenset(group) for group in guests.values()}, {
        frozenset(group) for group in sessions.values()
    }


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_any_order_and_batching_gives_the_same_guests_and_sessions(door, seed):
    messages = scenario_messages()
    for message in messages:
        door.post(message["type"], message)
    expected = partition()
    assert len(expected[0]) == 3  # u1 (a1, a4), u2 (a2), a3

    Event.objects.all().delete()
    Guest.objects.all().delete()
    from tracking.models import DedupKey

    DedupKey.objects.all().delete()
    rng = random.Random(seed)
    rng.shuffle(messages)
    while messages:
        size = rng.randint(1, 4)
        chunk, messages = messages[:size], messages[size:]
        door.post("batch", {"batch": chunk})

    assert partition() == expected


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_with_interleaved_events_of_new_guests_make_one_guest_each(source):
    """Each person's anonymous, identified and email events are spread over many inbox rows
    that two workers drain at once: every person still ends as exactly one guest."""

    import orjson
    from django.utils import timezone

    from tracking import services
    from tracking.models import InboxRequest

    people = 15
    shapes = [
        lambda i: {"type": "page", "anonymousId": f"a{i}", "name": "Home"},
        lambda i: {"type": "identify", "anonymousId": f"a{i}", "userId": f"u{i}"},
        lambda i: {"type": "track", "userId": f"u{i}", "event": "Bought"},
        lambda i: {"type": "identify", "userId": f"u{i}", "traits": {"email": f"p{i}@x.io"}},
        lambda i: {"type": "page", "anonymousId": f"b{i}", "name": "Other device"},
        lambda i: {"type": "identify", "anonymousId": f"b{i}", "traits": {"email": f"p{i}@x.io"}},
    ]
    rows = []
    for round_ in range(len(shapes)):
        for i in range(people):
            message = shapes[(round_ + i) % len(shapes)](i)
            message["timestamp"] = f"2026-03-01T10:{round_:02d}:{i:02d}Z"
            rows.append(
                InboxRequest(
                    source=source,
                    body=orjson.dumps({"batch": [message]}),
                    meta={"route": "batch"},
                    received_at=timezone.now(),
                )
            )
    InboxRequest.objects.bulk_create(rows)
    drain_concurrently(claim_size=2)
    # Rows a deadlock sent back are picked up by the next drain, as the sweep would.
    services.inbox_drain()

    assert not InboxRequest.objects.exclude(status="done").exists()
    assert Event.objects.count() == people * len(shapes)
    assert live_guests().count() == people
    assert not Event.objects.filter(guest__merged_into__isnull=False).exists()
    for i in range(people):
        guest = guest_of("user_id", f"u{i}")
        assert {(x.kind, x.value) for x in guest.identities.all()} == {
            ("user_id", f"u{i}"),
            ("anonymous_id", f"a{i}"),
            ("anonymous_id", f"b{i}"),
            ("email", f"p{i}@x.io"),
        }
        assert guest.events.count() == len(shapes)
