"""Segments end to end: the API, membership history, versions, incremental runs, exports."""

import csv
import io
import json
import tracemalloc
import uuid

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from profiles import segments as segment_services
from profiles.models import Guest, Identity, Segment, SegmentMembership, SegmentRun
from profiles.segments import segment_recompute
from tests.factories import GuestFactory, SegmentFactory, SourceFactory, TokenFactory, UserFactory

pytestmark = pytest.mark.django_db

BUYERS = {"event": {"name": "Order Completed", "count": {"op": "gte", "value": 2}}}
PRO = {"trait": {"key": "plan", "op": "eq", "value": "pro"}}


def identify(door, user_id, **traits):
    door.post("identify", {"userId": user_id, "traits": traits})


def buy(door, user_id, times=1):
    for _ in range(times):
        door.post("track", {"userId": user_id, "event": "Order Completed"})


def guest(user_id) -> Guest:
    return Identity.objects.get(kind="user_id", value=user_id).guest


def current(segment) -> set[str]:
    return set(
        SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).values_list(
            "guest__identities__value", flat=True
        )
    )


@pytest.fixture
def segment(source):
    return SegmentFactory(workspace=source.workspace, slug="buyers", name="Buyers", rule=BUYERS)


class TestApi:
    def test_create_validates_and_computes(self, api, door, django_capture_on_commit_callbacks):
        buy(door, "ada", 2)
        buy(door, "bob", 1)

        bad = api.post(
            "/api/segments/",
            {
                "slug": "x",
                "name": "X",
                "rule": {"all": [PRO, {"event": {"name": "E", "within_days": 0}}]},
            },
            format="json",
        )
        assert bad.status_code == 400
        assert bad.json() == {
            "rule": {
                "path": "all[1].event.within_days",
                "message": "must be a whole number of days, 1 to 3650",
            }
        }

        with django_capture_on_commit_callbacks(execute=True):
            created = api.post(
                "/api/segments/",
                {"slug": "buyers", "name": "Buyers", "rule": BUYERS},
                format="json",
            )
        assert created.status_code == 201, created.content
        detail = api.get("/api/segments/buyers/").json()
        assert detail["memberCount"] == 1 and detail["computedAt"]
        members = api.get("/api/segments/buyers/members/").json()["results"]
        assert [m["guest"]["ref"] for m in members] == [str(guest("ada").ref)]

        clash = api.post(
            "/api/segments/", {"slug": "buyers", "name": "Again", "rule": PRO}, format="json"
        )
        assert clash.status_code == 400 and "slug" in clash.json()

    def test_patch_rule_recomputes(self, api, door, segment, django_capture_on_commit_callbacks):
        identify(door, "ada", plan="pro")
        with django_capture_on_commit_callbacks(execute=True):
            response = api.patch("/api/segments/buyers/", {"rule": PRO}, format="json")
        assert response.status_code == 200
        assert current(segment) == {"ada"}

    def test_patching_the_slug_rewrites_rules_that_refer_to_it(self, api, segment):
        SegmentFactory(
            workspace=segment.workspace, slug="loyal", rule={"segment": {"slug": "buyers"}}
        )
        response = api.patch("/api/segments/buyers/", {"slug": "customers"}, format="json")
        assert response.status_code == 200, response.content
        assert api.get("/api/segments/loyal/").json()["rule"] == {"segment": {"slug": "customers"}}

    def test_cycles_are_refused(self, api, segment):
        response = api.patch(
            "/api/segments/buyers/", {"rule": {"segment": {"slug": "buyers"}}}, format="json"
        )
        assert response.json()["rule"]["path"] == "segment.slug"

    def test_other_workspace_cannot_see_it(self, segment):
        from rest_framework.test import APIClient

        outsider = UserFactory(workspaces=[SourceFactory().workspace])
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {TokenFactory(user=outsider).key}")
        assert client.get("/api/segments/").json()["results"] == []
        assert client.get("/api/segments/buyers/").status_code == 404
        assert client.get("/api/segments/buyers/export.csv").status_code == 404


