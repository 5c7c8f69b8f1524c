"""One channel vocabulary: every door's word for a channel stored as its Sitecore name."""

from importlib import import_module

import orjson
import pytest
from django.apps import apps as django_apps

from profiles.models import Session
from tests.factories import SourceFactory
from tracking.channels import CHANNELS, channel_normalise, channel_normalised_sql
from tracking.models import Event, Source

pytestmark = pytest.mark.django_db

WORDS = [
    ("browser", "WEB"),
    ("Browser", "WEB"),
    ("web", "WEB"),
    ("WEB", "WEB"),
    (" web ", "WEB"),
    ("mobile", "MOBILE_APP"),
    ("ios", "MOBILE_APP"),
    ("android", "MOBILE_APP"),
    ("mobile_web", "MOBILE_WEB"),
    ("server", "SERVER_SIDE"),
    ("SERVER", "SERVER_SIDE"),
    ("server_side", "SERVER_SIDE"),
    ("pos", "BRANCH"),
    ("call_center", "CALL_CENTER"),
    ("Kiosk", "KIOSK"),
    ("loyalty_card", "LOYALTY_CARD"),
    ("", ""),
    ("   ", ""),
]


@pytest.mark.django_db(False)
@pytest.mark.parametrize(("word", "name"), WORDS)
def test_channel_normalise(word, name):
    assert channel_normalise(word) == name


@pytest.mark.django_db(False)
def test_a_long_own_channel_still_fits_its_column():
    assert channel_normalise("x" * 40) == "X" * 32


def test_the_sql_form_agrees_with_channel_normalise(door):
    door.post("track", {"userId": "u-1", "event": "Opened"})
    for word, name in WORDS:
        Event.objects.update(channel=word)
        assert Event.objects.annotate(named=channel_normalised_sql()).get().named == name, word


@pytest.mark.parametrize(
    ("context", "name"),
    [
        ({}, "WEB"),
        ({"channel": "browser"}, "WEB"),
        ({"channel": "mobile"}, "MOBILE_APP"),
        ({"channel": "server"}, "SERVER_SIDE"),
        ({"channel": "EMAIL"}, "EMAIL"),
        ({"channel": "loyalty_card"}, "LOYALTY_CARD"),
    ],
)
def test_the_v1_door_stores_the_vocabularys_name(door, context, name):
    assert (
        door.post("track", {"userId": "u-1", "event": "Opened", "context": context}).status_code
        == 200
    )

    assert Event.objects.get().channel == name
    assert Session.objects.get().channel == name


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (Source.Kind.WEB, "WEB"),
        (Source.Kind.IOS, "MOBILE_APP"),
        (Source.Kind.ANDROID, "MOBILE_APP"),
        (Source.Kind.SERVER, "SERVER_SIDE"),
        (Source.Kind.POS, "BRANCH"),
    ],
)
def test_a_sources_kind_names_the_channel_of_events_that_do_not(door, kind, name):
    door.source = SourceFactory(kind=kind)
    assert door.post("screen", {"userId": "u-1", "name": "Home"}).status_code == 200

    assert Event.objects.get().channel == name


def test_the_collect_and_stream_doors_store_the_vocabularys_name(
    client, django_capture_on_commit_callbacks, source
):
    workspace = source.workspace
    with django_capture_on_commit_callbacks(execute=True):
        hit = {"ea": "open", "ec": "app", "uid": "u-1", "context": '{"channel": "mobile"}'}
        client.get("/collect", {"portal_id": workspace.portal_id, "prop_id": source.prop_id, **hit})
    browser = client.get(
        "/v1.2/browser/create.json", {"client_key": workspace.client_key, "message": "{}"}
    ).json()["ref"]
    with django_capture_on_commit_callbacks(execute=True):
        message = {"channel": "SERVER", "type": "VIEW", "browser_id": browser}
        client.get(
            "/v1.2/event/create.json",
            {"client_key": workspace.client_key, "message": orjson.dumps(message)},
        )

    assert sorted(Event.objects.values_list("door", "channel")) == [
        ("collect", "MOBILE_APP"),
        ("stream", "SERVER_SIDE"),
    ]


def test_the_admin_lists_channels_by_label(admin_client, door):
    door.post("page", {"anonymousId": "a-1", "name": "Home"})

    events = admin_client.get("/admin/tracking/event/", {"channel": "WEB"}).content.decode()
    sessions = admin_client.get("/admin/profiles/session/").content.decode()

    assert "Mobile app" in events and "Server side" in events
    assert '<td class="field-channel_shown">Web</td>' in events
    assert '<td class="field-channel_shown">Web</td>' in sessions
    assert "Branch (store)" in sessions


def test_the_stream_doors_schema_lists_the_vocabulary(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    message = schema["paths"]["/v1.2/event/create.json"]["post"]["requestBody"]["content"]
    channel = message["application/json"]["schema"]["properties"]["channel"]

    assert all(name in channel["description"] for name in CHANNELS)
    assert "BROWSER as WEB" in channel["description"]
    assert "enum" not in channel  # a business's own upper-case channel is accepted too


MIGRATIONS = [
    import_module("tracking.migrations.0009_event_channel_vocabulary"),
    import_module("profiles.migrations.0008_session_channel_vocabulary"),
]


def test_the_migrations_map_stored_channels_and_the_next_event_joins_a_split_visit(door):
    """Stored as the doors stored them before one vocabulary: a website's /v1 page as
    ``browser``, then an exposure in the same visit as ``WEB``, in a session of its own.

    The migrations' own functions are run (every test database has run the migrations
    themselves); a test that migrated back and forth would need a transactional database,
    whose flush removes what other migrations made for later tests.
    """
    door.post("page", {"anonymousId": "a-1", "name": "Home"})
    Event.objects.update(channel="browser")
    Session.objects.update(channel="browser")
    door.post("track", {"anonymousId": "a-1", "event": "Exposed", "context": {"channel": "WEB"}})
    door.post("track", {"userId": "u-2", "event": "Opened"})
    Event.objects.filter(user_id="u-2").update(channel="loyalty card")
    Session.objects.filter(events__user_id="u-2").update(channel="loyalty card")
    assert sorted(Session.objects.values_list("channel", flat=True)) == [
        "WEB",
        "browser",
        "loyalty card",
    ]

    for migration in MIGRATIONS:
        migration.channels_normalise(django_apps, None)

    stored = [
        Event.objects.values_list("channel", flat=True),
        Session.objects.values_list("channel", flat=True),
    ]
    assert [sorted(channels) for channels in stored] == [["LOYALTY CARD", "WEB", "WEB"]] * 2
    # Left apart by the migration (see its docstring) ...
    visit = Session.objects.filter(channel="WEB")
    assert visit.count() == 2
    # ... and joined by the guest's next event within the timeout.
    door.post("page", {"anonymousId": "a-1", "name": "Shoes"})
    [session] = visit
    assert (session.event_count, session.page_view_count) == (3, 2)
    assert set(Event.objects.filter(anonymous_id="a-1").values_list("session", flat=True)) == {
        session.pk
    }
