"""The admin's home page: one workspace's traffic, guests, failures, pipeline health, live
experiences and biggest segments, read from the rollups the pipeline keeps (never by counting
the events table), so it stays fast however many events there are.

It reads every app, so it lives in the top layer. Experiment results are the one thing too slow
to read live: beat keeps them in the cache (``experiences.results_cache``) and the home page
reads only that.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from statistics import median

from django.db.models import F, Q, Sum
from django.urls import reverse
from django.utils import timezone

from experiences.models import Experience
from experiences.results_cache import results_many_cached
from profiles.models import GuestRollup, Segment, SegmentRun
from tracking.models import (
    EventTypeRollup,
    FailedEventRollup,
    InboxRequest,
    Source,
    Workspace,
)
from tracking.selectors import workspaces_visible

PERIODS = {"7d": (7, "hour"), "30d": (30, "day")}
SPLITS = {"source": "Source", "type": "Type"}
# Processed requests the processing lag is the median of.
LAG_SAMPLE = 200

TYPE_LABELS = {
    "track": "Track",
    "page": "Page view",
    "screen": "Screen view",
    "identify": "Identify",
    "group": "Group",
    "alias": "Alias",
    "VIEW": "View (Sitecore)",
    "TRACKING": "Experience shown",
    "IDENTITY": "Identity (Sitecore)",
}


def workspace_pick(request) -> tuple[list[Workspace], Workspace | None, str]:
    """The user's workspaces, the one asked for (``?workspace=<id>``, else the first) and a
    sentence when the one asked for is not theirs."""
    workspaces = list(workspaces_visible(request.user).order_by("name"))
    asked = request.GET.get("workspace", "")
    if not workspaces:
        return workspaces, None, ""
    if asked:
        chosen = next((w for w in workspaces if str(w.pk) == asked), None)
        if chosen is None:
            return workspaces, workspaces[0], f"No workspace {asked!r} among yours."
        return workspaces, chosen, ""
    return workspaces, workspaces[0], ""


def dashboard(request) -> dict:
    """The template context of the home page."""
    workspaces, workspace, problem = workspace_pick(request)
    period = request.GET.get("period", "7d")
    period = period if period in PERIODS else "7d"
    split = request.GET.get("split", "source")
    split = split if split in SPLITS else "source"
    context = {
        "workspaces": workspaces,
        "workspace": workspace,
        "workspace_problem": problem,
        "period": period,
        "split": split,
        "periods": [("7d", "Last 7 days, per hour"), ("30d", "Last 30 days, per day")],
        "splits": list(SPLITS.items()),
        "timezone_name": timezone.get_current_timezone_name(),
    }
    if workspace is None:
        return context
    now = timezone.now()
    context.update(
        traffic=traffic(workspace, now=now, period=period, split=split),
        totals=totals(workspace, now=now),
        guests=guests_daily(workspace, now=now),
        failures=failures(workspace, now=now, user=request.user),
        health=pipeline_health(workspace, now=now),
        experiences=live_experiences(workspace),
        segments=biggest_segments(workspace, now=now),
    )
    return context


def _local(moment: datetime) -> datetime:
    return timezone.localtime(moment)


def _buckets(now: datetime, days: int, unit: str) -> list[datetime]:
    """The local hours or days of the period, oldest first, ending with the current one."""
    local = _local(now)
    if unit == "hour":
        end = local.replace(minute=0, second=0, microsecond=0)
        return [end - timedelta(hours=h) for h in range(days * 24 - 1, -1, -1)]
    end = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return [end - timedelta(days=d) for d in range(days - 1, -1, -1)]


def _bucket_of(moment: datetime, unit: str) -> datetime:
    local = _local(moment)
    if unit == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def traffic(workspace: Workspace, *, now: datetime, period: str, split: str) -> dict:
    """Events per local hour (7 days) or day (30 days), one stacked series per source or
    type, as a Chart.js config."""
    days, unit = PERIODS[period]
    buckets = _buckets(now, days, unit)
    start = buckets[0]
    column = "source_id" if split == "source" else "type"
    rows = (
        EventTypeRollup.objects.filter(workspace=workspace, hour__gte=start, hour__lte=now)
        .values_list("hour", column)
        .annotate(total=Sum("n"))
        .order_by()
    )
    index = {bucket: i for i, bucket in enumerate(buckets)}
    series: dict = defaultdict(lambda: [0] * len(buckets))
    for hour, key, total in rows:
        position = index.get(_bucket_of(hour, unit))
        if position is not None:
            series[key][position] += total
    if split == "source":
        names = dict(Source.objects.filter(workspace=workspace).values_list("pk", "name"))
        label = lambda key: names.get(key, f"source #{key}")  # noqa: E731
    else:
        label = lambda key: TYPE_LABELS.get(key, key)  # noqa: E731
    ordered = sorted(series.items(), key=lambda item: -sum(item[1]))
    fmt = "%a %H:%M" if unit == "hour" else "%a %d %b"
    return {
        "total": sum(sum(values) for values in series.values()),
        "chart": {
            "type": "bar",
            "data": {
                "labels": [bucket.strftime(fmt) for bucket in buckets],
                "datasets": [
                    {"label": label(key), "data": values, "stack": "events"}
                    for key, values in ordered
                ],
            },
            "options": {
                "scales": {
                    "x": {"stacked": True, "ticks": {"maxTicksLimit": 14}},
                    "y": {"stacked": True, "beginAtZero": True},
                },
                "plugins": {"legend": {"position": "bottom"}},
            },
        },
        "legend": [(label(key), sum(values)) for key, values in ordered],
    }


def _events_between(workspace: Workspace, start: datetime, end: datetime) -> int:
    return (
        EventTypeRollup.objects.filter(
            workspace=workspace, hour__gte=start, hour__lt=end
        ).aggregate(n=Sum("n"))["n"]
        or 0
    )


def totals(workspace: Workspace, *, now: datetime) -> dict:
    """Events in the last 7 days (the rollup hours that began in them) against the 7 before,
    in one read."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    week_start = hour - timedelta(days=7) + timedelta(hours=1)
    found = EventTypeRollup.objects.filter(
        workspace=workspace, hour__gte=week_start - timedelta(days=7), hour__lte=hour
    ).aggregate(
        this_week=Sum("n", filter=Q(hour__gte=week_start)),
        last_week=Sum("n", filter=Q(hour__lt=week_start)),
    )
    this_week, last_week = found["this_week"] or 0, found["last_week"] or 0
    change = _change(this_week, last_week)
    return {
        "events_7d": this_week,
        "events_prior_7d": last_week,
        "events_change": change,
        "events_change_text": None if change is None else f"{change:+.0%}".replace("%", " %"),
    }


