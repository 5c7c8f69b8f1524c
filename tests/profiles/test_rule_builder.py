"""What the segment rule builder reads: the names a rule can use (from the catalogue), the
preview's count and sample, and the member count's link, each for the user's workspaces only."""

import re

import pytest
from django.contrib.auth.models import Group

from profiles.models import Segment
from tests.factories import GuestFactory, SegmentFactory, SourceFactory, UserFactory

pytestmark = pytest.mark.django_db

GUEST_ROW = re.compile(r'<th class="field-[a-z_]+"><a href="/admin/profiles/guest/\d+/change/')


def marketer_of(*workspaces):
    user = UserFactory(is_staff=True, workspaces=list(workspaces))
    user.groups.add(Group.objects.get(name="Marketers"))
    return user


@pytest.fixture
def sent(door):
    door.post("identify", {"userId": "ada", "traits": {"plan": "pro", "email": "ada@ex.io"}})
    door.post("track", {"userId": "ada", "event": "Order Completed", "properties": {"sku": "s1"}})
    door.post("identify", {"userId": "bob", "traits": {"plan": "free"}})


def test_names_come_from_what_the_workspace_sent(client, source, sent):
    SegmentFactory(workspace=source.workspace, slug="vip")
    client.force_login(marketer_of(source.workspace))
    names = client.get("/admin/profiles/segment/names/", {"workspace": source.workspace.pk}).json()
    assert "Order Completed" in names["events"]
    assert "plan" in names["traits"]
    assert "sku" in names["properties"]["Order Completed"]
    assert names["segments"] == ["vip"]


def test_names_of_another_workspace_are_refused(client, source, sent):
    client.force_login(marketer_of(SourceFactory().workspace))
    names = client.get("/admin/profiles/segment/names/", {"workspace": source.workspace.pk}).json()
    assert names == {"error": {"path": "workspace", "message": "choose a workspace"}}
    for bad in ["abc", "99999999999999999999999", ""]:
        answer = client.get("/admin/profiles/segment/names/", {"workspace": bad})
        assert answer.status_code == 200 and "error" in answer.json()


def test_preview_counts_and_samples_matching_guests(client, source, sent):
    client.force_login(marketer_of(source.workspace))
    rule = {"trait": {"key": "plan", "op": "eq", "value": "pro"}}
    answer = client.post(
        "/admin/profiles/segment/preview/",
        {"workspace": source.workspace.pk, "slug": "x", "rule": rule},
        content_type="application/json",
    ).json()
    assert answer["count"] == 1
    (guest,) = answer["sample"]
    assert guest["label"] == "ada@ex.io"
    assert client.get(guest["url"]).status_code == 200


def test_preview_counts_every_member_beyond_the_sample(client, source):
    from profiles.admin import PREVIEW_SAMPLE

    GuestFactory.create_batch(PREVIEW_SAMPLE + 3, workspace=source.workspace, traits={"n": 1})
    GuestFactory(workspace=source.workspace, traits={"n": 2})
    GuestFactory(traits={"n": 1})  # another workspace's
    client.force_login(marketer_of(source.workspace))

    def preview(value):
        rule = {"trait": {"key": "n", "op": "eq", "value": value}}
        return client.post(
            "/admin/profiles/segment/preview/",
            {"workspace": source.workspace.pk, "slug": "x", "rule": rule},
            content_type="application/json",
        ).json()

    many = preview(1)
    assert many["count"] == PREVIEW_SAMPLE + 3
    assert len(many["sample"]) == PREVIEW_SAMPLE
    assert preview(3) == {"count": 0, "sample": []}


def test_marketers_build_segments_of_their_workspaces(client, source, sent):
    client.force_login(marketer_of(source.workspace))
    page = client.get("/admin/profiles/segment/add/").content.decode()
    assert 'id="fp-rule-builder"' in page
    saved = client.post(
        "/admin/profiles/segment/add/",
        {
            "workspace": source.workspace.pk,
            "name": "Pro",
            "slug": "pro",
            "description": "",
            "rule": '{"trait": {"key": "plan", "op": "eq", "value": "pro"}}',
            "is_active": "on",
            "recompute_every": "01:00:00",
        },
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    segment = Segment.objects.get(slug="pro")
    assert segment.workspace == source.workspace
    assert client.get(f"/admin/profiles/segment/{segment.pk}/delete/").status_code == 403


def test_member_count_links_to_the_members(
    client, source, sent, django_capture_on_commit_callbacks
):
    client.force_login(marketer_of(source.workspace))
    with django_capture_on_commit_callbacks(execute=True):  # saving recomputes the members
        client.post(
            "/admin/profiles/segment/add/",
            {
                "workspace": source.workspace.pk,
                "name": "Pro",
                "slug": "pro",
                "description": "",
                "rule": '{"trait": {"key": "plan", "op": "eq", "value": "pro"}}',
                "is_active": "on",
                "recompute_every": "01:00:00",
            },
        )
    segment = Segment.objects.get(slug="pro")
    listing = client.get("/admin/profiles/segment/").content.decode()
    link = f'<a href="/admin/profiles/guest/?segment={segment.pk}">1</a>'
    assert link in listing
    members = client.get(f"/admin/profiles/guest/?segment={segment.pk}").content.decode()
    assert "ada@ex.io" in members and len(GUEST_ROW.findall(members)) == 1
    # Another workspace's segment is not a filter of this list: the list is unfiltered.
    other = SegmentFactory(workspace=SourceFactory().workspace)
    unfiltered = client.get(f"/admin/profiles/guest/?segment={other.pk}")
    assert unfiltered.status_code == 200
    assert len(GUEST_ROW.findall(unfiltered.content.decode())) == 2