class TestMembership:
    def test_history_across_enter_exit_and_reenter(self, door, source):
        pro = SegmentFactory(workspace=source.workspace, slug="pro", name="Pro", rule=PRO)
        identify(door, "ada", plan="pro")  # each identify queues an incremental run
        identify(door, "ada", plan="free")
        identify(door, "ada", plan="pro")
        run = segment_recompute(pro)  # a full run then finds nothing left to change

        stays = list(SegmentMembership.objects.filter(segment=pro).order_by("entered_at", "pk"))
        assert len(stays) == 2
        assert stays[0].exited_at is not None and stays[1].exited_at is None
        assert stays[0].exited_at <= stays[1].entered_at
        assert (run.entered, run.exited) == (0, 0)
        kinds = SegmentRun.objects.filter(segment=pro).values_list("kind", "entered", "exited")
        assert sorted(kinds) == sorted(
            [("full", 0, 0), ("incremental", 1, 0), ("incremental", 0, 1), ("incremental", 1, 0)]
        )
        pro.refresh_from_db()
        assert pro.member_count == 1

    def test_a_stale_run_cannot_overwrite_a_newer_one(self, door, segment, monkeypatch):
        buy(door, "ada", 2)
        real = segment_services.members_query
        calls = []

        def slow_then_overtaken(rule, **kwargs):
            query = real(rule, **kwargs)
            if not calls:
                calls.append("slow")
                old = set(query.values_list("pk", flat=True))  # what the slow run saw
                buy(door, "bob", 2)
                segment_recompute(segment)  # a newer run starts and applies meanwhile
                return Guest.objects.filter(pk__in=old)
            return query

        monkeypatch.setattr(segment_services, "members_query", slow_then_overtaken)
        slow = segment_recompute(segment)

        assert slow.stale is True
        assert current(segment) == {"ada", "bob"}
        newer = SegmentRun.objects.filter(kind="full", stale=False).get()
        assert newer.version > slow.version

    def test_incremental_run_changes_exactly_the_touched_guests(self, door, segment):
        buy(door, "ada", 2)
        buy(door, "bob", 1)
        buy(door, "cy", 2)
        segment_recompute(segment)
        assert current(segment) == {"ada", "cy"}
        before = dict(SegmentMembership.objects.values_list("guest_id", "entered_at"))

        buy(door, "bob", 1)  # the pipeline marks bob dirty and queues an incremental run

        assert current(segment) == {"ada", "bob", "cy"}
        run = SegmentRun.objects.filter(kind="incremental").latest("started_at")
        assert (run.guests_checked, run.entered, run.exited) == (1, 1, 0)
        after = dict(SegmentMembership.objects.values_list("guest_id", "entered_at"))
        assert {k: v for k, v in after.items() if k in before} == before

    def test_one_evaluation_takes_the_same_queries_for_5_or_60_guests(self, source, segment):
        def guests(n):
            Guest.objects.bulk_create(GuestFactory.build_batch(n, workspace=source.workspace))

        segment.rule = {
            "any": [BUYERS, {"field": {"name": "guest_type", "op": "eq", "value": "visitor"}}]
        }
        segment.save()
        guests(5)
        with CaptureQueriesContext(connection) as few:
            segment_recompute(segment)
        guests(55)
        with CaptureQueriesContext(connection) as many:
            segment_recompute(segment)
        assert Segment.objects.get(pk=segment.pk).member_count == 60
        assert len(many) == len(few)


def big_segment(source, n: int) -> Segment:
    now = timezone.now()
    guests = Guest.objects.bulk_create(
        [
            Guest(
                workspace=source.workspace,
                ref=uuid.uuid4(),
                first_seen=now,
                last_seen=now,
                email=f"g{i}@example.com",
                traits={"plan": "pro", "note": "x" * 40},
            )
            for i in range(n)
        ],
        batch_size=2000,
    )
    segment = SegmentFactory(workspace=source.workspace, slug=f"big-{n}", name="Big", rule=PRO)
    SegmentMembership.objects.bulk_create(
        [SegmentMembership(segment=segment, guest=g, entered_at=now) for g in guests],
        batch_size=2000,
    )
    return segment


