"""Sitecore's Stream API door through HTTP: browsers, events, IDENTITY, FORCE_CLOSE, JSONP."""

import orjson
import pytest

from profiles.models import Guest, GuestMerge, Identity, Session
from tracking.models import Door, Event, InboxRequest

pytestmark = pytest.mark.django_db


def view(browser_id, **fields):
    return {
        "channel": "WEB",
        "type": "VIEW",
        "language": "EN",
        "currency": "EUR",
        "page": "/home",
        "pos": "myretailsite/ireland",
        "browser_id": browser_id,
        **fields,
    }


class Stream:
    """Calls the Stream API the way a page's script tags do."""

    def __init__(self, client, capture, workspace):
        self.client, self.capture, self.workspace = client, capture, workspace

    def browser(self, **params):
        params.setdefault("client_key", self.workspace.client_key)
        return self.client.get("/v1.2/browser/create.json", {"message": "{}", **params})

    def new_browser(self) -> str:
        return self.browser().json()["ref"]

    def event(self, message, *, method="get", **params):
        params.setdefault("client_key", self.workspace.client_key)
        with self.capture(execute=True):
            if method == "get":
                return self.client.get(
                    "/v1.2/event/create.json", {"message": orjson.dumps(message), **params}
                )
            query = "&".join(f"{k}={v}" for k, v in params.items())
            return self.client.post(
                f"/v1.2/event/create.json?{query}",
                orjson.dumps(message),
                content_type="application/json",
            )


@pytest.fixture
def sitecore(client, django_capture_on_commit_callbacks, source):
    return Stream(client, django_capture_on_commit_callbacks, source.workspace)


class TestBrowserCreate:
    def test_creates_a_browser_ref_and_its_visitor_guest(self, sitecore):
        response = sitecore.browser()

        assert response.status_code == 200
        answer = response.json()
        assert answer["status"] == "OK"
        assert answer["version"] == "1.2"
        assert answer["client_key"] == sitecore.workspace.client_key
        identity = Identity.objects.get(kind="browser", value=answer["ref"])
        assert str(identity.guest.ref) == answer["customer_ref"]
        assert identity.guest.guest_type == Guest.Type.VISITOR

    def test_jsonp(self, sitecore):
        response = sitecore.browser(callback="Boxever.callbacks.cb1")

        assert response["Content-Type"] == "application/javascript"
        body = response.content.decode()
        assert body.startswith("Boxever.callbacks.cb1(") and body.endswith(");")
        answer = orjson.loads(body[len("Boxever.callbacks.cb1(") : -2])
        assert answer["status"] == "OK"

    def test_a_callback_that_is_not_a_function_name_is_refused(self, sitecore):
        response = sitecore.browser(callback="alert(1)//")

        assert response.status_code == 400
        assert response["Content-Type"] == "application/json"
        assert response.json()["field"] == "callback"
        assert not Guest.objects.exists()

    @pytest.mark.parametrize("client_key", ["nope", ""])
    def test_an_unknown_client_key_is_a_401(self, sitecore, client_key):
        response = sitecore.browser(client_key=client_key)

        assert response.status_code == 401
        assert response.json()["status"] == "ERROR"
        assert response.json()["field"] == "client_key"


