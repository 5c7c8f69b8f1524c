"""A marketer builds a segment rule with the builder in a real browser (Debian's Chromium)."""

import json
import os
import shutil

import pytest

from tests.factories import UserFactory

CHROMIUM = os.environ.get("FOOTPRINT_CHROMIUM") or shutil.which("chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM and os.environ.get("FOOTPRINT_REQUIRE_SERVICES") != "1",
        reason="needs Chromium: apt-get install chromium (or set FOOTPRINT_CHROMIUM)",
    ),
]

RULE = {
    "all": [
        {"trait": {"key": "plan", "op": "eq", "value": "pro"}},
        {"event": {"name": "Order Completed", "count": {"op": "gte", "value": 2}}},
    ]
}


def people(door):
    """Guests on each side of each condition: ada and di have plan pro and two orders or more."""
    for user, plan, orders in [
        ("ada", "pro", 2),
        ("bob", "pro", 1),
        ("cy", "free", 3),
        ("di", "pro", 3),
    ]:
        door.post("identify", {"userId": user, "traits": {"plan": plan, "email": f"{user}@ex.io"}})
        for n in range(orders):
            door.post("track", {"userId": user, "event": "Order Completed", "properties": {"n": n}})


@pytest.mark.django_db(transaction=True)
def test_builder_rule_selects_what_the_same_json_rule_does(live_server, door):
    from django.contrib.auth.models import Group
    from playwright.sync_api import expect, sync_playwright

    from profiles.models import Segment

    people(door)
    workspace = door.source.workspace
    marketer = UserFactory(is_staff=True, workspaces=[workspace])
    marketer.groups.add(Group.objects.get(name="Marketers"))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = logged_in(browser, live_server, marketer)

            # With the builder: no JSON typed anywhere.
            page.goto(f"{live_server.url}/admin/profiles/segment/add/")
            page.select_option("#id_workspace", str(workspace.pk))
            page.fill("#id_name", "Pro repeat buyers")
            page.fill("#id_slug", "pro-repeat")
            builder = page.locator("#fp-rule-builder")
            builder.get_by_role("button", name="Guests matching all of…").click()
            first = builder.locator(".fp-rb-condition").nth(0)
            first.get_by_label("trait").fill("plann")
            expect(first.locator(".fp-rb-warn")).to_contain_text("no trait named “plann”")
            first.get_by_label("trait").fill("plan")
            expect(first.locator(".fp-rb-warn")).to_have_text("")
            first.get_by_label("value", exact=True).fill("pro")

            builder.get_by_role("button", name="+ condition").click()
            second = builder.locator(".fp-rb-condition").nth(1)
            second.get_by_label("condition kind").select_option("event")
            second = builder.locator(".fp-rb-condition").nth(1)
            second.get_by_label("event").fill("Order Complete")
            expect(second.locator(".fp-rb-warn")).to_contain_text("no event named “Order Complete”")
            second.get_by_label("event").fill("Order Completed")
            expect(second.locator(".fp-rb-warn")).to_have_text("")
            second.get_by_label("times").fill("2")

            preview = page.locator("#fp-preview")
            expect(preview).to_have_text("2 guests match right now.")
            expect(page.locator("#fp-preview-sample a")).to_have_count(2)
            expect(page.locator("#fp-preview-sample")).to_contain_text("ada@ex.io")
            built = json.loads(page.locator("#id_rule").input_value())
            page.click("input[name=_save]")
            expect(page.locator(".messagelist")).to_contain_text("was added successfully")

            # The same rule written as JSON, in the advanced view.
            page.goto(f"{live_server.url}/admin/profiles/segment/add/")
            page.select_option("#id_workspace", str(workspace.pk))
            page.fill("#id_name", "Pro repeat buyers, by hand")
            page.fill("#id_slug", "pro-repeat-json")
            page.locator("#fp-rule-json summary").click()
            page.fill("#id_rule", json.dumps(RULE))
            expect(preview).to_have_text("2 guests match right now.")
            # The builder reads the JSON back into the same two conditions.
            expect(builder.locator(".fp-rb-condition")).to_have_count(2)
            expect(builder.get_by_label("trait")).to_have_value("plan")
            expect(builder.get_by_label("event")).to_have_value("Order Completed")
            page.click("input[name=_save]")
            expect(page.locator(".messagelist")).to_contain_text("was added successfully")
        finally:
            browser.close()

    by_builder = Segment.objects.get(name="Pro repeat buyers")
    by_hand = Segment.objects.get(name="Pro repeat buyers, by hand")
    assert built == RULE == by_builder.rule == by_hand.rule
    assert members(by_builder) == members(by_hand) == {"ada@ex.io", "di@ex.io"}

    # Builder -> JSON -> builder: opening the saved segment shows it and changes nothing.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = logged_in(browser, live_server, marketer)
            page.goto(f"{live_server.url}/admin/profiles/segment/{by_builder.pk}/change/")
            conditions = page.locator("#fp-rule-builder .fp-rb-condition")
            expect(conditions).to_have_count(2)
            expect(conditions.nth(1).get_by_label("times")).to_have_value("2")
            assert json.loads(page.locator("#id_rule").input_value()) == RULE
            conditions.nth(1).get_by_label("times").fill("2")  # typed again, the same
            assert json.loads(page.locator("#id_rule").input_value()) == RULE
        finally:
            browser.close()


