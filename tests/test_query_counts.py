"""List pages read in a fixed number of queries, whatever the number of rows they show.

Each list of the read API and each of the busiest admin lists is read with N rows and again
with 3N. The same number of queries both times means no query per row (N+1); the bound is what
the page takes today on PostgreSQL and SQLite, so that a new query per page is noticed too.
Every row gets its own related rows (guest, session, source, variant, …), so that a lookup per
row cannot hide behind a cache.
"""

from __future__ import annotations

import pytest

from experiences.results_cache import results_refresh
from tests.conftest import ON_POSTGRES
from tests.factories import (
    AssignmentFactory,
    EventFactory,
    ExperienceFactory,
    FailedEventFactory,
    FlowExecutionFactory,
    GuestFactory,
    IdentityFactory,
    InboxRequestFactory,
    SegmentFactory,
    SegmentMembershipFactory,
    SessionFactory,
    SourceFactory,
    VariantFactory,
)
from tracking import apis
from tracking.models import Event

pytestmark = pytest.mark.django_db

N = 3


def api_rows(response) -> int:
    return len(response.json()["results"])


def admin_rows(response) -> int:
    return len(response.context["cl"].result_list)


def assert_flat(client, path, fill, *, rows, bound, assert_max_num_queries, per_row=0) -> None:
    """``fill(n)`` adds n rows that the list at ``path`` shows; ``rows(response)`` counts them.

    ``per_row``: queries a row costs by design (the experience list's results columns); the
    page must cost exactly that much more per row, and nothing else may grow.
    """
    fill(N)
    # The first request of a process fills caches (content types, permissions) once.
    assert client.get(path).status_code == 200
    counts = []
    for total in (N, 3 * N):
        fill(total - N)
        with assert_max_num_queries(bound + per_row * total) as queries:
            response = client.get(path)
        assert response.status_code == 200, response.content
        # Every row is on the page: a list that showed none would be flat for nothing.
        assert rows(response) == total
        counts.append(len(queries))
    few, many = counts
    assert many - few == per_row * 2 * N, (
        f"{few} queries for {N} rows but {many} for {3 * N}: a query per row"
    )


# --- Rows, each with its own related rows -----------------------------------------------------


def guest_with_identities(workspace):
    guest = GuestFactory(workspace=workspace)
    IdentityFactory(guest=guest, kind="user_id")
    IdentityFactory(guest=guest, kind="email")
    return guest


def events(source, n, *, guest=None):
    """Track and TRACKING events (the latter shaped from their workspace and session)."""
    for i in range(n):
        other = SourceFactory(workspace=source.workspace)
        owner = guest or GuestFactory(workspace=source.workspace)
        EventFactory(
            source=other,
            guest=owner,
            session=SessionFactory(guest=owner),
            **({"type": "TRACKING", "name": "banner"} if i % 2 else {}),
        )


def guests(source, n):
    for _ in range(n):
        guest_with_identities(source.workspace)


def identities(source, n):
    IdentityFactory.create_batch(n, guest__workspace=source.workspace)


def sessions(source, n):
    SessionFactory.create_batch(n, guest__workspace=source.workspace)


def failed_events(source, n):
    for _ in range(n):
        FailedEventFactory(source=SourceFactory(workspace=source.workspace))


def inbox_requests(source, n):
    for _ in range(n):
        InboxRequestFactory(source=SourceFactory(workspace=source.workspace))


def segments(source, n):
    SegmentFactory.create_batch(n, workspace=source.workspace)


def experiences(source, n):
    for _ in range(n):
        experience = ExperienceFactory(workspace=source.workspace)
        VariantFactory(experience=experience, is_control=True)
        VariantFactory(experience=experience)
        experience.target_segments.add(SegmentFactory(workspace=source.workspace))
        experience.exclusion_segments.add(SegmentFactory(workspace=source.workspace))
        # Their results as a worker keeps them (experiences.results_cache): the list reads them
        # from the cache in one read, whatever the number of rows.
        results_refresh(experience=experience)


def flow_executions(source, n):
    FlowExecutionFactory.create_batch(n, experience__workspace=source.workspace)


