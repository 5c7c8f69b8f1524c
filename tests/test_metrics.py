"""The operators' Prometheus endpoint: scraped after traffic through the real doors, it shows
the counts that were sent."""

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import T0, track
from tests.factories import ExperienceFactory, SegmentFactory, VariantFactory
from tracking.models import Event, FailedEvent

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-for-tests"


@pytest.fixture
def metrics_on(settings):
    settings.FOOTPRINT = {**settings.FOOTPRINT, "METRICS_TOKEN": TOKEN}


def scrape(client) -> dict:
    """Every sample of the endpoint, as {(name, sorted labels): value}."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_without_a_token_configured_there_is_no_endpoint(client):
    assert client.get("/metrics").status_code == 404


def test_a_wrong_or_missing_token_is_refused(client, metrics_on):
    assert client.get("/metrics").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_scrape_counts_what_the_doors_were_sent(client, door, metrics_on):
    before = scrape(client)
    valid = [track(messageId=f"m-{i}", userId=f"u-{i}") for i in range(7)]
    repeated = [track(messageId="m-0", userId="u-0"), track(messageId="m-1", userId="u-1")]
    invalid = [{"type": "track", "userId": "u-9", "messageId": "bad-1"}, {"type": "nope"}]
    assert door.post("batch", {"batch": valid + repeated + invalid}).status_code == 200
    assert door.post("track", track(messageId="single-1")).status_code == 200
    # Refused at the door: no key.
    assert door.post("track", track(), key="").status_code == 401
    after = scrape(client)

    assert delta(before, after, "footprint_door_requests_total", door="segment", status="200") == 2
    assert delta(before, after, "footprint_door_requests_total", door="segment", status="401") == 1
    assert delta(before, after, "footprint_messages_accepted_total", door="segment") == 12
    assert delta(before, after, "footprint_events_stored_total") == 8 == Event.objects.count()
    assert delta(before, after, "footprint_duplicates_dropped_total") == 2
    failed = FailedEvent.objects.all()
    assert failed.count() == 2
    for code in {item.code for item in failed}:
        assert (
            delta(before, after, "footprint_events_failed_total", door="segment", reason=code)
            == failed.filter(code=code).count()
        )
    # Processing lag: one observation per processed request, each well under a minute.
    assert delta(before, after, "footprint_processing_lag_seconds_count") == 2
    assert delta(before, after, "footprint_processing_lag_seconds_bucket", le="60.0") == 2
    assert delta(before, after, "footprint_door_request_seconds_count", door="segment") == 3
    assert after[("footprint_inbox_pending", ())] == 0


def test_the_backlog_and_the_age_of_its_oldest_request(client, source, metrics_on, clock):
    from tests.conftest import Door

    # Accepted but not processed: the commit callbacks that queue processing never run.
    idle = Door(client, lambda execute: _NoCommit(), source)
    for i in range(3):
        assert idle.post("track", track(messageId=f"late-{i}")).status_code == 200
        clock.set(T0.replace(second=10 * (i + 1)))
    clock.set(T0.replace(minute=2))
    samples = scrape(client)
    assert samples[("footprint_inbox_pending", ())] == 3
    assert samples[("footprint_inbox_oldest_pending_age_seconds", ())] == 120.0


class _NoCommit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_callflows_latency_and_segment_runs_are_observed(
    client, source, metrics_on, django_capture_on_commit_callbacks
):
    experience = ExperienceFactory(workspace=source.workspace, friendly_id="popup", status="live")
    VariantFactory(experience=experience, name="A", is_control=True, content={"title": "Hi"})
    segment = SegmentFactory(
        workspace=source.workspace, rule={"trait": {"key": "plan", "op": "eq", "value": "pro"}}
    )
    before = scrape(client)
    for i in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/v2/callFlows",
                orjson.dumps(
                    {
                        "clientKey": source.workspace.client_key,
                        "friendlyId": "popup",
                        "browserId": f"b-{i}",
                        "channel": "WEB",
                        "pointOfSale": "shop",
                    }
                ),
                content_type="application/json",
            )
        assert response.status_code == 200, response.content
    from profiles.segments import segment_recompute

    with django_capture_on_commit_callbacks(execute=True):
        segment_recompute(segment)
    after = scrape(client)
    assert delta(before, after, "footprint_door_request_seconds_count", door="callflows") == 3
    assert (
        delta(before, after, "footprint_door_requests_total", door="callflows", status="200") == 3
    )
    assert delta(before, after, "footprint_segment_run_seconds_count", kind="full") == 1
