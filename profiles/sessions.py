"""Sessionisation: which session each message belongs to.

A session is a guest's run of activity on one channel. Where the client names its session
(``context.sessionId``, ``sid``, ``SessionId``) that name wins. Otherwise the sessions of a guest
and channel are the clusters of its events whose gaps are at most the workspace's inactivity
timeout: a late event that falls in a gap joins the session around it (and two sessions it
bridges become one), so the result does not depend on the order events arrive in. A forced close
seals a session: nothing after its end joins it.

Runs inside the pipeline's transaction after identity resolution, which holds the lock of every
guest involved, so two workers never sessionise the same guest at once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import Case, Value, When
from django.utils import timezone

from config.lib.db import rows_update
from tracking.models import Event, Workspace

from .models import Session

if TYPE_CHECKING:
    from tracking.messages import Message

SESSION_FIELDS = [
    "status",
    "started_at",
    "ended_at",
    "duration",
    "closed_at",
    "force_closed",
    "event_count",
    "page_view_count",
    "first_page",
    "first_page_at",
    "last_page",
    "last_page_at",
]


@dataclass
class Cluster:
    start: datetime
    end: datetime
    sessions: list[Session] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    sealed_at: datetime | None = None


def sessions_assign(*, messages: list[Message], timeouts: dict[int, timedelta]) -> None:
    """Set ``message.session_id`` for every message, creating, growing and joining sessions.

    ``timeouts`` maps workspace id to its inactivity timeout. Messages must have guests.
    """
    if not messages:
        return
    named = [m for m in messages if m.client_session_id]
    derived = [m for m in messages if not m.client_session_id]
    if named:
        _named_sessions_assign(named)
    if derived:
        _derived_sessions_assign(derived, timeouts)


def _named_sessions_assign(messages: list[Message]) -> None:
    keys = {(m.workspace_id, m.client_session_id) for m in messages}
    existing = {
        (s.workspace_id, s.client_session_id): s
        for s in Session.objects.select_for_update().filter(
            workspace_id__in={ws for ws, _ in keys},
            client_session_id__in={sid for _, sid in keys},
        )
        if (s.workspace_id, s.client_session_id) in keys
    }
    by_session: dict[tuple[int, str], list[Message]] = defaultdict(list)
    for message in messages:
        by_session[(message.workspace_id, message.client_session_id)].append(message)
    new, changed = [], []
    for key, group in by_session.items():
        session = existing.get(key)
        if session is None:
            first = min(group, key=lambda m: m.timestamp)
            session = _session_new(first)
            session.client_session_id = key[1]
            new.append(session)
        else:
            changed.append(session)
        _session_grow(session, group)
    _sessions_write(new=new, changed=changed)
    ids = {(s.workspace_id, s.client_session_id): s.pk for s in (*new, *changed)}
    for message in messages:
        message.session_id = ids[(message.workspace_id, message.client_session_id)]


def _shifted(moment: datetime, by: timedelta) -> datetime:
    """``moment + by``, stopping at the ends of the calendar (an event may carry year 1)."""
    try:
        return moment + by
    except OverflowError:
        edge = datetime.min if by < timedelta(0) else datetime.max
        return edge.replace(tzinfo=moment.tzinfo)


def _derived_sessions_assign(messages: list[Message], timeouts: dict[int, timedelta]) -> None:
    groups: dict[tuple[int, str], list[Message]] = defaultdict(list)
    for message in messages:
        groups[(message.guest_id, message.channel)].append(message)
    widest = max(timeouts[m.workspace_id] for m in messages)
    low = _shifted(min(m.timestamp for m in messages), -widest)
    high = _shifted(max(m.timestamp for m in messages), widest)
    candidates: dict[tuple[int, str], list[Session]] = defaultdict(list)
    for session in Session.objects.filter(
        guest_id__in={guest_id for guest_id, _ in groups},
        client_session_id="",
        ended_at__gte=low,
        started_at__lte=high,
    ).order_by("started_at", "pk"):
        candidates[(session.guest_id, session.channel)].append(session)

    new: list[Session] = []
    changed: list[Session] = []
    absorbed: dict[int, Session] = {}
    placed: list[tuple[Message, Session]] = []
    for key, group in groups.items():
        timeout = timeouts[group[0].workspace_id]
        for cluster in _clusters(candidates.get(key, []), group, timeout):
            if not cluster.messages and len(cluster.sessions) < 2:
                continue
            if not cluster.sessions:
                session = _session_new(min(cluster.messages, key=lambda m: m.timestamp))
                session.ref = _ref_given(cluster.messages) or session.ref
                new.append(session)
            else:
                session = _cluster_join(cluster, absorbed)
                changed.append(session)
            _session_grow(session, cluster.messages)
            placed += [(message, session) for message in cluster.messages]
    _absorbed_drop(absorbed)
    _sessions_write(new=new, changed=changed)
    for message, session in placed:
        message.session_id = session.pk


def sessions_reconcile(
    *, guest_ids: set[int], since: datetime, until: datetime, timeouts: dict[int, timedelta]
) -> int:
    """Join the overlapping or touching derived sessions of guests (after a merge).

    Only sessions that reach into ``since``…``until`` (widened by the timeout) are looked at;
    ``timeouts`` maps the guests' workspace ids to their session timeouts. Returns the number of
    sessions absorbed into others.
    """
    if not guest_ids:
        return 0
    widest = max(timeouts.values())
    by_key: dict[tuple[int, str], list[Session]] = defaultdict(list)
    for session in Session.objects.filter(
        guest_id__in=guest_ids,
        client_session_id="",
        ended_at__gte=_shifted(since, -widest),
        started_at__lte=_shifted(until, widest),
    ).order_by("started_at", "pk"):
        by_key[(session.guest_id, session.channel)].append(session)
    absorbed: dict[int, Session] = {}
    changed: list[Session] = []
    for sessions in by_key.values():
        if len(sessions) < 2:
            continue
        timeout = timeouts[sessions[0].workspace_id]
        for cluster in _clusters(sessions, [], timeout):
            if len(cluster.sessions) > 1:
                changed.append(_cluster_join(cluster, absorbed))
    _absorbed_drop(absorbed)
    _sessions_write(new=[], changed=changed)
    return len(absorbed)


def _cluster_join(cluster: Cluster, absorbed: dict[int, Session]) -> Session:
    """The cluster's earliest session takes in the others (noted in ``absorbed``)."""
    keeper, *others = cluster.sessions
    for other in others:
        _session_absorb(keeper, other)
        absorbed[other.pk] = keeper
    return keeper


