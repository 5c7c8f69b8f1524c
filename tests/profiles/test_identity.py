"""Identity resolution through the /v1 door: guests, merges, aliases and profiles."""

import random
import uuid
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def guests_named(api, identifier: str, **params) -> list[str]:
    """Refs of the guests the read API finds for an identifier value."""
    response = api.get("/api/guests/", {"identifier": identifier, **params})
    assert response.status_code == 200
    return [guest["ref"] for guest in response.json()["results"]]


class TestAliasInAnyOrder:
    """An alias says previousId is the person now known as userId, without saying whether
    previousId was a userId or an anonymousId; it holds whichever it turns up as, before or
    after the alias."""

    def test_an_alias_before_the_old_ids_first_event_holds(self, door, api):
        door.post("alias", {"previousId": "old-q", "userId": "user-u", "timestamp": at(0)})

        door.post("track", {"userId": "old-q", "event": "Bought", "timestamp": at(1)})

        survivor = guest_of("user_id", "user-u")
        assert guests_named(api, "old-q") == [str(survivor.ref)]
        assert live_guests().count() == 1
        assert Event.objects.get(name="Bought").guest == survivor
        assert guest_of("user_id", "old-q") == survivor

    def test_an_aliased_id_not_seen_yet_is_found_under_either_kind(self, door, api):
        door.post("alias", {"previousId": "old-q", "userId": "user-u"})
        ref = str(guest_of("user_id", "user-u").ref)

        assert guests_named(api, "old-q", kind="user_id") == [ref]
        assert guests_named(api, "old-q", kind="anonymous_id") == [ref]
        assert guests_named(api, "old-q", kind="email") == []

    def test_an_aliased_anonymous_id_is_found_when_it_arrives_as_a_user_id(self, door, api):
        door.post("page", {"anonymousId": "old-q", "name": "Home", "timestamp": at(0)})
        door.post("alias", {"previousId": "old-q", "userId": "user-u", "timestamp": at(1)})

        door.post("track", {"userId": "old-q", "event": "Bought", "timestamp": at(2)})

        assert live_guests().count() == 1
        assert guests_named(api, "old-q") == [str(guest_of("user_id", "user-u").ref)]

    def test_an_aliased_user_id_is_found_when_it_arrives_as_an_anonymous_id(self, door, api):
        door.post("track", {"userId": "old-q", "event": "Bought", "timestamp": at(0)})
        door.post("alias", {"previousId": "old-q", "userId": "user-u", "timestamp": at(1)})

        door.post("page", {"anonymousId": "old-q", "name": "Home", "timestamp": at(2)})

        assert live_guests().count() == 1
        assert guests_named(api, "old-q") == [str(guest_of("user_id", "user-u").ref)]

    def test_an_alias_between_anonymous_ids_keeps_a_visitor_who_can_still_log_in(self, door):
        door.post("alias", {"previousId": "tab-1", "anonymousId": "tab-2", "timestamp": at(0)})
        visitor = guest_of("anonymous_id", "tab-2")
        assert visitor.guest_type == Guest.Type.VISITOR

        door.post("identify", {"userId": "u1", "anonymousId": "tab-2", "timestamp": at(1)})
        door.post("page", {"anonymousId": "tab-1", "name": "Home", "timestamp": at(2)})

        assert guest_of("user_id", "u1") == visitor
        assert set(Event.objects.values_list("guest", flat=True)) == {visitor.pk}

    def test_external_ids_cannot_pose_as_an_alias(self, door):
        door.post(
            "track",
            {
                "anonymousId": "a1",
                "event": "E",
                "context": {"externalIds": [{"id": "someone", "type": "previous_id"}]},
            },
        )

        assert not Identity.objects.filter(value="someone").exists()


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


@st.composite
def histories(draw) -> tuple[list[dict], list[tuple[str, str]]]:
    """What a few people did, as messages, and the pairs of ids the messages tie together.

    Each person has a user id. Each of their other ids is either aliased to it, and may then
    turn up as a userId or an anonymousId (before or after the alias), or an anonymous id that
    an identify may tie to one of their user ids. No id is shared between people and every
    extra user id is aliased, so the right answer does not depend on the order: the ids tied
    together by the messages are one guest, and no other ids are.
    """
    messages: list[dict] = []
    ties: list[tuple[str, str]] = []
    for person in range(draw(st.integers(min_value=1, max_value=3))):
        user_id = f"u{person}"
        user_ids = [user_id]
        messages.append({"type": "track", "userId": user_id, "event": "Signed Up"})
        for n in range(draw(st.integers(min_value=0, max_value=3))):
            other = f"x{person}{n}"
            if draw(st.booleans()):
                messages.append({"type": "alias", "userId": user_id, "previousId": other})
                ties.append((other, user_id))
                kinds = draw(st.lists(st.sampled_from(["userId", "anonymousId"]), max_size=3))
            else:
                kinds = draw(st.lists(st.just("anonymousId"), min_size=1, max_size=2))
            for kind in kinds:
                if kind == "userId":
                    messages.append({"type": "track", "userId": other, "event": "Bought"})
                    user_ids.append(other)
                elif draw(st.booleans()):
                    known_as = draw(st.sampled_from(user_ids))
                    messages.append({"type": "identify", "userId": known_as, "anonymousId": other})
                    ties.append((other, known_as))
                else:
                    messages.append({"type": "page", "anonymousId": other, "name": "Home"})
    return messages, ties


