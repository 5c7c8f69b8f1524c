from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from profiles.models import Guest, GuestMerge, Session
from tracking.channels import CHANNELS
from tracking.models import Event, FailedEvent, InboxRequest

pytestmark = pytest.mark.django_db


def test_seed_demo_fills_a_workspace_through_the_pipeline():
    out = StringIO()
    call_command("seed_demo", "--guests", "120", "--quiet", stdout=out)

    assert out.getvalue().startswith("workspace Demo: sent ")
    assert not InboxRequest.objects.exclude(status="done").exists()
    assert not FailedEvent.objects.exists()
    assert Event.objects.filter(name="Order Completed", revenue__gt=0).exists()
    assert Guest.objects.filter(guest_type="customer", email__contains="@").exists()
    assert GuestMerge.objects.exists()
    assert Session.objects.count() >= Guest.objects.filter(merged_into=None).count()
    assert {"WEB"} <= set(Event.objects.values_list("channel", flat=True)) <= set(CHANNELS)
    assert not Event.objects.filter(session__isnull=True).exists()


def test_seed_demo_refuses_bad_numbers():
    with pytest.raises(CommandError, match="--guests must be at least 1"):
        call_command("seed_demo", "--guests", "0")
