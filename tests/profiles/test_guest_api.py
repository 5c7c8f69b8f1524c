"""The Guest API: the Sitecore-like guest, its sessions and timeline, and erasure."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from profiles.models import Erasure, Guest, Identity, Session, SuppressedIdentity
from tests.factories import UserFactory
from tracking.models import Event, FailedEvent

pytestmark = pytest.mark.django_db

ADA = {"userId": "ada-42", "anonymousId": "browser-7"}


@pytest.fixture
def ada(door):
    door.post(
        "page", {"anonymousId": "browser-7", "name": "Home", "timestamp": "2026-03-01T10:00:00Z"}
    )
    door.post(
        "identify",
        {
            **ADA,
            "traits": {
                "email": "ada@example.com",
                "firstName": "Ada",
                "lastName": "L",
                "vip": True,
            },
            "timestamp": "2026-03-01T10:05:00Z",
        },
    )
    door.post("track", {"userId": "ada-42", "event": "Bought", "timestamp": "2026-03-01T10:06:00Z"})
    door.post("track", {"userId": "ada-42", "event": 5})  # rejected, kept as a failed event
    return Identity.objects.get(kind="user_id", value="ada-42").guest


def test_guest_detail_is_sitecore_like(api, ada):
    guest = api.get(f"/api/guests/{ada.ref}/").json()

    assert guest["ref"] == str(ada.ref)
    assert guest["guestType"] == "customer"
    assert (guest["email"], guest["firstName"], guest["lastName"]) == (
        "ada@example.com",
        "Ada",
        "L",
    )
    assert sorted((i["provider"], i["id"]) for i in guest["identifiers"]) == [
        ("anonymous_id", "browser-7"),
        ("email", "ada@example.com"),
        ("user_id", "ada-42"),
    ]
    assert guest["traits"] == {"vip": True}
    assert guest["firstSeen"].startswith("2026-03-01T10:00:00")
    assert guest["lastSeen"].startswith("2026-03-01T10:06:00")
    [session] = guest["sessions"]
    assert (session["eventCount"], session["pageViewCount"], session["status"]) == (3, 1, "OPEN")
    assert session["durationSeconds"] == 360
    assert guest["segments"] == []


def test_timeline_carries_session_refs(api, ada):
    timeline = api.get(f"/api/guests/{ada.ref}/events/").json()["results"]
    session_ref = str(Session.objects.get().ref)

    assert [e["type"] for e in timeline] == ["track", "identify", "page"]
    assert {e["sessionRef"] for e in timeline} == {session_ref}


def all_text() -> str:
    """Every row of every Footprint table, as text, to look for erased values in."""
    tables = [
        t
        for t in connection.introspection.table_names()
        if t.split("_")[0] in ("tracking", "profiles")
    ]
    dump = []
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - our own table names
            dump += [repr(row) for row in cursor.fetchall()]
    return "\n".join(dump)


def test_erasure_removes_personal_data_and_suppresses_later_events(api, ada, door):
    assert "ada@example.com" in all_text()
    api.user.user_permissions.add(*_perms("delete_guest"))

    response = api.delete(f"/api/guests/{ada.ref}/")

    assert response.status_code == 200
    assert response.json() | {"erasedAt": None} == {
        "guestRef": str(ada.ref),
        "erasedAt": None,
        "events": 3,
        "sessions": 1,
        "identities": 3,
    }
    text = all_text()
    for value in ("ada@example.com", "ada-42", "browser-7", "Ada"):
        assert value not in text, f"{value} survived the erasure"
    assert not Guest.objects.exists() and not Event.objects.exists()
    assert not FailedEvent.objects.exists()
    assert Erasure.objects.get().erased_by == api.user.username
    assert api.get(f"/api/guests/{ada.ref}/").status_code == 404

    door.post("track", {"userId": "ada-42", "event": "Came back"})
    door.post("page", {"anonymousId": "browser-7", "name": "Home"})
    door.post("track", {"userId": "someone-else", "event": "Bought"})

    assert list(Event.objects.values_list("user_id", flat=True)) == ["someone-else"]
    assert SuppressedIdentity.objects.count() == 3


def test_erasure_of_an_aliased_id_drops_it_whichever_kind_it_comes_back_as(api, door):
    door.post("alias", {"previousId": "old-q", "userId": "user-u"})
    guest = Identity.objects.get(kind="user_id", value="user-u").guest
    api.user.user_permissions.add(*_perms("delete_guest"))
    assert api.delete(f"/api/guests/{guest.ref}/").status_code == 200

    door.post("track", {"userId": "old-q", "event": "Came back"})
    door.post("page", {"anonymousId": "old-q", "name": "Home"})
    door.post("track", {"userId": "someone-else", "event": "Bought"})

    assert list(Event.objects.values_list("user_id", flat=True)) == ["someone-else"]


def test_erasure_needs_the_permission(api, ada):
    assert api.delete(f"/api/guests/{ada.ref}/").status_code == 403
    assert Guest.objects.filter(pk=ada.pk).exists()


def test_erasure_of_another_workspace_guest_is_not_found(ada):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    outsider = UserFactory(is_superuser=False)
    outsider.user_permissions.add(*_perms("delete_guest"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=outsider).key}")

    assert client.delete(f"/api/guests/{ada.ref}/").status_code == 404
    assert Guest.objects.filter(pk=ada.pk).exists()


def test_erase_guest_command(ada):
    out = StringIO()
    call_command("erase_guest", "--identifier", "ada@example.com", stdout=out)

    assert out.getvalue().strip() == (
        f"erased guest {ada.ref}: 3 event(s), 1 session(s), 3 identifier(s)"
    )
    assert not Guest.objects.exists()
    assert Erasure.objects.get().erased_by == "erase_guest command"


def test_erase_guest_command_errors(ada):
    with pytest.raises(CommandError, match="no guest with identifier 'nobody'"):
        call_command("erase_guest", "--identifier", "nobody")
    with pytest.raises(CommandError, match="no guest with ref"):
        call_command("erase_guest", "--ref", "00000000-0000-0000-0000-000000000000")


def _perms(codename):
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(codename=codename)
