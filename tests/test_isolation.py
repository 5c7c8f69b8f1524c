"""Isolation and auth: two workspaces, three users, every read endpoint and admin page.

Each workspace is filled through the real doors with one of everything (events, guests merged
and erased, failed events, a segment with a run, an experience with a flow execution), its
strings tagged with the workspace's marker. Every endpoint of the read API and every admin
page of a workspace-owned model is then read as a member of A, a member of B and a user with no
workspace. The endpoint and admin lists are read from the router and the admin site, so a new
endpoint or model that this file does not know fails the coverage tests.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.urls import URLPattern
from rest_framework.test import APIClient

from config import api_urls
from experiences.models import Experience
from profiles.models import Guest, Identity, Segment
from profiles.segments import segment_recompute
from profiles.services import guest_erase
from tests.conftest import Door
from tests.factories import (
    ExperienceFactory,
    SegmentFactory,
    SourceFactory,
    TokenFactory,
    UserFactory,
    VariantFactory,
    WorkspaceFactory,
)
from tracking import services
from tracking.admin_base import WorkspaceScopedAdmin
from tracking.models import Event, FailedEvent, InboxRequest, Source, Workspace

pytestmark = pytest.mark.django_db

A, B = "alphaco", "bravoco"
OWNED_APPS = ("tracking", "profiles", "experiences")


@dataclass
class Tenant:
    tag: str
    workspace: Workspace
    source: Source
    door: Door
    guest: Guest
    event: Event
    segment: Segment
    experience: Experience


def tenant_build(client, capture, tag: str) -> Tenant:
    source = SourceFactory(workspace=WorkspaceFactory(name=f"{tag} workspace"), name=f"{tag} web")
    workspace = source.workspace
    door = Door(client, capture, source)
    for route, payload in [
        ("page", {"anonymousId": f"{tag}-anon", "name": f"{tag} home"}),
        ("track", {"userId": f"{tag}-user", "event": f"{tag} order", "properties": {"revenue": 5}}),
        # Two guests become one: a merge record.
        (
            "identify",
            {
                "userId": f"{tag}-user",
                "anonymousId": f"{tag}-anon",
                "traits": {"email": f"{tag}@{tag}.test", "plan": "pro"},
            },
        ),
        # A message without its event name: a failed event.
        ("batch", {"batch": [{"type": "track", "userId": f"{tag}-user"}]}),
        ("identify", {"userId": f"{tag}-gone", "traits": {"email": f"gone@{tag}.test"}}),
    ]:
        assert door.post(route, payload).status_code == 200
    guest_erase(
        guest=Identity.objects.get(workspace=workspace, value=f"{tag}-gone").guest,
        erased_by="privacy",
    )
    segment = SegmentFactory(
        workspace=workspace,
        slug=f"{tag}-pro",
        name=f"{tag} pro",
        rule={"trait": {"key": "plan", "op": "eq", "value": "pro"}},
    )
    segment_recompute(segment)
    experience = ExperienceFactory(
        workspace=workspace,
        friendly_id=f"{tag}_popup",
        name=f"{tag} popup",
        status=Experience.Status.LIVE,
    )
    experience.target_segments.add(segment)
    VariantFactory(experience=experience, name=f"{tag} A", is_control=True)
    VariantFactory(experience=experience, name=f"{tag} B")
    with capture(execute=True):
        decision = client.post(
            "/v2/callFlows",
            {
                "clientKey": workspace.client_key,
                "channel": "WEB",
                "pointOfSale": f"{tag}/shop",
                "friendlyId": f"{tag}_popup",
                "email": f"{tag}@{tag}.test",
            },
            content_type="application/json",
        )
    assert decision.status_code == 200, decision.content
    guest = Identity.objects.get(workspace=workspace, value=f"{tag}-user").guest
    return Tenant(
        tag=tag,
        workspace=workspace,
        source=source,
        door=door,
        guest=guest,
        event=Event.objects.filter(workspace=workspace, type="track").first(),
        segment=segment,
        experience=experience,
    )


@pytest.fixture
def world(client, django_capture_on_commit_callbacks):
    return {tag: tenant_build(client, django_capture_on_commit_callbacks, tag) for tag in (A, B)}


# --- The read API -----------------------------------------------------------------------------


def api_endpoints() -> set[tuple[str, str]]:
    """(url name, HTTP method) of every endpoint the API router serves."""
    found = set()
    for pattern in api_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        actions = getattr(pattern.callback, "actions", None)
        if actions is None:
            assert pattern.name == "api-root", f"{pattern.name} is not a viewset route"
            continue
        # DRF adds "head" (answered as "get") to the mapping once a route has been called.
        found.update((pattern.name, method) for method in actions if method != "head")
    return found


def segment_body(tenant: Tenant, slug: str) -> dict:
    return {
        "slug": slug,
        "name": slug,
        "workspace": tenant.workspace.portal_id,
        "rule": {"trait": {"key": "plan", "op": "eq", "value": "pro"}},
    }


def experience_body(tenant: Tenant, friendly_id: str) -> dict:
    return {
        "friendlyId": friendly_id,
        "name": friendly_id,
        "workspace": tenant.workspace.portal_id,
        "targetSegments": [tenant.segment.slug],
        "variants": [{"name": "control", "isControl": True}, {"name": "new"}],
    }


# For each endpoint: the request that reads or writes tenant ``t``'s object, and whether it is a
# list (everyone gets 200, filtered) or an object (other users get 404).
API_CASES = {
    ("event-list", "get"): ("list", lambda t: ("get", "/api/events/", None)),
    ("event-detail", "get"): ("object", lambda t: ("get", f"/api/events/{t.event.pk}/", None)),
    ("guest-list", "get"): ("list", lambda t: ("get", "/api/guests/", None)),
    ("guest-detail", "get"): ("object", lambda t: ("get", f"/api/guests/{t.guest.ref}/", None)),
    ("guest-detail", "delete"): (
        "erase",
        lambda t: ("delete", f"/api/guests/{t.guest.ref}/", None),
    ),
    ("guest-events", "get"): (
        "object",
        lambda t: ("get", f"/api/guests/{t.guest.ref}/events/", None),
    ),
    ("segment-list", "get"): ("list", lambda t: ("get", "/api/segments/", None)),
    ("segment-list", "post"): (
        "create",
        lambda t: ("post", "/api/segments/", segment_body(t, f"{t.tag}-new")),
    ),
    ("segment-detail", "get"): (
        "object",
        lambda t: ("get", f"/api/segments/{t.segment.slug}/", None),
    ),
    ("segment-detail", "put"): (
        "not_allowed",
        lambda t: ("put", f"/api/segments/{t.segment.slug}/", segment_body(t, t.segment.slug)),
    ),
    ("segment-detail", "patch"): (
        "object",
        lambda t: ("patch", f"/api/segments/{t.segment.slug}/", {"description": "changed"}),
    ),
    ("segment-members", "get"): (
        "object",
        lambda t: ("get", f"/api/segments/{t.segment.slug}/members/", None),
    ),
    ("segment-export-csv", "get"): (
        "object",
        lambda t: ("get", f"/api/segments/{t.segment.slug}/export.csv", None),
    ),
    ("segment-export-ndjson", "get"): (
        "object",
        lambda t: ("get", f"/api/segments/{t.segment.slug}/export.ndjson", None),
    ),
    ("segment-recompute", "post"): (
        "object",
        lambda t: ("post", f"/api/segments/{t.segment.slug}/recompute/", None),
    ),
    ("experience-list", "get"): ("list", lambda t: ("get", "/api/experiences/", None)),
    ("experience-detail", "get"): (
        "object",
        lambda t: ("get", f"/api/experiences/{t.experience.friendly_id}/", None),
    ),
    ("experience-list", "post"): (
        "create",
        lambda t: ("post", "/api/experiences/", experience_body(t, f"{t.tag}_new")),
    ),
    ("experience-detail", "put"): (
        "not_allowed",
        lambda t: (
            "put",
            f"/api/experiences/{t.experience.friendly_id}/",
            experience_body(t, t.experience.friendly_id),
        ),
    ),
    ("experience-detail", "patch"): (
        "object",
        lambda t: (
            "patch",
            f"/api/experiences/{t.experience.friendly_id}/",
            {"name": f"{t.tag} popup changed"},
        ),
    ),
    ("experience-results", "get"): (
        "object",
        lambda t: ("get", f"/api/experiences/{t.experience.friendly_id}/results/", None),
    ),
}


def test_every_api_endpoint_is_in_the_isolation_matrix():
    endpoints = api_endpoints()
    assert len(endpoints) >= 18
    assert endpoints - API_CASES.keys() == set(), "add these endpoints to API_CASES"
    assert API_CASES.keys() - endpoints == set(), "API_CASES names endpoints that do not exist"


def token_client(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {TokenFactory(user=user).key}")
    return client


def body_text(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def test_read_api_shows_each_user_only_their_workspaces(world, django_capture_on_commit_callbacks):
    erase = Permission.objects.get(codename="delete_guest")
    users = {
        A: UserFactory(workspaces=[world[A].workspace]),
        B: UserFactory(workspaces=[world[B].workspace]),
        None: UserFactory(),
    }
    for user in users.values():
        user.user_permissions.add(erase)
    clients = {tag: token_client(user) for tag, user in users.items()}
    anonymous = token_client()
    problems = []
    checked = 0

    def call(client, method, path, data):
        with django_capture_on_commit_callbacks(execute=True):
            return getattr(client, method)(path, data, format="json")

    for (_name, method), (kind, build) in sorted(API_CASES.items()):
        # Each user reads and writes workspace A's object; the expectations are per user.
        verb, path, data = build(world[A])
        for tag, client in clients.items():
            checked += 1
            if kind == "erase" and tag == A:
                continue  # erasing A's guest as its member is the erasure tests' business
            response = call(client, verb, path, data)
            text = body_text(response)
            other = {A: B, B: A, None: None}[tag]
            label = f"{method.upper()} {path} as member of {tag or 'no workspace'}"
            if kind == "not_allowed":
                expected = {405}
            elif kind == "list":
                expected = {200}
            elif kind == "create":
                expected = {201} if tag == A else {400}
            else:
                expected = {200, 202} if tag == A else {404}
            if response.status_code not in expected:
                problems.append(f"{label}: {response.status_code}, expected {expected}")
            if tag != A and A in text:
                problems.append(f"{label}: the answer shows workspace A's data")
            if other and other in text:
                problems.append(f"{label}: the answer shows the other workspace's data")
            own_missing = tag is not None and tag not in text
            if kind == "list" and response.status_code == 200 and own_missing:
                problems.append(f"{label}: the user's own objects are missing")
        answer = getattr(anonymous, verb)(path, data, format="json")
        if answer.status_code not in (401, 403):
            problems.append(f"{method.upper()} {path} anonymously: {answer.status_code}")

    # Looking a guest up by an identifier of another workspace finds nothing.
    found = clients[B].get("/api/guests/", {"identifier": f"{A}@{A}.test"}).json()
    if found["results"]:
        problems.append("B found A's guest by its email")

    assert problems == []
    assert checked == 3 * len(API_CASES)
    # Nothing another user did changed A's objects.
    assert Guest.objects.filter(pk=world[A].guest.pk).exists()
    assert Segment.objects.get(pk=world[A].segment.pk).description == "changed"
    assert Experience.objects.get(pk=world[A].experience.pk).name == f"{A} popup changed"
    assert not Experience.objects.filter(
        workspace=world[A].workspace, friendly_id__startswith=B
    ).exists()
    assert not Segment.objects.filter(workspace=world[A].workspace, slug__startswith=B).exists()
    assert Segment.objects.filter(workspace=world[A].workspace, slug=f"{A}-new").exists()


# --- The admin --------------------------------------------------------------------------------


def owned_admins() -> list[tuple[type, admin.ModelAdmin]]:
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in OWNED_APPS
    ]


def owned_by(model, model_admin, workspace: Workspace) -> set[int]:
    if model is Workspace:
        return {workspace.pk}
    assert isinstance(model_admin, WorkspaceScopedAdmin), (
        f"{model.__name__}'s admin does not scope by workspace"
    )
    lookup = f"{model_admin.workspace_field}__in"
    return set(model.objects.filter(**{lookup: [workspace]}).values_list("pk", flat=True))


def listed(client, model) -> set[int]:
    opts = model._meta
    page = client.get(f"/admin/{opts.app_label}/{opts.model_name}/")
    assert page.status_code == 200, f"{opts.label} changelist: {page.status_code}"
    link = re.compile(rf"/admin/{opts.app_label}/{opts.model_name}/(\d+)/change/")
    return {int(pk) for pk in link.findall(page.content.decode())}


def test_admin_shows_each_staff_user_only_their_workspaces(world):
    # Staff who may view, add and change everything in the apps, but are not superusers.
    perms = Permission.objects.filter(
        content_type__app_label__in=OWNED_APPS, codename__regex=r"^(view|add|change)_"
    )
    staff = {}
    for tag in (A, B, None):
        user = UserFactory(is_staff=True, workspaces=[world[tag].workspace] if tag else [])
        user.user_permissions.add(*perms)
        staff[tag] = user

    from django.test import Client

    clients = {}
    for tag, user in staff.items():
        clients[tag] = Client()
        clients[tag].force_login(user)

    problems = []
    models_checked = 0
    for model, model_admin in owned_admins():
        opts = model._meta
        mine = owned_by(model, model_admin, world[A].workspace)
        theirs = owned_by(model, model_admin, world[B].workspace)
        if not mine or not theirs:
            problems.append(f"{opts.label}: the test world has no objects of this model")
            continue
        models_checked += 1
        seen = {tag: listed(client, model) for tag, client in clients.items()}
        if not seen[A] or not seen[A] <= mine:
            problems.append(f"{opts.label}: A's member sees {seen[A]}, A owns {mine}")
        if not seen[B] or seen[B] & mine:
            problems.append(f"{opts.label}: B's member sees {seen[B] & mine} of A's objects")
        if seen[None]:
            problems.append(f"{opts.label}: a user with no workspace sees {seen[None]}")

        one_of_mine = min(seen[A] or mine)
        change = f"/admin/{opts.app_label}/{opts.model_name}/{one_of_mine}/change/"
        if clients[A].get(change).status_code != 200:
            problems.append(f"{change}: A's member cannot open it")
        for tag in (B, None):
            page = clients[tag].get(change)
            if page.status_code == 200 or A in page.content.decode():
                problems.append(f"{change}: opened by member of {tag or 'no workspace'}")

        # B's own pages (and add form) must not offer A's objects in any select.
        own = f"/admin/{opts.app_label}/{opts.model_name}/{min(seen[B] or theirs)}/change/"
        for path in (own, f"/admin/{opts.app_label}/{opts.model_name}/add/"):
            page = clients[B].get(path)
            if page.status_code == 200 and A in page.content.decode():
                problems.append(f"{path}: B's member is shown workspace A's data")

    assert problems == []
    assert models_checked == len(owned_admins()) >= 15


def test_a_foreign_workspace_cannot_be_chosen_in_an_admin_form(world, client):
    user = UserFactory(is_staff=True, workspaces=[world[B].workspace])
    user.user_permissions.add(*Permission.objects.filter(codename="add_source"))
    client.force_login(user)

    response = client.post(
        "/admin/tracking/source/add/",
        {
            "workspace": world[A].workspace.pk,
            "name": "sneaky",
            "kind": "web",
            "dedup_window": "12:00:00",
            "allowed_origins": "[]",
            "allowed_redirect_hosts": "[]",
        },
    )

    assert response.status_code == 200  # the form comes back with an error
    assert not Source.objects.filter(name="sneaky").exists()


# --- Write keys -------------------------------------------------------------------------------


def test_a_write_key_writes_only_to_its_own_source(world):
    a, b = world[A], world[B]
    before = Event.objects.filter(workspace=b.workspace).count()
    response = a.door.post(
        "track",
        # Whatever the body claims, the key in the header decides where the event goes.
        {
            "userId": "claims-b",
            "event": "Sneak",
            "writeKey": b.source.write_key,
            "projectId": b.source.prop_id,
            "context": {"workspace": b.workspace.portal_id},
        },
    )

    assert response.status_code == 200
    event = Event.objects.get(name="Sneak")
    assert (event.workspace, event.source) == (a.workspace, a.source)
    assert Event.objects.filter(workspace=b.workspace).count() == before
    assert not Identity.objects.filter(workspace=b.workspace, value="claims-b").exists()


def test_rotating_a_key_invalidates_the_old_one(world, client):
    door = world[A].door
    old = door.source.write_key
    services.source_rotate_write_key(source=door.source)
    message = {"userId": "u", "event": "After rotation"}

    refused = door.post("track", message, key=old)
    in_body = door.post("track", {**message, "writeKey": old}, HTTP_AUTHORIZATION="")
    settings_document = client.get(f"/v1/projects/{old}/settings")
    accepted = door.post("track", message)

    assert refused.status_code == in_body.status_code == settings_document.status_code == 401
    assert refused.json()["code"] == "invalid_write_key"
    assert accepted.status_code == 200
    assert Event.objects.filter(name="After rotation").count() == 1


def test_write_keys_are_stored_hashed_and_never_logged(world, client, caplog):
    source, door = world[A].source, world[A].door
    assert source.write_key_digest != source.write_key
    assert len(source.write_key_digest) == 64
    source.allowed_origins = ["https://shop.example"]
    source.save()
    key = source.write_key

    with caplog.at_level(logging.DEBUG):
        door.post("track", {"userId": "u", "event": "E"})
        # analytics.js: the key in the body, a message that fails in the worker.
        door.post("t", {"writeKey": key, "userId": "u", "event": "E2"}, HTTP_AUTHORIZATION="")
        door.post(
            "batch",
            {"writeKey": key, "batch": [{"type": "track", "userId": "u"}]},
            HTTP_AUTHORIZATION="",
        )
        # 4xx answers are logged with their path, and this path holds the key.
        forbidden = client.get(f"/v1/projects/{key}/settings", HTTP_ORIGIN="https://evil.example")
        client.get(f"/v1/projects/{key}x/settings")
        door.post("track", b"{not json")

    assert forbidden.status_code == 403
    assert any("/v1/projects/[redacted]/settings" in r.getMessage() for r in caplog.records)
    assert key not in caplog.text
    assert all(key not in record.getMessage() for record in caplog.records)
    assert not FailedEvent.objects.filter(payload__writeKey=key).exists()
    assert not InboxRequest.objects.filter(meta__icontains=key).exists()


# --- Marketers --------------------------------------------------------------------------------


def test_marketers_cannot_change_sources_or_users(world, client):
    marketer = UserFactory(is_staff=True, workspaces=[world[A].workspace])
    marketer.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(marketer)
    source = world[A].source
    key = source.write_key

    assert client.get("/admin/profiles/guest/").status_code == 200  # they do have the admin
    # They read their sources (install snippets, the live debugger), read-only.
    assert client.get("/admin/tracking/source/").status_code == 200
    page = client.get(f"/admin/tracking/source/{source.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    other = world[B].source
    assert other.name not in client.get("/admin/tracking/source/").content.decode()
    assert client.get(f"/admin/tracking/source/{other.pk}/change/").status_code == 302
    assert client.get(f"/admin/tracking/source/{other.pk}/debugger/").status_code == 404
    for path in [
        "/admin/tracking/source/add/",
        "/admin/auth/user/",
        f"/admin/auth/user/{marketer.pk}/change/",
        "/admin/auth/user/add/",
        "/admin/auth/group/",
        "/admin/tracking/workspace/",
    ]:
        assert client.get(path).status_code == 403, path
    posts = [
        (f"/admin/tracking/source/{source.pk}/change/", {"name": "renamed", "kind": "web"}),
        (
            "/admin/auth/user/add/",
            {"username": "x", "password1": "pw-1234567!", "password2": "pw-1234567!"},
        ),
        (
            f"/admin/auth/user/{marketer.pk}/change/",
            {"username": marketer.username, "is_superuser": "on"},
        ),
    ]
    for path, data in posts:
        assert client.post(path, data).status_code == 403, path
    # The source list is theirs to read, but it offers them no action: the key stays (below).
    rotate = {"action": "rotate_write_key", "_selected_action": [source.pk]}
    assert "rotate_write_key" not in client.get("/admin/tracking/source/").content.decode()
    client.post("/admin/tracking/source/", rotate)

    source.refresh_from_db()
    marketer.refresh_from_db()
    assert (source.name, source.write_key) == (f"{A} web", key)
    assert not marketer.is_superuser
    assert not type(marketer).objects.filter(username="x").exists()


def test_a_marketer_sees_only_their_workspaces_on_the_dashboard_and_catalogue(world, client):
    from tracking.selectors import catalogue_event_names, catalogue_keys

    marketer = UserFactory(is_staff=True, workspaces=[world[A].workspace])
    marketer.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(marketer)

    home = client.get("/admin/")
    assert [w.name for w in home.context["workspaces"]] == [world[A].workspace.name]
    assert home.context["workspace"] == world[A].workspace
    # Asked for B's dashboard by id: A's is shown, with a sentence.
    asked = client.get(f"/admin/?workspace={world[B].workspace.pk}")
    assert asked.context["workspace"] == world[A].workspace
    assert f"{B} workspace" not in asked.content.decode()
    # The events list offers A's event names only, and ignores B's asked for by hand.
    events = client.get("/admin/tracking/event/")
    offered = {
        choice["display"]
        for spec in events.context["cl"].filter_specs
        if spec.parameter_name == "name"
        for choice in spec.choices(events.context["cl"])
    }
    assert f"{A} order" in offered and f"{B} order" not in offered
    theirs = client.get("/admin/tracking/event/", {"name": f"{B} order"}).context["cl"]
    assert all(event.workspace_id == world[A].workspace.pk for event in theirs.result_list)
    # And the catalogue itself answers per workspace.
    ids = [world[A].workspace.pk]
    assert f"{B} order" not in catalogue_event_names(workspace_ids=ids)
    assert all(k.workspace_id == ids[0] for k in catalogue_keys(workspace_ids=ids, kind="trait"))


def owned_by_a_workspace(model) -> bool:
    """A model with a workspace, or one step below a model that has one."""
    fields = model._meta.concrete_fields
    if any(field.name == "workspace" for field in fields):
        return True
    return any(
        field.many_to_one
        and any(f.name == "workspace" for f in field.related_model._meta.concrete_fields)
        for field in fields
    )


def test_every_api_viewset_is_scoped_by_the_one_base():
    from config.api_urls import router
    from tracking.api_common import WorkspaceScopedViewSetMixin

    viewsets = [viewset for _prefix, viewset, _basename in router.registry]
    assert len(viewsets) >= 4
    assert [v.__name__ for v in viewsets if not issubclass(v, WorkspaceScopedViewSetMixin)] == []


def test_a_viewset_cannot_write_its_own_unscoped_queryset():
    from django.core.exceptions import ImproperlyConfigured
    from rest_framework import viewsets

    from tracking.api_common import WorkspaceScopedViewSetMixin

    with pytest.raises(ImproperlyConfigured, match="base_queryset"):

        class Leaky(WorkspaceScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
            def get_queryset(self):
                return Event.objects.all()


def test_every_admin_of_workspace_data_is_scoped_by_the_one_base():
    from django.contrib import admin

    from tracking.admin_base import WorkspaceScopedAdmin
    from tracking.models import Workspace

    unscoped = [
        type(model_admin).__name__
        for model, model_admin in admin.site._registry.items()
        if owned_by_a_workspace(model) and not isinstance(model_admin, WorkspaceScopedAdmin)
    ]
    assert unscoped == []
    # The workspace list itself is the user's workspaces.
    from tracking.admin import WorkspaceAdmin

    assert isinstance(admin.site._registry[Workspace], WorkspaceAdmin)
    assert "get_queryset" in WorkspaceAdmin.__dict__
