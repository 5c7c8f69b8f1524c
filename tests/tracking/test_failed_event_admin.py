"""Failed events in the admin: a read-only record, fixed by editing a copy and replaying it;
and no record the system writes can be added or edited by hand."""

import json

import pytest
from django.contrib.auth.models import Permission

from experiences.models import Assignment, FlowExecution
from profiles.models import GuestMerge, Identity, Segment, SegmentRun, Session
from tests.factories import UserFactory
from tracking.models import Event, FailedEvent, InboxRequest

pytestmark = pytest.mark.django_db

BAD_REVENUE = {"type": "track", "userId": "u", "event": "Order Completed"}


@pytest.fixture
def failed(door):
    door.post("batch", {"batch": [{**BAD_REVENUE, "properties": {"revenue": "lots"}}]})
    return FailedEvent.objects.get()


def page(client, failed, suffix="change/"):
    return client.get(f"/admin/tracking/failedevent/{failed.pk}/{suffix}")


def test_the_failed_event_page_is_read_only_with_a_replay_button(admin_client, failed):
    response = page(admin_client, failed)
    html = response.content.decode()

    assert response.status_code == 200
    for name in ("code", "reason", "workspace", "received_at", "payload"):
        assert f'name="{name}"' not in html
    assert 'name="_save"' not in html
    assert "invalid_revenue" in html and "lots" in html
    assert f"/admin/tracking/failedevent/{failed.pk}/replay/" in html
    assert "Edit payload and replay" in html

    admin_client.post(f"/admin/tracking/failedevent/{failed.pk}/change/", {"code": "ok"})
    failed.refresh_from_db()
    assert failed.code == "invalid_revenue"


# Transactional, as the admin runs: the drain runs when the replay commits, so the page can
# say what became of the edited message.
@pytest.mark.django_db(transaction=True)
def test_an_edited_payload_goes_through_the_door_and_the_original_is_kept(
    admin_client, door, failed
):
    form = page(admin_client, failed, "replay/")
    assert form.status_code == 200
    assert "&quot;lots&quot;" in form.content.decode()

    fixed = {**failed.payload, "properties": {"revenue": "12.50"}}
    response = admin_client.post(
        f"/admin/tracking/failedevent/{failed.pk}/replay/",
        {"payload": json.dumps(fixed)},
        follow=True,
    )

    assert "The edited message was stored." in response.content.decode()
    assert Event.objects.get().revenue == 12.5
    failed.refresh_from_db()
    assert failed.payload["properties"]["revenue"] == "lots"  # the original, as it arrived
    assert failed.replayed_at is not None
    assert FailedEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_edit_that_still_fails_is_a_new_failed_event(admin_client, door, failed):
    still_bad = {**failed.payload, "properties": {"revenue": "still lots"}}
    response = admin_client.post(
        f"/admin/tracking/failedevent/{failed.pk}/replay/",
        {"payload": json.dumps(still_bad)},
        follow=True,
    )

    assert "The edited message failed again" in response.content.decode()
    assert Event.objects.count() == 0
    again = FailedEvent.objects.exclude(pk=failed.pk).get()
    assert again.code == "invalid_revenue"
    assert again.payload["properties"]["revenue"] == "still lots"


@pytest.mark.parametrize(
    ("payload", "error"),
    [("{not json", "Enter a valid JSON."), ("[1, 2]", "the message must be a JSON object")],
)
def test_a_payload_that_is_not_a_message_is_refused_on_the_form(
    admin_client, failed, payload, error
):
    response = admin_client.post(
        f"/admin/tracking/failedevent/{failed.pk}/replay/", {"payload": payload}
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    failed.refresh_from_db()
    assert failed.replayed_at is None
    assert InboxRequest.objects.count() == 1  # only the original request


def test_who_may_only_view_sees_a_failed_event_but_cannot_replay_it(client, source, failed):
    user = UserFactory(is_staff=True, workspaces=[source.workspace])
    user.user_permissions.add(Permission.objects.get(codename="view_failedevent"))
    client.force_login(user)

    assert page(client, failed).status_code == 200
    assert "Edit payload and replay" not in page(client, failed).content.decode()
    assert page(client, failed, "replay/").status_code == 403


SYSTEM_RECORDS = [
    Session,
    Identity,
    GuestMerge,
    FailedEvent,
    InboxRequest,
    FlowExecution,
    Assignment,
    SegmentRun,
    Event,
]


@pytest.mark.parametrize("model", SYSTEM_RECORDS, ids=lambda m: m._meta.label_lower)
def test_records_the_system_writes_cannot_be_added_or_edited(admin_client, model):
    opts = model._meta
    base = f"/admin/{opts.app_label}/{opts.model_name}/"

    assert admin_client.get(base + "add/").status_code == 403
    assert f'href="{base}add/"' not in admin_client.get(base).content.decode()


def test_what_people_make_can_still_be_added(admin_client):
    assert admin_client.get("/admin/profiles/segment/add/").status_code == 200
    assert Segment.objects.count() == 0