def _change(now_value: int, before: int) -> float | None:
    if not before:
        return None
    return (now_value - before) / before


def guests_daily(workspace: Workspace, *, now: datetime) -> dict:
    """New and returning guests per day (UTC days) over 30 days, and the 7-day figures."""
    today = now.date()
    days = [today - timedelta(days=d) for d in range(29, -1, -1)]
    rows = {
        row["day"]: row
        for row in GuestRollup.objects.filter(workspace=workspace, day__gte=days[0]).values(
            "day", "new_guests", "returning_guests", "identified_guests"
        )
    }
    new = [rows.get(day, {}).get("new_guests", 0) for day in days]
    returning = [rows.get(day, {}).get("returning_guests", 0) for day in days]
    identified = [rows.get(day, {}).get("identified_guests", 0) for day in days]
    active_7d = sum(new[-7:]) + sum(returning[-7:])
    share = (sum(identified[-7:]) / active_7d) if active_7d else None
    return {
        "new_7d": sum(new[-7:]),
        "returning_7d": sum(returning[-7:]),
        "active_per_day_7d": round(active_7d / 7),
        "identified_share": share,
        "identified_text": percent(share) if share is not None else "–",
        "chart": {
            "type": "bar",
            "data": {
                "labels": [day.strftime("%a %d %b") for day in days],
                "datasets": [
                    {"label": "New", "data": new, "stack": "guests", "color": "#1a7f37"},
                    {"label": "Returning", "data": returning, "stack": "guests"},
                ],
            },
            "options": {
                "scales": {
                    "x": {"stacked": True, "ticks": {"maxTicksLimit": 10}},
                    "y": {"stacked": True, "beginAtZero": True},
                },
                "plugins": {"legend": {"position": "bottom"}},
            },
        },
    }