class TestExport:
    def test_csv_opens_in_a_spreadsheet(self, api, door, segment):
        identify(door, "ada", email="ada@example.com", plan='pro, "gold"', city="Zürich\nOst")
        identify(door, "eve", plan='=HYPERLINK("x")')
        segment.rule = {"trait": {"key": "plan", "op": "exists", "value": True}}
        segment.save()
        segment_recompute(segment)

        response = api.get("/api/segments/buyers/export.csv?traits=plan,city")

        assert response["Content-Type"] == "text/csv; charset=utf-8"
        body = b"".join(response.streaming_content).decode("utf-8")
        assert body.startswith("\ufeff")
        rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
        assert rows[0] == [
            "guest_ref",
            "guest_type",
            "email",
            "user_id",
            "first_seen",
            "last_seen",
            "entered_at",
            "trait:plan",
            "trait:city",
        ]
        by_user = {row[3]: row for row in rows[1:]}
        assert by_user["ada"][2] == "ada@example.com"
        assert by_user["ada"][7:] == ['pro, "gold"', "Zürich\nOst"]
        assert by_user["eve"][7] == '\'=HYPERLINK("x")'

    def test_ndjson(self, api, door, segment):
        buy(door, "ada", 2)
        segment_recompute(segment)
        response = api.get("/api/segments/buyers/export.ndjson")
        lines = b"".join(response.streaming_content).splitlines()
        assert [orjson.loads(line)["user_id"] for line in lines] == ["ada"]

    def test_ndjson_pages_through_every_member_once(self, api, source, monkeypatch):
        """Members are read in keyset pages (no cursor outlives a query, as PgBouncer's
        transaction mode needs); a page boundary loses and repeats nobody."""
        from profiles import exports

        monkeypatch.setattr(exports, "CHUNK", 3)
        segment = big_segment(source, 10)
        response = api.get(f"/api/segments/{segment.slug}/export.ndjson")
        refs = [
            orjson.loads(line)["guest_ref"]
            for line in b"".join(response.streaming_content).splitlines()
        ]
        assert len(refs) == len(set(refs)) == 10

    def test_memory_does_not_grow_with_members(self, api, source):
        def peak(n):
            segment = big_segment(source, n)
            response = api.get(f"/api/segments/{segment.slug}/export.csv?traits=plan,note")
            tracemalloc.start()
            rows = sum(chunk.count(b"\n") for chunk in response.streaming_content)
            _, top = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert rows == n + 1
            return top

        small, large = peak(2_000), peak(20_000)
        assert large < small * 2, (small, large)


class TestCommands:
    def test_recompute_and_export(self, door, segment, tmp_path):
        from io import StringIO

        from django.core.management import call_command

        buy(door, "ada", 2)
        SegmentMembership.objects.all().delete()  # as if never computed
        out = StringIO()
        call_command("recompute_segments", "--segment", "buyers", "--quiet", stdout=out)
        assert out.getvalue().strip() == "buyers: 1 entered, 0 left"

        target = tmp_path / "buyers.csv"
        err = StringIO()
        call_command("export_segment", "buyers", "-o", str(target), "--traits", "plan", stderr=err)
        rows = list(csv.reader(io.StringIO(target.read_text("utf-8-sig"))))
        assert rows[0][-1] == "trait:plan" and rows[1][3] == "ada"
        assert err.getvalue().strip() == f"wrote 1 member(s) to {target}"

    def test_command_errors(self, segment):
        from django.core.management import CommandError, call_command

        with pytest.raises(CommandError, match="no segment with slug 'nope'"):
            call_command("recompute_segments", "--segment", "nope")
        with pytest.raises(CommandError, match="no segment with slug 'nope'"):
            call_command("export_segment", "nope")
        with pytest.raises(CommandError, match="cannot write"):
            call_command("export_segment", "buyers", "-o", "/nonexistent/dir/x.csv")