def _absorbed_drop(absorbed: dict[int, Session]) -> None:
    """Move the events of absorbed sessions to their keepers and delete them, in two statements."""
    if not absorbed:
        return
    Event.objects.filter(session_id__in=list(absorbed)).update(
        session_id=Case(*[When(session_id=pk, then=Value(s.pk)) for pk, s in absorbed.items()])
    )
    Session.objects.filter(pk__in=list(absorbed)).delete()


def _clusters(
    sessions: list[Session], messages: list[Message], timeout: timedelta
) -> list[Cluster]:
    """Sessions and events of one guest and channel, grouped by gaps of at most ``timeout``."""
    items: list[tuple[datetime, datetime, int, Session | Message]] = [
        (s.started_at, s.ended_at, 0, s) for s in sessions
    ]
    items += [(m.timestamp, m.timestamp, 1, m) for m in messages]
    items.sort(key=lambda item: (item[0], item[2], item[1]))
    clusters: list[Cluster] = []
    current: Cluster | None = None
    for start, end, is_message, item in items:
        joins = (
            current is not None
            and start - current.end <= timeout
            and (current.sealed_at is None or start <= current.sealed_at)
        )
        if not joins:
            current = Cluster(start=start, end=end)
            clusters.append(current)
        current.end = max(current.end, end)
        if is_message:
            current.messages.append(item)
            if item.closes_session and current.sealed_at is None:
                current.sealed_at = item.timestamp
        else:
            current.sessions.append(item)
            if item.force_closed:
                sealed = item.ended_at
                current.sealed_at = sealed if current.sealed_at is None else current.sealed_at
    return clusters


def _session_new(message: Message) -> Session:
    return Session(
        workspace_id=message.workspace_id,
        guest_id=message.guest_id,
        channel=message.channel,
        device=message.device or message.anonymous_id,
        started_at=message.timestamp,
        ended_at=message.timestamp,
    )


def _ref_given(messages: list[Message]) -> str:
    """The ref an answer already gave the new session of these messages (the earliest such
    message's), if any."""
    given = [m for m in messages if m.session_ref]
    return min(given, key=lambda m: (m.timestamp, m.message_id)).session_ref if given else ""


def _session_grow(session: Session, messages: list[Message]) -> None:
    for message in sorted(messages, key=lambda m: (m.timestamp, m.message_id)):
        session.started_at = min(session.started_at, message.timestamp)
        session.ended_at = max(session.ended_at, message.timestamp)
        session.event_count += 1
        if message.is_page_view:
            session.page_view_count += 1
            if message.page:
                _page_note(session, message.page, message.timestamp)
        if message.closes_session:
            session.force_closed = True
            session.status = Session.Status.CLOSED
            session.closed_at = timezone.now()
    session.duration = session.ended_at - session.started_at


def _page_note(session: Session, page: str, at: datetime) -> None:
    if session.first_page_at is None or at < session.first_page_at:
        session.first_page, session.first_page_at = page, at
    if session.last_page_at is None or at >= session.last_page_at:
        session.last_page, session.last_page_at = page, at


def _session_absorb(keeper: Session, other: Session) -> None:
    keeper.started_at = min(keeper.started_at, other.started_at)
    keeper.ended_at = max(keeper.ended_at, other.ended_at)
    keeper.duration = keeper.ended_at - keeper.started_at
    keeper.event_count += other.event_count
    keeper.page_view_count += other.page_view_count
    if other.first_page_at is not None:
        _page_note(keeper, other.first_page, other.first_page_at)
    if other.last_page_at is not None:
        _page_note(keeper, other.last_page, other.last_page_at)
    if other.status == Session.Status.OPEN:
        keeper.status, keeper.closed_at = Session.Status.OPEN, None
    keeper.force_closed = keeper.force_closed or other.force_closed


def _sessions_write(*, new: list[Session], changed: list[Session]) -> None:
    if new:
        Session.objects.bulk_create(new, batch_size=1000)
    if changed:
        unique = list({s.pk: s for s in changed}.values())
        rows_update(unique, SESSION_FIELDS)


def sessions_close_idle(*, now: datetime | None = None) -> int:
    """Close the open sessions idle past their workspace's timeout. Returns how many."""
    now = now or timezone.now()
    closed = 0
    for timeout in Workspace.objects.values_list("session_timeout", flat=True).distinct():
        closed += Session.objects.filter(
            status=Session.Status.OPEN,
            ended_at__lt=now - timeout,
            workspace__session_timeout=timeout,
        ).update(status=Session.Status.CLOSED, closed_at=now)
    return closed


def session_force_close(session: Session, *, now: datetime | None = None) -> None:
    """Close a session at once and seal it, as Sitecore's FORCE_CLOSE does."""
    session.status = Session.Status.CLOSED
    session.force_closed = True
    session.closed_at = now or timezone.now()
    session.save(update_fields=["status", "force_closed", "closed_at"])