def assignments(source, n):
    AssignmentFactory.create_batch(n, experience__workspace=source.workspace)


# --- The read API -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fill", "bound"),
    [
        # The token's user, then the page; guests add their identities, experiences their
        # variants and both kinds of segments.
        pytest.param("/api/events/", events, 2, id="events"),
        pytest.param("/api/guests/", guests, 3, id="guests"),
        pytest.param("/api/segments/", segments, 2, id="segments"),
        pytest.param("/api/experiences/", experiences, 6, id="experiences"),
    ],
)
def test_api_list(api, source, path, fill, bound, django_assert_max_num_queries):
    assert_flat(
        api,
        path,
        lambda n: fill(source, n),
        rows=api_rows,
        bound=bound,
        assert_max_num_queries=django_assert_max_num_queries,
    )


def test_api_guest_events(api, source, django_assert_max_num_queries):
    guest = guest_with_identities(source.workspace)
    assert_flat(
        api,
        f"/api/guests/{guest.ref}/events/",
        lambda n: events(source, n, guest=guest),
        rows=api_rows,
        bound=3,
        assert_max_num_queries=django_assert_max_num_queries,
    )


def test_api_segment_members(api, source, django_assert_max_num_queries):
    segment = SegmentFactory(workspace=source.workspace)

    def members(n):
        for _ in range(n):
            SegmentMembershipFactory(segment=segment, guest=guest_with_identities(source.workspace))

    assert_flat(
        api,
        f"/api/segments/{segment.slug}/members/",
        members,
        rows=api_rows,
        bound=4,
        assert_max_num_queries=django_assert_max_num_queries,
    )


def test_a_query_per_row_is_caught(api, source, monkeypatch, django_assert_max_num_queries):
    """The check can fail: events listed without their guests, sessions and sources joined."""
    monkeypatch.setattr(apis.EventViewSet, "base_queryset", lambda view: Event.objects.all())
    with pytest.raises(AssertionError, match="a query per row"):
        assert_flat(
            api,
            "/api/events/",
            lambda n: events(source, n),
            rows=api_rows,
            bound=1000,
            assert_max_num_queries=django_assert_max_num_queries,
        )


# --- The admin --------------------------------------------------------------------------------


# The paginator's estimate on PostgreSQL: EXPLAIN, then COUNT(*) under a statement timeout set
# and reset inside a savepoint, where SQLite runs the COUNT(*) alone.
ESTIMATED_COUNT_EXTRA = 6 if ON_POSTGRES else 0


# The experience list shows each experience's exposures, leader and significance from the
# results kept in the cache: no query per row.
PER_ROW: dict[str, int] = {}


@pytest.mark.parametrize(
    ("model", "fill", "bound"),
    [
        # Session, user, count and page; the event list's filters list the sources, the event
        # names (from the catalogue) and the experiences, the failed event list's the sources
        # and codes, the guest list's the segments.
        pytest.param("tracking/event", events, 7, id="event"),
        pytest.param("tracking/failedevent", failed_events, 6, id="failedevent"),
        pytest.param("tracking/inboxrequest", inbox_requests, 4, id="inboxrequest"),
        pytest.param("profiles/guest", guests, 5, id="guest"),
        pytest.param("profiles/identity", identities, 4, id="identity"),
        pytest.param("profiles/session", sessions, 4, id="session"),
        pytest.param("profiles/segment", segments, 4, id="segment"),
        # ... and the variants and metrics, prefetched for the results columns.
        pytest.param("experiences/experience", experiences, 6, id="experience"),
        pytest.param("experiences/flowexecution", flow_executions, 4, id="flowexecution"),
        pytest.param("experiences/assignment", assignments, 4, id="assignment"),
    ],
)
def test_admin_changelist(admin_client, source, model, fill, bound, django_assert_max_num_queries):
    assert_flat(
        admin_client,
        f"/admin/{model}/",
        lambda n: fill(source, n),
        rows=admin_rows,
        bound=bound + ESTIMATED_COUNT_EXTRA,
        assert_max_num_queries=django_assert_max_num_queries,
        per_row=PER_ROW.get(model, 0),
    )
