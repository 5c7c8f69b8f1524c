"""Every admin page with malformed input, as a superuser and as a marketer: never a 5xx.

The crawl reads the admin site's registry and each admin's own URLs, filters, fields and
actions, so a new model, filter, action or custom view is crawled without this file knowing it.
It sends malformed filter values, field lookups, ordering, paging, search, object ids, action
selections, form posts and JSON bodies. Bad input may be ignored or refused (200, 302, 400,
403, 404, 405), but never answered as a server error, nor as a database outage (503). Integer
overflows only fail on PostgreSQL, where CI runs this file too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.main import ORDER_VAR, PAGE_VAR, SEARCH_VAR
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, reverse
from rest_framework.authtoken.models import Token

from profiles.models import Identity, Segment
from tests.factories import UserFactory
from tests.test_isolation import tenant_build

pytestmark = pytest.mark.django_db

HUGE = "999999999999999999999"  # past bigint: fails in SQL unless refused before
BIGINT_PAST = "9223372036854775808"
FILTER_VALUES = ["abc", "-1", "", HUGE, BIGINT_PAST, "1e400", "é"]
LIST_PARAMS = {
    ORDER_VAR: ["abc", "-", "1.-2", HUGE],
    PAGE_VAR: ["abc", "0", HUGE],
    SEARCH_VAR: ["%", "\\", HUGE, "x" * 3000],
    "_to_field": ["abc"],
    "_popup": ["abc"],
    "all": [""],
}
CHANGE_PARAMS = {
    "timeline": ["abc", "-1", HUGE, BIGINT_PAST],
    "_changelist_filters": [f"p={HUGE}"],
    "_to_field": ["abc"],
}
OBJECT_IDS = ["abc", "-1", HUGE, "%C3%A9"]
SELECTIONS = ["abc", "", "1.5", "-1", HUGE, "a\x00"]


def deep(depth: int, leaf: str = "{}") -> str:
    return '{"not": ' * depth + leaf + "}" * depth


# Put into a JSON field of an otherwise valid form: parses (or nearly), but cannot be stored.
JSON_FIELD_VALUES = [deep(5000), '{"a": "\\u0000"}', "[1e400]", "NaN", HUGE, "-1", '"text"']
# Put into every field of a form at once.
FORM_VALUES = ["abc", HUGE, deep(5000), "a\x00"]


def json_bodies(workspace_id: int) -> list[bytes]:
    """Bodies for the admin's JSON endpoints: broken shapes, then rules broken inside."""

    def rule(value) -> bytes:
        return json.dumps({"workspace": workspace_id, "slug": "crawl", "rule": value}).encode()

    trait = {"trait": {"key": "plan", "op": "eq", "value": "pro"}}
    return [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b"1",
        b'"text"',
        b"null",
        b'{"workspace": {}}',
        b'{"workspace": []}',
        b'{"workspace": 1e400}',
        b'{"workspace": "abc"}',
        f'{{"workspace": {HUGE}}}'.encode(),
        ("[" * 5000 + "]" * 5000).encode(),
        f'{{"workspace": {workspace_id}, "rule": {deep(5000)}}}'.encode(),
        f'{{"workspace": {workspace_id}, "rule": {deep(200, json.dumps(trait))}}}'.encode(),
        rule({"trait": {"key": "pl\x00an", "op": "eq", "value": "pro"}}),
        rule({"trait": {"key": "plan", "op": "eq", "value": "p\x00ro"}}),
        rule({"trait": {"key": "plan", "op": "in", "value": [str(i) for i in range(1000)]}}),
        rule({"trait": {"key": "plan", "op": "eq", "value": int(HUGE)}}),
        rule({"trait": {"key": "plan", "op": "gt", "value": int(HUGE) ** 20}}),
        rule({"event": {"name": "E", "count": {"op": "gte", "value": int(HUGE)}}}),
        rule({"sessions": {"op": "gte", "value": int(HUGE)}}),
        rule({"revenue": {"op": "gte", "value": int(HUGE) ** 20}}),
        rule({"event": {"name": "E", "where": [{"property": "p\x00", "op": "eq", "value": 1}]}}),
        rule({"field": {"name": "email_domain", "op": "in", "value": ["a\x00b"]}}),
        rule({"segment": {"slug": "x\x00"}}),
        rule({"experience": {"friendly_id": "x\x00", "variant": "v"}}),
        rule({"any": [trait] * 5000}),
        json.dumps({"workspace": workspace_id, "slug": ["s"], "rule": trait}).encode(),
        json.dumps({"workspace": str(workspace_id), "slug": "s\x00", "rule": trait}).encode(),
    ]


