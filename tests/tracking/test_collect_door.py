"""The Event Track API door (/collect) through HTTP: answers, redirects, 404s, identities."""

import orjson
import pytest

from profiles.models import Guest, Session
from tests.factories import SourceFactory
from tracking.models import Door, Event, InboxRequest

pytestmark = pytest.mark.django_db


class Collector:
    """Sends hits the way seed 001's tags and SDKs do."""

    def __init__(self, client, capture, source):
        self.client, self.capture, self.source = client, capture, source

    def address(self, **params):
        return {
            "portal_id": self.source.workspace.portal_id,
            "prop_id": self.source.prop_id,
            **params,
        }

    def get(self, **params):
        with self.capture(execute=True):
            return self.client.get("/collect", self.address(**params))

    def post(self, body, **params):
        query = "&".join(f"{k}={v}" for k, v in self.address(**params).items())
        with self.capture(execute=True):
            return self.client.post(
                f"/collect?{query}", orjson.dumps(body), content_type="application/json"
            )


@pytest.fixture
def collector(client, django_capture_on_commit_callbacks, source):
    return Collector(client, django_capture_on_commit_callbacks, source)


HIT = {"ea": "view", "ec": "product", "sid": "6320", "aid": "7", "uid": "7.1558521539"}
CALLBACK = "_event_callback_data("


def test_the_default_answer_is_javascript_carrying_the_events_ids(collector):
    response = collector.get(**HIT)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/javascript"
    body = response.content.decode()
    assert body.startswith(CALLBACK) and body.endswith(");")
    answer = orjson.loads(body[len(CALLBACK) : -2])
    stored = Event.objects.get()
    assert answer["type"] == "event"
    assert answer["event_id"] == stored.message_id
    assert answer["session_id"] == str(stored.session.ref)
    assert answer["client_id"] == str(stored.guest.ref)
    assert (answer["sid"], answer["aid"], answer["uid"]) == ("6320", "7", "7.1558521539")


def test_a_posted_hit_is_normalised_and_keeps_its_payload(collector):
    body = {
        **HIT,
        "ea": "purchase",
        "ec": "checkout",
        "context": {"page": {"url": "https://shop.example/cart"}},
        "extra": {"revenue": 120.5, "currency": "eur", "coupon": "SPRING"},
        "dims": {"shop": "S-12", "payment_method": "card"},
        "items": [{"sku": "A-1", "quantity": 2}],
    }
    response = collector.post(body, resp_type="json")

    assert response.status_code == 200, response.content
    stored = Event.objects.get()
    assert response.json()["event_id"] == stored.message_id
    assert (stored.door, stored.type, stored.name) == (Door.COLLECT, "track", "purchase")
    assert stored.properties["category"] == "checkout"
    assert stored.properties["dims"] == {"shop": "S-12", "payment_method": "card"}
    assert stored.properties["items"] == [{"sku": "A-1", "quantity": 2}]
    assert stored.properties["coupon"] == "SPRING"
    assert (str(stored.revenue), stored.currency) == ("120.5000", "EUR")
    assert stored.context["page"] == {"url": "https://shop.example/cart"}
    assert stored.user_id == "7.1558521539"
    assert stored.payload == body
    assert stored.session.client_session_id == "6320"


def test_json_fields_in_a_get_are_json_strings(collector):
    collector.get(**HIT, extra=orjson.dumps({"plan": "pro"}).decode(), items="[1, 2]")

    stored = Event.objects.get()
    assert stored.properties["plan"] == "pro"
    assert stored.properties["items"] == [1, 2]


def test_json_answer(collector):
    response = collector.get(**HIT, resp_type="json")

    assert response["Content-Type"] == "application/json"
    assert response.json()["event_id"] == Event.objects.get().message_id