class TestEventCreate:
    def test_a_view_is_stored_and_answered_with_its_ref(self, sitecore):
        browser = sitecore.new_browser()
        message = view(browser, ext={"loyalty_tier": "gold"})

        response = sitecore.event(message)

        assert response.status_code == 200, response.content
        answer = response.json()
        assert answer["status"] == "OK"
        stored = Event.objects.get()
        assert answer["ref"] == stored.message_id
        assert answer["customer_ref"] == str(stored.guest.ref)
        assert answer["session_ref"] == str(stored.session.ref)
        assert (stored.door, stored.type, stored.name) == (Door.STREAM, "VIEW", "VIEW")
        assert stored.channel == "WEB"
        assert stored.currency == "EUR"
        assert stored.properties["pointOfSale"] == "myretailsite/ireland"
        assert stored.properties["loyalty_tier"] == "gold"
        assert stored.context["page"] == {"url": "/home"}
        assert stored.payload == message
        assert stored.guest.identities.get().value == browser
        assert stored.session.page_view_count == 1
        assert stored.session.first_page == "/home"
        assert InboxRequest.objects.get().status == InboxRequest.Status.DONE

    def test_post_with_the_message_as_body_and_jsonp_on_get(self, sitecore):
        browser = sitecore.new_browser()
        posted = sitecore.event(view(browser, type="ADD", product={"sku": "A"}), method="post")
        script = sitecore.event(view(browser, type="SEARCH"), callback="cb")

        assert posted.status_code == 200, posted.content
        assert script.content.startswith(b"cb({") and script.content.endswith(b");")
        assert dict(Event.objects.values_list("type", "properties__product")) == {
            "ADD": {"sku": "A"},
            "SEARCH": None,
        }

    @pytest.mark.parametrize(
        "channel", ["WEB", "MOBILE_APP", "MOBILE_WEB", "EMAIL", "CALL_CENTER", "BRANCH", "KIOSK"]
    )
    def test_sitecore_channels(self, sitecore, channel):
        response = sitecore.event(view(sitecore.new_browser(), channel=channel))

        assert response.status_code == 200
        assert Event.objects.get().channel == channel

    @pytest.mark.parametrize(
        "event_type",
        ["IDENTITY", "ADD", "CONFIRM", "CHECKOUT", "PAYMENT", "CLEAR_CART", "SEARCH", "MY_QUIZ"],
    )
    def test_standard_and_custom_types(self, sitecore, event_type):
        response = sitecore.event(view(sitecore.new_browser(), type=event_type))

        assert response.status_code == 200, response.content
        assert Event.objects.get().name == event_type

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"type": "view"}, "type"),
            ({"type": None}, "type"),
            ({"channel": None}, "channel"),
            ({"channel": "web"}, "channel"),
            ({"browser_id": None}, "browser_id"),
            ({"currency": "EURO"}, "currency"),
            ({"ext": ["not", "an", "object"]}, "ext"),
        ],
    )
    def test_a_bad_message_is_a_400_naming_the_field(self, sitecore, change, field):
        message = {**view("b-1"), **change}
        message = {key: value for key, value in message.items() if value is not None}

        response = sitecore.event(message)

        assert response.status_code == 400
        assert response.json()["status"] == "ERROR"
        assert response.json()["field"] == field
        assert not InboxRequest.objects.exists()

    def test_missing_or_broken_message(self, sitecore):
        missing = sitecore.client.get(
            "/v1.2/event/create.json", {"client_key": sitecore.workspace.client_key}
        )
        broken = sitecore.client.get(
            "/v1.2/event/create.json",
            {"client_key": sitecore.workspace.client_key, "message": "{nope"},
        )

        assert missing.status_code == 400
        assert missing.json()["field"] == "message"
        assert broken.status_code == 400
        assert broken.json()["code"] == "invalid_json"

    def test_an_unknown_client_key_is_a_401(self, sitecore):
        response = sitecore.event(view("b-1"), client_key="nope")

        assert response.status_code == 401
        assert not Event.objects.exists()


