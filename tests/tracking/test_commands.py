"""The operators' commands: create_source, process_inbox and setup_local."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tracking.models import Event, InboxRequest, Source, Workspace

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


class TestCreateSource:
    def test_prints_keys_that_work(self, client):
        out, _ = run("create_source", "Web shop", "--workspace", "Acme")

        created = json.loads(out)
        assert created["workspace"] == "Acme"
        assert created["source"] == "Web shop"
        source = Source.objects.get(prop_id=created["prop_id"])
        assert source.workspace.client_key == created["client_key"]
        response = client.post(
            "/v1/track",
            {"userId": "u", "event": "E"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {created['write_key']}",
        )
        assert response.status_code == 200

    def test_reuses_the_workspace(self):
        run("create_source", "One", "--workspace", "Acme")
        run("create_source", "Two", "--workspace", "Acme", "--kind", Source.Kind.SERVER)

        assert Workspace.objects.filter(name="Acme").count() == 1
        assert Source.objects.filter(workspace__name="Acme").count() == 2

    def test_duplicate_name_is_refused(self):
        run("create_source", "Web shop", "--workspace", "Acme")
        with pytest.raises(CommandError, match="already has a source named 'Web shop'"):
            run("create_source", "Web shop", "--workspace", "Acme")

    def test_blank_name_is_refused(self):
        with pytest.raises(CommandError, match="must not be blank"):
            run("create_source", "  ")


class TestProcessInbox:
    def test_drains_what_the_door_left(self, client, source):
        # Inside the test's transaction nothing commits, so the queued drain never runs.
        batch = {"batch": [{"userId": "u", "type": "track", "event": f"E{i}"} for i in range(3)]}
        response = client.post(
            "/v1/batch",
            batch,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {source.write_key}",
        )
        assert response.status_code == 200
        assert InboxRequest.objects.get().status == InboxRequest.Status.PENDING

        out, err = run("process_inbox")

        assert out.strip() == (
            "processed 1 request(s): stored 3 event(s), dropped 0 duplicate(s) and 0 of erased "
            "guests, rejected 0 message(s), 0 request(s) failed"
        )
        assert err == ""
        assert Event.objects.count() == 3

    def test_nothing_to_do(self):
        out, _ = run("process_inbox")
        assert out.startswith("processed 0 request(s)")

    def test_bad_claim_size(self):
        with pytest.raises(CommandError, match="--claim-size"):
            run("process_inbox", "--claim-size", "0")


class TestSetupLocal:
    def test_is_idempotent_and_prints_a_working_curl(self, settings, tmp_path):
        settings.BASE_DIR = tmp_path
        first, _ = run("setup_local", "--port", "8123")
        second, _ = run("setup_local", "--port", "8123")

        assert first == second
        assert Workspace.objects.filter(name="Demo").count() == 1
        source = Source.objects.get(workspace__name="Demo")
        assert f"curl -u '{source.write_key}:' http://127.0.0.1:8123/v1/track" in first
        password = (tmp_path / ".local" / "admin-password").read_text()
        assert f"password: {password}" in first