@dataclass
class Crawl:
    client: Client
    request: object  # a plain request of the crawling user, to ask admins what they offer
    checked: int = 0
    failures: list[str] = field(default_factory=list)
    # Change forms with JSON fields, and whether they save as shown (else the one-field posts
    # below would be refused for another field, and prove nothing).
    json_forms: dict[str, int] = field(default_factory=dict)
    custom_views: list[str] = field(default_factory=list)

    def send(self, method: str, path: str, data=None, **extra):
        """One request, undone afterwards, as the server runs each in its own transaction: the
        world stays as built, and a failed query does not poison the requests after it."""
        self.checked += 1
        session = self.client.cookies[settings.SESSION_COOKIE_NAME].value
        savepoint = transaction.savepoint()
        try:
            response = getattr(self.client, method)(path, data, **extra)
        finally:
            transaction.savepoint_rollback(savepoint)
            # A password change rotates the session, and that rotation was just rolled back.
            self.client.cookies[settings.SESSION_COOKIE_NAME] = session
        if response.status_code == 302 and response["Location"].startswith("/admin/login/"):
            self.failures.append(f"{method.upper()} {path}: the crawler was logged out")
        if response.status_code >= 500:
            error = response.exc_info[1] if response.exc_info else None
            cause = f" {type(error).__name__}: {str(error)[:80]}" if error else ""
            shown = str(data[:100] if isinstance(data, bytes) else data)[:100]
            self.failures.append(f"{method.upper()} {path} {shown} → {response.status_code}{cause}")
        return response


class FormValues(HTMLParser):
    """What a browser would submit for the admin page's own form (the change form)."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, list[str]] = {}
        self._in_form = False
        self._select: tuple[str, bool] | None = None
        self._options: list[tuple[str, bool]] = []
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._in_form = (attrs.get("id") or "").endswith("_form")
        if not self._in_form or (not attrs.get("name") and tag != "option"):
            return
        if tag == "input":
            kind = attrs.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            if kind not in ("submit", "button", "image", "reset", "file"):
                default = "on" if kind in ("checkbox", "radio") else ""
                self.values.setdefault(attrs["name"], []).append(attrs.get("value") or default)
        elif tag == "select":
            self._select, self._options = (attrs["name"], "multiple" in attrs), []
        elif tag == "option" and self._select:
            self._options.append((attrs.get("value", ""), "selected" in attrs))
        elif tag == "textarea":
            self._textarea = attrs["name"]
            self.values[self._textarea] = [""]

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea][0] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "textarea":
            self._textarea = None
        elif tag == "select" and self._select:
            name, multiple = self._select
            chosen = [value for value, selected in self._options if selected]
            if not chosen and not multiple and self._options:
                chosen = [self._options[0][0]]
            self.values[name] = chosen
            self._select = None


def form_values(html: str) -> dict[str, list[str]]:
    parser = FormValues()
    parser.feed(html)
    values = parser.values
    values.pop("csrfmiddlewaretoken", None)
    return values


def json_field_names(response) -> list[str]:
    """The names of the JSON inputs of a change page's form and its inline forms."""
    if response.context is None or "adminform" not in response.context:
        return []
    found = [response.context["adminform"].form]
    for inline in response.context.get("inline_admin_formsets") or []:
        found += inline.formset.forms
    return [
        form.add_prefix(name)
        for form in found
        for name, form_field in form.fields.items()
        if isinstance(form_field, forms.JSONField) and not form_field.disabled
    ]