def logged_in(browser, live_server, user):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    return page


def members(segment) -> set[str]:
    return set(
        segment.memberships.filter(exited_at__isnull=True).values_list("guest__email", flat=True)
    )


SHAPES = [
    {"trait": {"key": "plan", "op": "in", "value": ["plus", "pro"]}},
    {"trait": {"key": "age", "op": "gte", "value": 21.5}},
    {"trait": {"key": "vip", "op": "eq", "value": True}},
    {"trait": {"key": "email", "op": "exists", "value": False}},
    {
        "event": {
            "name": "Order Completed",
            "count": {"op": "gte", "value": 2},
            "within_days": 30,
            "where": [{"property": "n", "op": "lt", "value": 3}],
        }
    },
    {"revenue": {"op": "gt", "value": 100, "within_days": 90}},
    {"sessions": {"op": "lte", "value": 3}},
    {"field": {"name": "guest_type", "op": "in", "value": ["customer", "visitor"]}},
    {"field": {"name": "last_seen", "op": "gte", "value": {"days_ago": 14}}},
    {"field": {"name": "first_seen", "op": "lt", "value": "2026-01-01T00:00:00Z"}},
    {"field": {"name": "email_domain", "op": "eq", "value": "ex.io"}},
    {"experience": {"friendly_id": "hero_banner", "variant": "B"}},
    {"segment": {"slug": "vip"}},
]


@pytest.mark.django_db(transaction=True)
def test_every_condition_shows_as_fields_and_round_trips(live_server, door):
    from django.contrib.auth.models import Group
    from playwright.sync_api import expect, sync_playwright

    from tests.factories import SegmentFactory

    people(door)
    workspace = door.source.workspace
    SegmentFactory(workspace=workspace, slug="vip", rule={"sessions": {"op": "gte", "value": 1}})
    marketer = UserFactory(is_staff=True, workspaces=[workspace])
    marketer.groups.add(Group.objects.get(name="Marketers"))
    rule = {"any": [{"all": SHAPES[:6]}, {"not": {"any": SHAPES[6:]}}]}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = logged_in(browser, live_server, marketer)
            page.goto(f"{live_server.url}/admin/profiles/segment/add/")
            page.select_option("#id_workspace", str(workspace.pk))
            page.fill("#id_slug", "shapes")
            page.locator("#fp-rule-json summary").click()
            page.fill("#id_rule", json.dumps(rule))
            builder = page.locator("#fp-rule-builder")
            expect(builder.locator(".fp-rb-condition")).to_have_count(len(SHAPES))
            expect(builder.locator(".fp-rb-rawbox")).to_have_count(0)  # all as fields
            expect(builder.locator(".fp-rb-not")).to_have_count(1)
            # The server takes the rule (the count is shown, not an error).
            expect(page.locator("#fp-preview")).to_contain_text("match right now")
            # Builder -> JSON: what the builder writes back is the rule it read.
            page.evaluate("window.footprintRuleBuilder.changed()")
            assert json.loads(page.locator("#id_rule").input_value()) == rule
            # An unknown shape stays as JSON of its own, untouched.
            odd = {"all": [{"trait": {"key": "plan", "op": "eq", "value": "pro", "x": 1}}]}
            page.fill("#id_rule", json.dumps(odd))
            expect(builder.locator(".fp-rb-rawbox")).to_have_count(1)
            page.evaluate("window.footprintRuleBuilder.changed()")
            assert json.loads(page.locator("#id_rule").input_value()) == odd
        finally:
            browser.close()
