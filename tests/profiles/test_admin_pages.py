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


def test_root_leads_to_the_admin_which_links_to_the_api_docs(client, admin_client):
    root = client.get("/")
    assert root.status_code == 302
    assert root["Location"] == "/admin/"
    index = admin_client.get(root["Location"])
    page = index.content.decode()
    assert index.status_code == 200
    assert '<a href="/api/docs/">API docs</a>' in page
    assert "View site" not in page
    assert "<title>Home | Footprint</title>" in page
    assert admin_client.get("/api/docs/").status_code == 200