def marketer_create(workspace):
    user = UserFactory(is_staff=True, workspaces=[workspace])
    user.groups.add(Group.objects.get(name="Marketers"))
    return user


def list_filter_params(model_admin, request) -> set[str]:
    """The query parameters the changelist's filters read (shown or not)."""
    changelist = model_admin.get_changelist_instance(request)
    return {param for spec in changelist.filter_specs for param in spec.expected_parameters()}


def field_lookups(model) -> list[tuple[str, str]]:
    """Lookups on the model's own fields, which Django's admin takes from the address."""
    found = []
    for model_field in model._meta.concrete_fields:
        name = model_field.name
        found += [(name, HUGE), (f"{name}__regex", "(")]
        if model_field.many_to_one:
            found.append((f"{name}__id__exact", HUGE))
    return found


def custom_urls(model_admin) -> list:
    """An admin's own views beyond changelist/add/change/delete/history."""
    opts = model_admin.model._meta
    standard = {
        f"{opts.app_label}_{opts.model_name}_{view}"
        for view in ("changelist", "add", "change", "delete", "history")
    }
    return [url for url in model_admin.get_urls() if url.name and url.name not in standard]


def reversed_with(pattern, value: str) -> str | None:
    """The URL of ``pattern`` with every parameter set to ``value`` (None if it cannot be)."""
    try:
        return reverse(
            f"admin:{pattern.name}", kwargs=dict.fromkeys(pattern.pattern.converters, value)
        )
    except NoReverseMatch:
        return None


def crawl_model(crawl: Crawl, model, model_admin, *, target_pk, workspace_id: int) -> None:
    opts = model._meta
    base = f"/admin/{opts.app_label}/{opts.model_name}/"
    send = crawl.send

    # A model the user may not use is refused before its list or forms read any input; object
    # pages look the object up first, and the admin's own views check no model permission.
    usable = any(model_admin.get_model_perms(crawl.request).values())
    if usable:
        # The list: every filter's parameters, lookups on the fields, ordering, paging, search.
        for param in sorted(list_filter_params(model_admin, crawl.request)):
            for value in FILTER_VALUES:
                send("get", base, {param: value})
        for param, value in field_lookups(model):
            send("get", base, {param: value})
        for param, values in LIST_PARAMS.items():
            for value in values:
                send("get", base, {param: value})

        # Every action (Django's delete_selected too) with selections that are not ids.
        actions = [name for _, name, _ in model_admin._get_base_actions()]
        for action in [*actions, "no_such_action"]:
            for selected in SELECTIONS:
                send("post", base, {"action": action, "_selected_action": [selected], "index": "0"})
            send("post", base, {"action": action, "_selected_action": ["-1", HUGE], "post": "yes"})
            send("post", base, {"action": action, "index": "abc", "_selected_action": "abc"})

    # Object pages for ids that are none, and a real object with malformed parameters.
    for object_id in OBJECT_IDS:
        for view in ("change", "delete", "history"):
            send("get", f"{base}{object_id}/{view}/")
        send("post", f"{base}{object_id}/delete/", {"post": "yes"})
    change = f"{base}{target_pk}/change/"
    for param, values in CHANGE_PARAMS.items():
        for value in values:
            send("get", change, {param: value})
    send("get", f"{base}{target_pk}/history/", {PAGE_VAR: HUGE})

    if usable:
        # Forms: every field malformed at once, then a valid form with one JSON field malformed.
        add, page = send("get", f"{base}add/"), send("get", change)
        for path, shown in ((f"{base}add/", add), (change, page)):
            names = list(form_values(shown.content.decode())) if shown.status_code == 200 else []
            for value in FORM_VALUES:
                send("post", path, dict.fromkeys(names or ["name"], value))
        names = json_field_names(page) if page.status_code == 200 else []
        if names:
            valid = form_values(page.content.decode())
            unchanged = send("post", change, {**valid, "_save": ["Save"]})
            crawl.json_forms[opts.label] = unchanged.status_code
            for name in names:
                for value in JSON_FIELD_VALUES:
                    send("post", change, {**valid, name: [value], "_save": ["Save"]})

    # The admin's own views, with ids that are none and malformed bodies.
    for pattern in custom_urls(model_admin):
        crawl.custom_views.append(pattern.name)
        own = reversed_with(pattern, str(target_pk))
        for path in sorted(
            {own, *(reversed_with(pattern, value) for value in OBJECT_IDS)} - {None}
        ):
            send("get", path)
            send("post", path, {"password1": HUGE, "password2": HUGE})
        if own is not None:  # bodies where the id is real, so they reach the view's own parsing
            for body in json_bodies(workspace_id):
                send("post", own, body, content_type="application/json")


