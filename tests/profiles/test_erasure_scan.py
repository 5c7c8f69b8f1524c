"""Erasure leaves nothing behind: every text, JSON and binary column of every table in the
database is searched for the erased guest's values afterwards."""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from experiences.models import Experience
from profiles.models import Guest, Identity
from profiles.segments import segment_recompute
from profiles.services import guest_erase
from tests.factories import ExperienceFactory, SegmentFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

# Everything the guest ever sent that identifies them; each value is unique to this test.
SECRETS = {
    "email": "zelda.quux@example.org",
    "user id": "zq-user-9931",
    "anonymous id": "zq-anon-5521",
    "merged anonymous id": "zq-anon-older-77",
    "first name": "Zeldaquux",
    "trait": "zq-plan-platinum",
    "property": "zq-sku-48151623",
    "device": "zq-device-aa11",
    "session id": "zq-session-3141",
}


def database_text() -> str:
    """Every row of every table (Django's, DRF's, Footprint's), as text."""
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                rows.append(
                    repr(
                        [
                            bytes(value).decode("utf-8", "replace")
                            if isinstance(value, bytes | memoryview)
                            else value
                            for value in row
                        ]
                    )
                )
    assert len(rows) > 50, "the scan should see the whole database"
    return "\n".join(rows)


@pytest.fixture
def zelda(door, client, django_capture_on_commit_callbacks):
    s = SECRETS
    context = {"device": {"id": s["device"]}, "sessionId": s["session id"]}
    door.post("page", {"anonymousId": s["merged anonymous id"], "name": "Home"})
    door.post("page", {"anonymousId": s["anonymous id"], "name": "Home", "context": context})
    door.post(
        "identify",
        {
            "userId": s["user id"],
            "anonymousId": s["anonymous id"],
            "traits": {"email": s["email"], "firstName": s["first name"], "plan": s["trait"]},
            "context": context,
        },
    )
    door.post("alias", {"userId": s["user id"], "previousId": s["merged anonymous id"]})
    door.post(
        "track",
        {"userId": s["user id"], "event": "Bought", "properties": {"sku": s["property"]}},
    )
    door.post("batch", {"batch": [{"type": "track", "userId": s["user id"]}]})  # fails
    workspace = door.source.workspace
    segment = SegmentFactory(
        workspace=workspace,
        slug="platinum",
        name="Platinum",
        rule={"trait": {"key": "plan", "op": "neq", "value": "free"}},
    )
    segment_recompute(segment)
    experience = ExperienceFactory(
        workspace=workspace, friendly_id="banner", name="Banner", status=Experience.Status.LIVE
    )
    VariantFactory(experience=experience, name="A", is_control=True)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/v2/callFlows",
            {
                "clientKey": workspace.client_key,
                "channel": "WEB",
                "pointOfSale": "shop",
                "friendlyId": "banner",
                "email": s["email"],
            },
            content_type="application/json",
        )
    assert answer.status_code == 200, answer.content
    guest = Identity.objects.get(value=s["user id"]).guest
    # A marketer corrected the guest's name in the admin: the history names the guest.
    LogEntry.objects.log_actions(
        user_id=UserFactory().pk,
        queryset=[guest],
        action_flag=CHANGE,
        change_message=[{"changed": {"fields": ["First name"]}}],
    )
    assert ContentType.objects.get_for_model(Guest)
    return guest


def test_no_value_of_an_erased_guest_is_left_anywhere(zelda, door):
    text = database_text()
    for label, value in SECRETS.items():
        assert value in text, f"the test should have stored the {label}"
    door.post("track", {"userId": "someone-else", "event": "Stays"})

    guest_erase(guest=zelda, erased_by="privacy")

    text = database_text()
    left = [label for label, value in SECRETS.items() if value in text]
    assert left == [], f"still in the database after erasure: {left}"
    assert "someone-else" in text
