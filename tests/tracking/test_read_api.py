"""The read API: who may read what, filters, pagination, guests, the schema and its docs."""

import pytest
from rest_framework.test import APIClient

from tests.factories import SourceFactory, TokenFactory, UserFactory

pytestmark = pytest.mark.django_db


def api_client(user=None, *, token=None) -> APIClient:
    client = APIClient()
    if user is not None:
        token = TokenFactory(user=user).key
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def member(source):
    return UserFactory(workspaces=[source.workspace])


@pytest.fixture
def stored(door):
    """Two guests' events in the door's source."""
    batch = [
        {"type": "identify", "userId": "ada", "traits": {"email": "ada@example.com"}},
        {"type": "track", "userId": "ada", "event": "Signed Up", "properties": {"plan": "pro"}},
        {"type": "page", "anonymousId": "anon-1", "name": "Home"},
        {"type": "track", "anonymousId": "anon-1", "event": "Viewed"},
    ]
    for index, message in enumerate(batch):
        message["timestamp"] = f"2026-01-01T10:00:0{index}Z"
    assert door.post("batch", {"batch": batch}).status_code == 200
    return door.source


class TestAccess:
    def test_anonymous_is_refused(self, stored):
        response = APIClient().get("/api/events/")
        assert response.status_code == 401

    def test_write_key_cannot_read(self, stored):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {stored.write_key}")
        assert client.get("/api/events/").status_code == 401
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {stored.write_key}")
        assert client.get("/api/events/").status_code == 401

    def test_member_reads_only_their_workspace(self, stored, door):
        other = SourceFactory()
        door.source = other
        door.post("track", {"userId": "someone-else", "event": "Elsewhere"})
        outsider = UserFactory(workspaces=[other.workspace])
        insider = UserFactory(workspaces=[stored.workspace])

        mine = api_client(insider).get("/api/events/").json()["results"]
        theirs = api_client(outsider).get("/api/events/").json()["results"]

        assert {event["source"]["propId"] for event in mine} == {stored.prop_id}
        assert len(mine) == 4
        assert [event["event"] for event in theirs] == ["Elsewhere"]

    def test_user_without_workspace_sees_nothing(self, stored):
        client = api_client(UserFactory())
        assert client.get("/api/events/").json()["results"] == []
        assert client.get("/api/guests/").json()["results"] == []

    def test_other_workspace_guest_is_not_found(self, stored):
        guest = api_client(UserFactory(workspaces=[stored.workspace])).get("/api/guests/")
        ref = guest.json()["results"][0]["ref"]
        outsider = api_client(UserFactory(workspaces=[SourceFactory().workspace]))

        assert outsider.get(f"/api/guests/{ref}/").status_code == 404
        assert outsider.get(f"/api/guests/{ref}/events/").status_code == 404


class TestEvents:
    def test_newest_first_in_the_segment_shape(self, stored, member):
        results = api_client(member).get("/api/events/").json()["results"]

        assert [event["type"] for event in results] == ["track", "page", "track", "identify"]
        track = results[2]
        assert track["event"] == "Signed Up"
        assert track["name"] is None
        assert track["userId"] == "ada"
        assert track["anonymousId"] is None
        assert track["properties"] == {"plan": "pro"}
        assert track["timestamp"].startswith("2026-01-01T10:00:01")
        assert track["door"] == "segment"
        assert track["source"] == {"propId": stored.prop_id, "name": stored.name}
        assert results[1]["name"] == "Home"
        assert results[1]["event"] is None

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("type=track", ["Viewed", "Signed Up"]),
            ("event=Signed+Up", ["Signed Up"]),
            ("userId=ada", ["Signed Up", ""]),
            ("anonymousId=anon-1", ["Viewed", "Home"]),
            # The older snake_case names still work.
            ("user_id=ada", ["Signed Up", ""]),
            ("anonymous_id=anon-1", ["Viewed", "Home"]),
            ("since=2026-01-01T10:00:02Z", ["Viewed", "Home"]),
        ],
    )
    def test_filters(self, stored, member, query, expected):
        results = api_client(member).get(f"/api/events/?{query}").json()["results"]
        assert [event["event"] or event["name"] or "" for event in results] == expected

    def test_filter_by_source(self, stored, member):
        client = api_client(member)
        assert len(client.get(f"/api/events/?source={stored.prop_id}").json()["results"]) == 4
        assert client.get(f"/api/events/?source={stored.prop_id + 1000}").json()["results"] == []

    def test_bad_filter_value_is_a_clear_400(self, stored, member):
        response = api_client(member).get("/api/events/?since=yesterday")
        assert response.status_code == 400
        assert "since" in response.json()

    def test_cursor_pagination_walks_every_event_once(self, stored, member):
        client = api_client(member)
        for size in ("pageSize", "page_size"):
            seen, url = [], f"/api/events/?{size}=3"
            pages = 0
            while url:
                page = client.get(url).json()
                seen += [event["id"] for event in page["results"]]
                url = page["next"]
                pages += 1
            assert len(seen) == len(set(seen)) == 4
            assert pages == 2

    def test_detail(self, stored, member):
        client = api_client(member)
        first = client.get("/api/events/").json()["results"][0]
        assert client.get(f"/api/events/{first['id']}/").json() == first