def crawl_site(crawl: Crawl) -> None:
    """The site's own pages: index, app lists, autocomplete, view-on-site."""
    send = crawl.send
    send("get", "/admin/", {"e": HUGE})
    for app_label in sorted({model._meta.app_label for model in admin.site._registry}):
        send("get", f"/admin/{app_label}/")
    for value in ["abc", "-1", HUGE, ""]:
        send(
            "get",
            "/admin/autocomplete/",
            {"app_label": "profiles", "model_name": "guest", "field_name": "guest", "term": value},
        )
        send(
            "get",
            "/admin/autocomplete/",
            {"app_label": value, "model_name": value, "field_name": value, "page": value},
        )
    for object_id in OBJECT_IDS:
        send("get", f"/admin/r/1/{object_id}/")
        send("get", f"/admin/r/{HUGE}/{object_id}/")


@pytest.fixture
def crawl_world(client, django_capture_on_commit_callbacks):
    return tenant_build(client, django_capture_on_commit_callbacks, "crawlco")


@pytest.fixture
def quiet_refusals():
    """Each refusal (403, 404, 400) is logged with its traceback: thousands cost seconds. Server
    errors are seen on the responses themselves."""
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("role", ["superuser", "marketer"])
def test_no_admin_page_answers_5xx_to_malformed_input(crawl_world, quiet_refusals, role):
    tenant = crawl_world
    user = (
        UserFactory(is_staff=True, is_superuser=True)
        if role == "superuser"
        else marketer_create(tenant.workspace)
    )
    spare = UserFactory(is_staff=True)  # whose user form is posted, not the crawler's own
    Token.objects.create(user=spare)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    request = RequestFactory().get("/")
    request.user = user
    crawl = Crawl(client=client, request=request)

    crawled = []
    for model, model_admin in admin.site._registry.items():
        target = spare if model is type(user) else model._default_manager.order_by("-pk").first()
        assert target is not None, f"the crawl world has no {model._meta.label}"
        crawl_model(
            crawl, model, model_admin, target_pk=target.pk, workspace_id=tenant.workspace.pk
        )
        crawled.append(model._meta.label)
    crawl_site(crawl)

    failures = "\n".join(crawl.failures)
    assert not failures, f"{len(crawl.failures)} of {crawl.checked} requests failed:\n{failures}"
    assert len(crawled) == len(admin.site._registry) >= 17
    assert crawl.checked > (1500 if role == "superuser" else 750)
    assert {"profiles_segment_preview", "auth_user_password_change"} <= set(crawl.custom_views)
    if role == "superuser":
        assert {"tracking.Source", "profiles.Segment", "experiences.Experience"} <= set(
            crawl.json_forms
        )
        assert set(crawl.json_forms.values()) == {302}, crawl.json_forms


# --- What the crawl found, by name -----------------------------------------------------------


def test_list_filters_ignore_values_they_do_not_offer(admin_client, door):
    door.post("identify", {"userId": "ada", "traits": {"email": "ada@ex.io"}})

    for path, params in [
        ("/admin/profiles/guest/", {"segment": "abc"}),
        ("/admin/profiles/guest/", {"segment": HUGE}),
        ("/admin/tracking/event/", {"source": "abc"}),
        ("/admin/tracking/failedevent/", {"source": HUGE}),
    ]:
        page = admin_client.get(path, params)
        assert page.status_code == 200, (path, params)
    assert "ada@ex.io" in admin_client.get("/admin/profiles/guest/", {"segment": "abc"}).text