def ids_of(message: dict) -> list[str]:
    return [message[key] for key in ("userId", "anonymousId", "previousId") if key in message]


def people(messages: list[dict], ties: list[tuple[str, str]]) -> set[frozenset[str]]:
    """The ids grouped into people by the ties between them."""
    group_of = {value: frozenset([value]) for message in messages for value in ids_of(message)}
    for a, b in ties:
        joined = group_of[a] | group_of[b]
        for value in joined:
            group_of[value] = joined
    return set(group_of.values())


@given(history=histories(), data=st.data())
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_alias_identify_and_track_in_any_order_and_batching_give_the_same_guests(
    door, api, history, data
):
    """Whatever order alias, identify and track messages arrive in, in whatever batches and
    with whatever timestamps, the read API finds each id on exactly one guest, the guests
    group the ids as the messages tie them, and every event is on the guest of its ids."""
    run = uuid.uuid4().hex[:8]
    ids = ("userId", "anonymousId", "previousId")
    messages = [
        {key: f"{run}-{value}" if key in ids else value for key, value in message.items()}
        | {
            "messageId": f"{run}-m{index}",
            "timestamp": at(data.draw(st.integers(min_value=0, max_value=59))),
        }
        for index, message in enumerate(history[0])
    ]
    ties = [(f"{run}-{a}", f"{run}-{b}") for a, b in history[1]]
    arrivals = data.draw(st.permutations(messages))
    while arrivals:
        size = data.draw(st.integers(min_value=1, max_value=4))
        chunk, arrivals = arrivals[:size], arrivals[size:]
        if len(chunk) == 1:
            response = door.post(chunk[0]["type"], chunk[0])
        else:
            response = door.post("batch", {"batch": chunk})
        assert response.status_code == 200, response.content

    guest_of_id = {}
    for value in {value for message in messages for value in ids_of(message)}:
        refs = guests_named(api, value)
        assert len(refs) == 1, f"{value} is on {len(refs)} guests"
        guest_of_id[value] = refs[0]
    found: dict[str, set[str]] = defaultdict(set)
    for value, ref in guest_of_id.items():
        found[ref].add(value)
    assert {frozenset(group) for group in found.values()} == people(messages, ties)
    events = dict(
        Event.objects.filter(message_id__startswith=run).values_list("message_id", "guest__ref")
    )
    assert len(events) == len(messages)
    for message in messages:
        assert str(events[message["messageId"]]) == guest_of_id[ids_of(message)[0]]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_taking_an_alias_and_the_old_ids_first_event_at_once_make_one_guest(source):
    """An alias naming an id nobody has yet and that id's first event, in inbox rows two
    workers drain at the same moment: each person still ends as one guest."""

    import orjson
    from django.utils import timezone

    from tracking import services
    from tracking.models import InboxRequest

    people_count = 20
    rows = []
    for i in range(people_count):
        first_event = (
            {"type": "track", "userId": f"old{i}", "event": "Bought"}
            if i % 2
            else {"type": "page", "anonymousId": f"old{i}", "name": "Home"}
        )
        for message in ({"type": "alias", "previousId": f"old{i}", "userId": f"u{i}"}, first_event):
            rows.append(
                InboxRequest(
                    source=source,
                    body=orjson.dumps({"batch": [message]}),
                    meta={"route": "batch"},
                    received_at=timezone.now(),
                )
            )
    InboxRequest.objects.bulk_create(rows)
    drain_concurrently(claim_size=1)
    services.inbox_drain()

    assert not InboxRequest.objects.exclude(status="done").exists()
    assert live_guests().count() == people_count
    assert not Event.objects.filter(guest__merged_into__isnull=False).exists()
    for i in range(people_count):
        guest = guest_of("user_id", f"u{i}")
        first_kind = "user_id" if i % 2 else "anonymous_id"
        assert set(guest.identities.values_list("kind", "value")) == {
            ("user_id", f"u{i}"),
            ("previous_id", f"old{i}"),
            (first_kind, f"old{i}"),
        }
        assert guest.events.count() == 2