class TestAdmin:
    def test_editor_validates_and_previews(self, admin_client, door, segment):
        buy(door, "ada", 2)
        url = "/admin/profiles/segment/preview/"
        bad = {"rule": {"any": []}, "workspace": segment.workspace_id}
        good = {"rule": BUYERS, "workspace": segment.workspace_id}

        assert admin_client.post(url, bad, content_type="application/json").json() == {
            "error": {"path": "any", "message": "any takes a non-empty list of nodes"}
        }
        previewed = admin_client.post(url, good, content_type="application/json").json()
        assert previewed["count"] == 1
        (member,) = previewed["sample"]
        assert member["url"] == f"/admin/profiles/guest/{guest('ada').pk}/change/"

        response = admin_client.post(
            f"/admin/profiles/segment/{segment.pk}/change/",
            {
                "workspace": segment.workspace_id,
                "name": "Buyers",
                "slug": "buyers",
                "rule": '{"all": [{"event": {"name": "E", "within_days": 0}}]}',
                "is_active": "on",
                "recompute_every": "01:00:00",
            },
        )
        assert (
            "all[0].event.within_days: must be a whole number of days" in response.content.decode()
        )

    def test_renaming_a_segment_keeps_the_rules_built_on_it(self, admin_client, door, segment):
        buy(door, "ada", 2)
        segment_recompute(segment)
        loyal = SegmentFactory(
            workspace=segment.workspace,
            slug="loyal",
            rule={"all": [{"segment": {"slug": "buyers"}}, {"not": {"segment": {"slug": "x"}}}]},
        )
        SegmentFactory(workspace=segment.workspace, slug="x")
        elsewhere = SegmentFactory(slug="loyal", rule={"segment": {"slug": "buyers"}})

        response = admin_client.post(
            f"/admin/profiles/segment/{segment.pk}/change/",
            {
                "workspace": segment.workspace_id,
                "name": "Buyers",
                "slug": "customers",
                "rule": json.dumps(segment.rule),
                "is_active": "on",
                "recompute_every": "01:00:00",
            },
            follow=True,
        )
        assert response.status_code == 200
        assert "its rule now refers to “customers”" in response.content.decode()
        loyal.refresh_from_db()
        elsewhere.refresh_from_db()
        assert loyal.rule == {
            "all": [{"segment": {"slug": "customers"}}, {"not": {"segment": {"slug": "x"}}}]
        }
        assert elsewhere.rule == {"segment": {"slug": "buyers"}}
        segment_recompute(loyal)
        assert current(loyal) == {"ada"}

    def test_guest_page_lists_memberships_and_guests_filter_by_segment(
        self, admin_client, door, segment
    ):
        buy(door, "ada", 2)
        buy(door, "bob", 1)
        ada = guest("ada")

        page = admin_client.get(f"/admin/profiles/guest/{ada.pk}/change/").content.decode()
        assert "Buyers" in page
        listing = admin_client.get(f"/admin/profiles/guest/?segment={segment.pk}").content.decode()
        assert str(ada.ref) in listing and str(guest("bob").ref) not in listing

    def test_actions_recompute_and_export(self, admin_client, door, segment):
        buy(door, "ada", 2)
        SegmentMembership.objects.all().delete()
        admin_client.post(
            "/admin/profiles/segment/",
            {"action": "recompute_now", "_selected_action": [segment.pk]},
        )
        assert current(segment) == {"ada"}
        response = admin_client.post(
            "/admin/profiles/segment/",
            {"action": "export_csv", "_selected_action": [segment.pk]},
        )
        body = b"".join(response.streaming_content).decode("utf-8-sig")
        assert body.splitlines()[1].split(",")[3] == "ada"


def test_memberships_follow_a_merge(door, source):
    vip = SegmentFactory(
        workspace=source.workspace,
        slug="vip",
        name="VIP",
        rule={"trait": {"key": "vip", "op": "eq", "value": True}},
    )
    visitors = SegmentFactory(
        workspace=source.workspace,
        slug="visitors",
        name="Visitors",
        rule={"field": {"name": "guest_type", "op": "eq", "value": "visitor"}},
    )
    door.post("page", {"anonymousId": "a1", "name": "Home"})
    identify(door, "ada", vip=True)
    assert current(visitors) == {"a1"} and current(vip) == {"ada"}

    door.post("identify", {"userId": "ada", "anonymousId": "a1"})

    ada = guest("ada")
    assert set(SegmentMembership.objects.values_list("guest_id", flat=True)) == {ada.pk}
    assert SegmentMembership.objects.get(segment=vip, exited_at__isnull=True).guest == ada
    # The survivor is a customer: the incremental run after the merge closed the visitor stay.
    assert not SegmentMembership.objects.filter(segment=visitors, exited_at__isnull=True).exists()