def test_lookups_that_no_filter_reads_show_the_unfiltered_list(admin_client, door):
    door.post("track", {"userId": "u", "event": "E"})

    for params in [{"id__regex": "("}, {"id": HUGE}, {"guest__id__exact": HUGE}, {"ip": "x"}]:
        refused = admin_client.get("/admin/tracking/event/", params)
        assert (refused.status_code, refused["Location"]) == (302, "/admin/tracking/event/?e=1")
    # The filters' own parameters still filter, an overflowing id included.
    filtered = admin_client.get("/admin/tracking/source/", {"workspace__id__exact": HUGE})
    assert filtered.status_code == 200


def test_an_action_on_a_selection_of_non_ids_changes_nothing(admin_client, source):
    key = source.write_key
    for path, action in [
        ("/admin/tracking/source/", "rotate_write_key"),
        ("/admin/auth/user/", "delete_selected"),  # auth's admin is guarded too
    ]:
        for selected in ["abc", HUGE, ""]:
            response = admin_client.post(
                path, {"action": action, "_selected_action": [selected], "index": "0"}, follow=True
            )
            assert response.status_code == 200
            assert "nothing was changed" in response.text, (path, selected)
    source.refresh_from_db()
    assert source.write_key == key


def test_the_rule_preview_refuses_malformed_bodies_with_a_message(admin_client, source):
    url = "/admin/profiles/segment/preview/"
    workspace = source.workspace_id

    def preview(body):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return admin_client.post(url, raw, content_type="application/json")

    for body in [b"[]", b"1", ("[" * 5000 + "]" * 5000).encode(), b"{not json"]:
        refused = preview(body)
        assert refused.status_code == 400
        assert refused.json()["error"]["message"].startswith("the body is")
    for body in [
        b'{"workspace": {}}',
        b'{"workspace": 1e400}',
        f'{{"workspace": {HUGE}}}'.encode(),
    ]:
        assert preview(body).json() == {
            "error": {"path": "workspace", "message": "choose a workspace"}
        }
    nul_key = preview(
        {"workspace": workspace, "rule": {"trait": {"key": "p\x00", "op": "eq", "value": 1}}}
    )
    assert nul_key.status_code == 200  # an input error, not a database outage
    assert nul_key.json()["error"] == {
        "path": "trait.key",
        "message": "must not contain the NUL character (U+0000)",
    }
    counted = preview(
        {"workspace": workspace, "rule": {"sessions": {"op": "gte", "value": int(HUGE)}}}
    )
    assert counted.json()["error"]["path"] == "sessions.value"


def test_the_segment_form_refuses_a_nul_trait_key_and_deep_nesting(admin_client, source):
    def add(rule: str):
        return admin_client.post(
            "/admin/profiles/segment/add/",
            {
                "workspace": source.workspace_id,
                "name": "Pro",
                "slug": "pro",
                "rule": rule,
                "is_active": "on",
                "recompute_every": "01:00:00",
            },
        )

    nul = add('{"trait": {"key": "pl\\u0000an", "op": "eq", "value": "pro"}}')
    assert nul.status_code == 200
    assert "must not contain the NUL character (U+0000)" in nul.text
    nested = add(deep(5000))
    assert nested.status_code == 200
    assert "JSON may nest at most" in nested.text
    assert not Segment.objects.exists()


def test_the_guest_timeline_ignores_a_page_past_any_offset(admin_client, door):
    door.post("track", {"userId": "ada", "event": "Order Completed"})
    guest = Identity.objects.get(value="ada").guest

    for page in (HUGE, BIGINT_PAST, "abc"):
        shown = admin_client.get(f"/admin/profiles/guest/{guest.pk}/change/", {"timeline": page})
        assert shown.status_code == 200
        assert "Order Completed" in shown.text  # the first page


def test_parameters_that_fail_twice_are_not_called_a_database_error(admin_client):
    answer = admin_client.get("/admin/tracking/event/", {"e": "1", "id__regex": "("})

    assert answer.status_code == 200
    assert "Cannot show this list" in answer.text
    assert "database" not in answer.text.lower()
