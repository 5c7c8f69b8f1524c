"""Every admin list and add page renders for an admin (a smoke test over all registrations)."""

import pytest
from django.contrib import admin

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "model", [m for m in admin.site._registry], ids=lambda m: m._meta.label_lower
)
def test_changelist_and_add_render(admin_client, door, model):
    door.post("track", {"userId": "u", "event": "E"})
    opts = model._meta
    base = f"/admin/{opts.app_label}/{opts.model_name}/"
    assert admin_client.get(base).status_code == 200
    add = admin_client.get(base + "add/")
    assert add.status_code in (200, 403)