def test_pixel_answer_is_a_transparent_gif_never_cached(collector):
    response = collector.get(**HIT, resp_type="pixel")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    assert response.content[6:10] == b"\x01\x00\x01\x00"  # 1 x 1
    assert "no-cache" in response["Cache-Control"]
    assert "no-store" in response["Cache-Control"]
    assert response["Pragma"] == "no-cache"
    assert Event.objects.count() == 1


class TestRedirect:
    @pytest.fixture
    def source(self, db):
        return SourceFactory(allowed_redirect_hosts=["shop.example"])

    def test_a_click_redirects_to_an_allowed_host(self, collector):
        url = "https://shop.example/sale?from=mail"
        response = collector.get(**{**HIT, "ea": "click"}, resp_type="redirect", redirect_url=url)

        assert response.status_code == 302
        assert response["Location"] == url
        assert Event.objects.get().name == "click"

    @pytest.mark.parametrize(
        "url",
        [
            "https://evil.example/",
            "https://shop.example@evil.example/",
            "https://shop.example.evil.example/",
            "//evil.example/",
            "javascript:alert(1)//shop.example",
            "https:\\\\evil.example\\shop.example",
            "ftp://shop.example/file",
            "",
        ],
    )
    def test_anything_else_is_refused_clearly_and_nothing_is_stored(self, collector, url):
        response = collector.get(**{**HIT, "ea": "click"}, resp_type="redirect", redirect_url=url)

        assert response.status_code == 400
        assert response.json()["field"] == "redirect_url"
        assert "Location" not in response
        assert not Event.objects.exists()

    def test_only_clicks_redirect(self, collector):
        response = collector.get(**HIT, resp_type="redirect", redirect_url="https://shop.example/")

        assert response.status_code == 400
        assert "ea=click" in response.json()["message"]
        assert not Event.objects.exists()

    def test_a_source_without_allowed_hosts_never_redirects(self, collector):
        other = SourceFactory(workspace=collector.source.workspace)
        collector.source = other
        response = collector.get(
            **{**HIT, "ea": "click"}, resp_type="redirect", redirect_url="https://shop.example/"
        )

        assert response.status_code == 400


@pytest.mark.parametrize(
    "address",
    [
        {"portal_id": 999999},
        {"prop_id": 999999},
        {"portal_id": "abc"},
        {"prop_id": ""},
    ],
)
def test_unknown_portal_or_property_is_the_seeds_404(collector, address):
    response = collector.get(**HIT, **address)

    assert response.status_code == 404
    assert response.json() == {"message": "404 not found"}
    assert not InboxRequest.objects.exists()


def test_a_property_of_another_portal_is_404(collector):
    other = SourceFactory()
    response = collector.get(**HIT, prop_id=other.prop_id)

    assert response.status_code == 404


@pytest.mark.parametrize(("drop", "field"), [("ea", "ea"), ("ec", "ec"), (("uid", "aid"), "uid")])
def test_a_missing_field_is_a_400_naming_it(collector, drop, field):
    hit = {k: v for k, v in HIT.items() if k not in (drop if isinstance(drop, tuple) else (drop,))}
    response = collector.get(**hit)

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert not InboxRequest.objects.exists()


def test_bad_resp_type_and_bad_json_fields_are_400(collector):
    assert collector.get(**HIT, resp_type="xml").json()["field"] == "resp_type"
    assert collector.get(**HIT, extra="{nope").json()["field"] == "extra"
    assert collector.get(**HIT, items='{"a": 1}').json()["field"] == "items"


def test_uid_is_a_known_user_and_sid_the_session(collector):
    collector.get(**HIT)
    collector.get(**{**HIT, "ea": "add_to_cart"})
    collector.get(**{**HIT, "sid": "6321", "aid": ""})

    guest = Guest.objects.get()
    assert guest.guest_type == Guest.Type.CUSTOMER
    assert set(guest.identities.values_list("kind", "value")) == {
        ("user_id", "7.1558521539"),
        ("device_id", "7"),
    }
    counts = dict(Session.objects.values_list("client_session_id", "event_count"))
    assert counts == {"6320": 2, "6321": 1}