class TestEvents:
    """``POST /v1.2/events``: the JSON body form Sitecore's Engage SDK sends."""

    ORIGIN = "http://localhost:3000"

    def post(self, sitecore, body, **headers):
        with sitecore.capture(execute=True):
            return sitecore.client.post(
                "/v1.2/events",
                body if isinstance(body, bytes) else orjson.dumps(body),
                content_type="application/json",
                HTTP_ORIGIN=self.ORIGIN,
                HTTP_X_LIBRARY_VERSION="1.4.3",
                **headers,
            )

    def test_the_sdk_preflight_is_allowed(self, sitecore):
        response = sitecore.client.options(
            "/v1.2/events",
            HTTP_ORIGIN=self.ORIGIN,
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type,x-library-version",
        )

        assert response.status_code == 204
        assert response["Access-Control-Allow-Origin"] == self.ORIGIN
        assert "POST" in response["Access-Control-Allow-Methods"]
        allowed = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}
        assert {"content-type", "x-library-version"} <= allowed

    def test_a_view_with_the_client_key_inside_is_stored_like_event_create(self, sitecore):
        browser = sitecore.new_browser()
        message = {
            **view(browser, ext={"loyalty_tier": "gold"}),
            "client_key": sitecore.workspace.client_key,
        }

        response = self.post(sitecore, message)

        assert response.status_code == 200, response.content
        assert response["Access-Control-Allow-Origin"] == self.ORIGIN
        answer = response.json()
        stored = Event.objects.get()
        assert answer["ref"] == stored.message_id
        assert answer["status"] == "OK"
        assert answer["version"] == "1.2"
        assert answer["client_key"] == sitecore.workspace.client_key
        assert answer["customer_ref"] == str(stored.guest.ref)
        assert (stored.door, stored.type, stored.channel) == (Door.STREAM, "VIEW", "WEB")
        assert stored.properties["loyalty_tier"] == "gold"
        assert stored.properties["pointOfSale"] == "myretailsite/ireland"
        assert "client_key" not in stored.properties
        assert stored.payload == message
        assert stored.guest.identities.get().value == browser
        assert InboxRequest.objects.get().status == InboxRequest.Status.DONE

    def test_identity_stitches_the_browser_to_the_email(self, sitecore):
        browser = sitecore.new_browser()
        key = sitecore.workspace.client_key
        self.post(sitecore, {**view(browser), "client_key": key})

        response = self.post(
            sitecore,
            {
                **view(browser, type="IDENTITY"),
                "client_key": key,
                "email": "ada@example.com",
                "firstname": "Ada",
                "identifiers": [{"provider": "email", "id": "ada@example.com"}],
            },
        )

        assert response.status_code == 200, response.content
        [guest] = Guest.objects.filter(merged_into__isnull=True)
        assert (guest.email, guest.first_name) == ("ada@example.com", "Ada")
        assert set(Event.objects.values_list("guest_id", flat=True)) == {guest.pk}

    @pytest.mark.parametrize(
        ("body", "status", "code", "field"),
        [
            (b"{nope", 400, "invalid_json", None),
            (b"", 400, "missing_message", "message"),
            (b"[1, 2]", 400, "invalid_message", "message"),
            (
                {"type": "VIEW", "channel": "WEB", "browser_id": "b"},
                401,
                "missing_client_key",
                None,
            ),
            ({"client_key": "nope", "type": "VIEW"}, 401, "invalid_client_key", "client_key"),
            ({"type": "view", "channel": "WEB", "browser_id": "b"}, 400, "invalid_type", "type"),
        ],
    )
    def test_refusals_are_the_stream_error_shape(self, sitecore, body, status, code, field):
        if isinstance(body, dict) and "client_key" not in body and status == 400:
            body = {**body, "client_key": sitecore.workspace.client_key}

        response = self.post(sitecore, body)

        assert response.status_code == status, response.content
        answer = response.json()
        assert answer["status"] == "ERROR"
        assert answer["code"] == code
        if field:
            assert answer["field"] == field
        assert response["Access-Control-Allow-Origin"] == self.ORIGIN
        assert not Event.objects.exists()

    def test_only_post(self, sitecore):
        response = sitecore.client.get("/v1.2/events")

        assert response.status_code == 405
        assert response["Allow"] == "POST"


def test_identity_stitches_the_browser_guest_to_the_known_guest(sitecore, door):
    door.post("identify", {"userId": "u-7", "traits": {"email": "grace@navy.example"}})
    known = Guest.objects.get()
    browser = sitecore.new_browser()
    sitecore.event(view(browser))

    response = sitecore.event(
        view(
            browser,
            type="IDENTITY",
            firstname="Grace",
            lastname="Hopper",
            identifiers=[{"provider": "email", "id": "Grace@Navy.example"}],
        )
    )

    assert response.status_code == 200
    assert response.json()["customer_ref"] == str(known.ref)
    known.refresh_from_db()
    assert (known.first_name, known.last_name) == ("Grace", "Hopper")
    assert set(Event.objects.values_list("guest_id", flat=True)) == {known.pk}
    assert Identity.objects.get(kind="browser").guest_id == known.pk
    merge = GuestMerge.objects.get()
    assert merge.guest_id == known.pk
    assert Guest.objects.get(ref=merge.merged_ref).merged_into_id == known.pk


def test_identity_with_a_provider_identifier(sitecore):
    browser = sitecore.new_browser()
    sitecore.event(
        view(browser, type="IDENTITY", identifiers=[{"provider": "loyalty", "id": "L-1"}])
    )

    guest = Identity.objects.get(kind="loyalty", value="L-1").guest
    assert guest.guest_type == Guest.Type.CUSTOMER
    assert guest.identities.filter(kind="browser", value=browser).exists()


def test_force_close_closes_the_session_at_once(sitecore):
    browser = sitecore.new_browser()
    first = sitecore.event(view(browser)).json()
    closed = sitecore.event(view(browser, type="FORCE_CLOSE")).json()
    after = sitecore.event(view(browser, page="/again")).json()

    assert closed["session_ref"] == first["session_ref"]
    session = Session.objects.get(ref=first["session_ref"])
    assert session.status == Session.Status.CLOSED
    assert session.force_closed
    assert session.event_count == 2
    assert after["session_ref"] != first["session_ref"]
    assert Session.objects.get(ref=after["session_ref"]).status == Session.Status.OPEN


@pytest.mark.django_db
def test_a_client_key_holding_nul_is_not_valid_rather_than_a_database_error():
    from tracking.errors import IngestError
    from tracking.selectors import workspace_get_by_client_key

    with pytest.raises(IngestError) as refused:
        workspace_get_by_client_key("a\x00b")

    assert (refused.value.status, refused.value.code) == (401, "invalid_client_key")