def failures(workspace: Workspace, *, now: datetime, user) -> dict:
    """The share of messages refused over the last 7 days and the commonest reasons."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=7, hours=-1)
    by_code = list(
        FailedEventRollup.objects.filter(workspace=workspace, hour__gte=start)
        .values("code")
        .annotate(total=Sum("n"))
        .order_by("-total", "code")
    )
    failed = sum(row["total"] for row in by_code)
    stored = _events_between(workspace, start, now + timedelta(hours=1))
    link = None
    if user.has_perm("tracking.view_failedevent"):
        link = reverse("admin:tracking_failedevent_changelist")
    rate = failed / (failed + stored) if failed + stored else None
    return {
        "failed_7d": failed,
        "rate": rate,
        "rate_text": percent(rate, digits=2) if rate is not None else "–",
        "top": [
            {
                "code": row["code"],
                "label": row["code"].replace("_", " ").capitalize(),
                "total": row["total"],
                "share": percent(row["total"] / failed),
            }
            for row in by_code[:5]
        ],
        "link": link,
    }


def pipeline_health(workspace: Workspace, *, now: datetime) -> dict:
    """Requests waiting for processing, the oldest one's age, and how long recent requests
    took from arrival to being stored (the median of the last ``LAG_SAMPLE``)."""
    mine = InboxRequest.objects.filter(source__workspace=workspace)
    pending = mine.filter(status=InboxRequest.Status.PENDING)
    oldest = pending.order_by("id").values_list("received_at", flat=True).first()
    backlog = pending.count() if oldest is not None else 0
    recent = list(
        mine.filter(status=InboxRequest.Status.DONE, processed_at__isnull=False)
        .order_by("-id")
        .annotate(lag=F("processed_at") - F("received_at"))
        .values_list("lag", "processed_at")[:LAG_SAMPLE]
    )
    lags = [lag.total_seconds() for lag, _ in recent if lag is not None]
    lag = median(lags) if lags else None
    oldest_age = (now - oldest).total_seconds() if oldest else None
    if oldest_age is not None and oldest_age > 300:
        verdict, tone = "Processing is behind: requests have waited over five minutes.", "bad"
    elif lag is not None and lag > 60:
        verdict, tone = "Processing is slow: requests take over a minute to be stored.", "warn"
    elif not recent and not backlog:
        verdict, tone = "Nothing has arrived yet.", "info"
    else:
        verdict, tone = "Events are flowing: requests are stored within seconds.", "good"
    return {
        "backlog": backlog,
        "oldest_age": oldest_age,
        "lag": lag,
        "last_processed": recent[0][1] if recent else None,
        "verdict": verdict,
        "tone": tone,
    }


def experience_verdict(kept: dict | None) -> dict:
    """The current leader of a live experience on its primary metric and whether that lead is
    significant, as the experience's own page judges it (``experience_summary``), from what
    beat kept in the cache (``experiences.results_cache``): the home page never computes
    results, and says so while there are none yet."""
    verdict = {
        "leader": None,
        "significant": False,
        "exposed": None,
        "note": "",
        "uplift_text": "",
        "computed_at": None,
    }
    if kept is None:
        verdict["note"] = "computing…"
        return verdict
    summary = kept["summary"]
    verdict["computed_at"] = kept["computed_at"]
    verdict["exposed"] = summary["exposed"]
    verdict["leader"] = summary["leader"]
    verdict["significant"] = summary["significant"]
    uplift = summary["uplift"]
    if summary["leader"] and isinstance(uplift, int | float) and uplift > 0:
        verdict["uplift_text"] = f"+{percent(uplift, digits=1)} vs control"
    if not summary["exposed"]:
        verdict["note"] = "nobody exposed yet"
    elif summary["sampleRatioMismatch"]:
        verdict["note"] = "sample-ratio mismatch"
    elif summary["leader"] is None:
        verdict["note"] = "no data on the goal yet"
    return verdict


def live_experiences(workspace: Workspace) -> list[dict]:
    live = list(
        Experience.objects.filter(workspace=workspace, status=Experience.Status.LIVE)
        .prefetch_related("variants", "metrics")
        .order_by("name")[:10]
    )
    kept = results_many_cached(live)
    return [
        {
            "experience": experience,
            "url": reverse("admin:experiences_experience_change", args=[experience.pk]),
            **experience_verdict(kept.get(experience.pk)),
        }
        for experience in live
    ]


def biggest_segments(workspace: Workspace, *, now: datetime) -> list[dict]:
    """The largest active segments, with how many guests they gained or lost in 24 hours."""
    segments = list(
        Segment.objects.filter(workspace=workspace, is_active=True).order_by(
            "-member_count", "name"
        )[:8]
    )
    changes = dict(
        SegmentRun.objects.filter(
            segment__in=segments, stale=False, finished_at__gte=now - timedelta(days=1)
        )
        .values("segment")
        .annotate(change=Sum(F("entered") - F("exited")))
        .values_list("segment", "change")
    )
    return [
        {
            "segment": segment,
            "url": reverse("admin:profiles_segment_change", args=[segment.pk]),
            "members": segment.member_count,
            "change": changes.get(segment.pk, 0),
        }
        for segment in segments
    ]


def percent(value: float, *, digits: int = 0) -> str:
    """0.1234 as "12 %" (or "12.34 %" with two digits)."""
    return f"{value * 100:.{digits}f} %"