class TestGuests:
    def test_lookup_by_identifier(self, stored, member):
        client = api_client(member)
        results = client.get("/api/guests/?identifier=ada").json()["results"]

        assert len(results) == 1
        assert {"provider": "user_id", "id": "ada"} in results[0]["identifiers"]
        assert client.get("/api/guests/?identifier=ada&kind=email").json()["results"] == []

    def test_detail_and_timeline(self, stored, member):
        client = api_client(member)
        ref = client.get("/api/guests/?identifier=anon-1").json()["results"][0]["ref"]

        guest = client.get(f"/api/guests/{ref}/").json()
        timeline = client.get(f"/api/guests/{ref}/events/").json()["results"]

        assert guest["ref"] == ref
        assert guest["guestType"] == "visitor"
        assert [event["type"] for event in timeline] == ["track", "page"]
        assert {event["guestRef"] for event in timeline} == {ref}

    def test_unknown_ref_is_404(self, stored, member):
        client = api_client(member)
        assert client.get("/api/guests/00000000-0000-0000-0000-000000000000/").status_code == 404
        assert client.get("/api/guests/not-a-uuid/").status_code == 404


class TestSchema:
    def test_schema_describes_the_read_api(self, member):
        response = api_client(member).get("/api/schema/", HTTP_ACCEPT="application/json")

        assert response.status_code == 200
        paths = response.json()["paths"]
        assert {"/api/events/", "/api/guests/", "/api/guests/{ref}/events/"} <= set(paths)

    def test_schema_describes_the_ingestion_doors(self, member):
        response = api_client(member).get("/api/schema/", HTTP_ACCEPT="application/json")

        paths = response.json()["paths"]
        assert set(paths["/collect"]) == {"get", "post"}
        assert set(paths["/v1.2/event/create.json"]) == {"get", "post"}
        assert "get" in paths["/v1.2/browser/create.json"]
        track = paths["/api/v1.0/Track"]["post"]
        schema = track["requestBody"]["content"]["application/json"]["schema"]
        assert schema["required"] == ["DeviceId", "EventType", "Value"]
        assert (
            paths["/api/v1.0/TrackBulk"]["post"]["requestBody"]["content"]["application/json"][
                "schema"
            ]["maxItems"]
            == 100
        )
        assert "404" in paths["/collect"]["get"]["responses"]

    def test_docs_page_uses_local_assets(self, client):
        response = client.get("/api/docs/")

        assert response.status_code == 200
        page = response.content.decode()
        assert "swagger-ui" in page
        assert "cdn.jsdelivr" not in page and "unpkg.com" not in page


@pytest.mark.parametrize(
    ("since", "status"),
    [("0935-10-18T11:51:04-22:20", 200), ("0001-01-01T00:00:00+01:00", 400)],
)
def test_since_with_any_offset_is_answered_not_a_server_error(api, since, status):
    from urllib.parse import quote

    answer = api.get(f"/api/events/?since={quote(since)}")

    assert answer.status_code == status, answer.content
    if status == 400:
        assert "since" in answer.json()
