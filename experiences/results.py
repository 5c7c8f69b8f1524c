"""Experiment results: every metric per variant, over time, judged in ``stats``.

Exposures are the stored TRACKING events of the experience (whoever stored them: the request
or a worker): a guest is exposed to a variant from their first successful flow execution of
it. For each metric one query sums, per variant and UTC day, what changed that day: guests
newly exposed (with their pre-exposure value, CUPED's covariate) and the metric's events
after exposure within the window. Running those sums day by day gives the cumulative series;
the last day is the result. No per-guest loop runs in Python.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.db import connection
from django.utils import timezone

from config.lib.db import day_of, json_text, within_days, within_days_before
from profiles.segment_sql import Compiler
from tracking.models import Event

from .models import Experience, Metric, Variant
from .stats import (
    ALPHA,
    Comparison,
    Sample,
    compare,
    p_values_adjust,
    sample_ratio_check,
    sequential,
)

CUPED_DAYS = 14
# Exposures this long after going live before the first one count as a late start.
LATE_START = timedelta(hours=24)


def _exposures_cte(experience: Experience) -> tuple[str, list]:
    """``x(variant_ref, guest_id, first_at)``: each exposed guest's first exposure."""
    variant = json_text("t.properties", "arbitraryData", "flowExecution", "flowVariantRef")
    status = json_text("t.properties", "arbitraryData", "flowExecution", "status")
    events = connection.ops.quote_name(Event._meta.db_table)
    sql = f"""
        x AS (
            SELECT {variant} AS variant_ref, t.guest_id, MIN(t.timestamp) AS first_at
            FROM {events} t
            WHERE t.workspace_id = %s AND t.type = 'TRACKING' AND t.name = %s
              AND COALESCE({status}, 'SUCCESS') = 'SUCCESS' AND t.guest_id IS NOT NULL
            GROUP BY 1, 2
        )"""
    return sql, [experience.workspace_id, experience.friendly_id]


def exposure_rows(experience: Experience, before: datetime | None) -> list[tuple]:
    """``(variant_ref, day, newly exposed, of them before ``before``)`` in one query."""
    cte, params = _exposures_cte(experience)
    day = day_of("x.first_at")
    sql = f"""
        WITH {cte}
        SELECT x.variant_ref, {day}, COUNT(*),
               SUM(CASE WHEN x.first_at < %s THEN 1 ELSE 0 END), MIN(x.first_at)
        FROM x GROUP BY x.variant_ref, {day}
    """
    with connection.cursor() as cursor:
        moment = before or datetime(1, 1, 1, tzinfo=UTC)
        cursor.execute(sql, [*params, connection.ops.adapt_datetimefield_value(moment)])
        return list(cursor)


def metric_rows(experience: Experience, metric: Metric) -> list[tuple]:
    """Per variant and day: ``(variant_ref, day, Δn, Δsum, Δsum², Δpre, Δpre², Δsum×pre)``.

    A guest enters ``n`` (and the covariate sums) on the day of first exposure; the metric's
    value grows on the days its events happen. With a guest's running value ``v`` going up by
    ``δ``, ``Σx²`` grows by ``v² - (v - δ)²`` and ``Σxy`` by ``δ·y``, so the sums stay exact.
    """
    cte, params = _exposures_cte(experience)
    events = connection.ops.quote_name(Event._meta.db_table)
    compiler = Compiler(workspace_id=experience.workspace_id, now=None)
    # By guest only: a guest belongs to one workspace, and this way the only index to use is
    # the guest's events by time, one short range per exposed guest.
    match: list[str] = ["e.name = %s"]
    match_p: list = [metric.event]
    if metric.condition:
        compiled = compiler.value_condition(
            "e.properties",
            metric.condition["property"],
            metric.condition["op"],
            metric.condition["value"],
        )
        match.append(compiled.sql)
        match_p += compiled.params
    value_p: list = []
    if metric.kind == Metric.Kind.SUM:
        number = compiler.number("e.properties", metric.property)
        match.append(f"{number.sql} IS NOT NULL")
        match_p += number.params
        value, value_p = f"SUM({number.sql})", number.params
    elif metric.kind == Metric.Kind.COUNT:
        value = "COUNT(*)"
    else:
        value = "1"

    def where(guests: str) -> str:
        """The metric's events of the guest in ``guests``' row."""
        return " AND ".join([f"e.guest_id = {guests}.guest_id", *match])

    day = day_of("e.timestamp")
    # Each guest's pre-exposure value, looked up per guest (an index range on the guest's
    # events), so no two derived tables are ever joined to each other.
    pre_window = f"e.timestamp < x.first_at AND {within_days_before('e.timestamp', 'x.first_at')}"
    if metric.kind == Metric.Kind.CONVERSION:
        pre = (
            f"CASE WHEN EXISTS (SELECT 1 FROM {events} e WHERE {where('x')} AND {pre_window}) "
            "THEN 1 ELSE 0 END"
        )
        pre_p = [*match_p, CUPED_DAYS]
    else:
        pre = f"COALESCE((SELECT {value} FROM {events} e WHERE {where('x')} AND {pre_window}), 0)"
        pre_p = [*value_p, *match_p, CUPED_DAYS]
    after = f"e.timestamp > xp.first_at AND {within_days('e.timestamp', 'xp.first_at')}"
    on = where("xp")
    if metric.kind == Metric.Kind.CONVERSION:
        # A conversion happens once: on the day of the guest's first matching event.
        hit = f"""
            SELECT xp.variant_ref, xp.guest_id, xp.pre, MIN({day}) AS day, 1 AS delta
            FROM xp JOIN {events} e ON {on}
            WHERE {after}
            GROUP BY xp.variant_ref, xp.guest_id, xp.pre"""
        hit_p = [*match_p, metric.window_days]
    else:
        hit = f"""
            SELECT xp.variant_ref, xp.guest_id, xp.pre, {day} AS day, {value} AS delta
            FROM xp JOIN {events} e ON {on}
            WHERE {after}
            GROUP BY xp.variant_ref, xp.guest_id, xp.pre, {day}"""
        hit_p = [*value_p, *match_p, metric.window_days]
    sql = f"""
        WITH {cte},
        xp AS (SELECT x.variant_ref, x.guest_id, x.first_at, {pre} AS pre FROM x),
        hit AS ({hit}),
        steps AS (
            SELECT variant_ref, day, delta, pre,
                   SUM(delta) OVER (PARTITION BY variant_ref, guest_id ORDER BY day) AS cum
            FROM hit
        )
        SELECT variant_ref, day, 0, SUM(delta), SUM(cum * cum - (cum - delta) * (cum - delta)),
               0, 0, SUM(delta * pre)
        FROM steps GROUP BY variant_ref, day
        UNION ALL
        SELECT variant_ref, {day_of("first_at")}, COUNT(*), 0, 0, SUM(pre), SUM(pre * pre), 0
        FROM xp GROUP BY variant_ref, {day_of("first_at")}
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *pre_p, *hit_p])
        return list(cursor)


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


@dataclass
class Running:
    """A variant's sums so far."""

    n: int = 0
    sum: float = 0.0
    sum_squares: float = 0.0
    pre_sum: float = 0.0
    pre_sum_squares: float = 0.0
    sum_products: float = 0.0

    def add(self, row) -> None:
        self.n += int(row[0] or 0)
        self.sum += float(row[1] or 0)
        self.sum_squares += float(row[2] or 0)
        self.pre_sum += float(row[3] or 0)
        self.pre_sum_squares += float(row[4] or 0)
        self.sum_products += float(row[5] or 0)

    def sample(self, binary: bool) -> Sample:
        return Sample(
            n=self.n,
            sum=self.sum,
            sum_squares=self.sum_squares,
            binary=binary,
            pre_sum=self.pre_sum,
            pre_sum_squares=self.pre_sum_squares,
            sum_products=self.sum_products,
        )


def cumulative(rows, refs: list[str], binary: bool) -> list[tuple[date, dict[str, Sample]]]:
    """Each day's cumulative ``Sample`` per variant, from the per-day changes."""
    changes: dict[date, list] = defaultdict(list)
    for ref, day, *sums in rows:
        changes[_day(day)].append((ref, sums))
    running = {ref: Running() for ref in refs}
    series = []
    for day in sorted(changes):
        for ref, sums in changes[day]:
            if ref in running:
                running[ref].add(sums)
        series.append((day, {ref: r.sample(binary) for ref, r in running.items()}))
    return series


@dataclass
class Context:
    experience: Experience
    variants: list[Variant]
    control: Variant | None
    metrics: list[Metric] = field(default_factory=list)

    @property
    def refs(self) -> list[str]:
        return [str(v.ref) for v in self.variants]


def _context(experience: Experience) -> Context:
    variants = list(experience.variants.all())
    control = next((v for v in variants if v.is_control), variants[0] if variants else None)
    order = {Metric.Role.PRIMARY: 0, Metric.Role.SECONDARY: 1, Metric.Role.GUARDRAIL: 2}
    metrics = sorted(experience.metrics.all(), key=lambda m: order.get(m.role, 3))
    return Context(experience, variants, control, metrics)


def _comparison(ctx: Context, samples: dict[str, Sample], variant: Variant) -> Comparison:
    return compare(
        samples[str(ctx.control.ref)],
        samples[str(variant.ref)],
        alpha=ALPHA,
        sequential_testing=ctx.experience.sequential_testing,
        cuped=ctx.experience.cuped,
    )


def _guardrail(metric: Metric, versus: Comparison) -> str:
    """``breached``, ``safe`` or ``pending`` for one variant against a guardrail's threshold."""
    if versus.uplift is None:
        return "pending"
    threshold = (metric.guardrail_threshold or 0) / 100
    sign = -1 if metric.guardrail_direction == Metric.Direction.MUST_NOT_RISE else 1
    # In the guardrail's own terms: a positive change is the good side.
    low = min(sign * versus.uplift_low, sign * versus.uplift_high)
    high = max(sign * versus.uplift_low, sign * versus.uplift_high)
    if high < 0 and sign * versus.uplift < -threshold:
        return "breached"
    if low > -threshold:
        return "safe"
    return "pending"


def _guests_for_guardrail(metric: Metric, versus: Comparison, n_total: int) -> int | None:
    """Guests (both arms) at which the interval would clear the guardrail's threshold if the
    estimate and the per-guest variance stay as they are; ``None`` if it never would."""
    threshold = (metric.guardrail_threshold or 0) / 100
    sign = -1 if metric.guardrail_direction == Metric.Direction.MUST_NOT_RISE else 1
    margin = sign * versus.uplift + threshold
    if margin <= 0 or not versus.variance or n_total <= 0:
        return None
    per_guest = versus.variance * n_total
    for factor in (1.25, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 100):
        n = int(n_total * factor)
        if versus.sequential:
            low, high, _ = sequential(versus.uplift, per_guest / n, n)
            half = (high - low) / 2
        else:
            half = 1.96 * math.sqrt(per_guest / n)
        if half < margin:
            return n
    return None


def experience_results(experience: Experience, *, daily: bool = False) -> dict:
    """Every metric per variant against control, the checks, the verdict (and daily series)."""
    ctx = _context(experience)
    live_since = experience.live_since or experience.starts_at
    exposure = _exposures(ctx, live_since)
    metrics = [_metric_results(ctx, metric, daily=daily) for metric in ctx.metrics]
    _correct(ctx, metrics)
    result = {
        "friendlyId": experience.friendly_id,
        "name": experience.name,
        "status": experience.status,
        "method": method_of(experience),
        "variants": exposure["variants"],
        "exposed": exposure["total"],
        "sampleRatio": exposure["sampleRatio"],
        "start": exposure["start"],
        "metrics": metrics,
        "verdict": verdict(ctx, exposure, metrics),
    }
    if daily:
        result["exposuresDaily"] = exposure["daily"]
    return result


def method_of(experience: Experience) -> dict:
    return {
        "alpha": ALPHA,
        "test": "Welch t-test on the relative uplift (delta method)",
        "sequential": experience.sequential_testing,
        "sequentialMethod": (
            "asymptotic confidence sequences (Waudby-Smith et al.; GrowthBook's), "
            "tuned for 5,000 guests: safe to look at any time"
            if experience.sequential_testing
            else "fixed horizon: decide the sample size first and look once"
        ),
        "cuped": experience.cuped,
        "cupedWindowDays": CUPED_DAYS,
        "correction": experience.correction,
        "correctionName": experience.get_correction_display(),
        "bayesian": "flat prior, normal posterior of the relative uplift",
    }


def _exposures(ctx: Context, live_since: datetime | None) -> dict:
    rows = exposure_rows(ctx.experience, live_since)
    by_ref: dict[str, int] = defaultdict(int)
    early = 0
    first_at = None
    per_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for ref, day, count, before, first in rows:
        by_ref[ref] += count
        early += int(before or 0)
        per_day[_day(day)][ref] += count
        first = _moment(first)
        first_at = first if first_at is None or first < first_at else first_at
    refs = ctx.refs
    variants = [
        {
            "ref": str(v.ref),
            "name": v.name,
            "isControl": v is ctx.control,
            "weight": v.weight,
            "exposed": by_ref.get(str(v.ref), 0),
        }
        for v in ctx.variants
    ]
    ratio = sample_ratio_check([v["exposed"] for v in variants], [v["weight"] for v in variants])
    totals = dict.fromkeys(refs, 0)
    series = []
    for day in sorted(per_day):
        for ref in refs:
            totals[ref] += per_day[day].get(ref, 0)
        series.append(
            {
                "date": day.isoformat(),
                "variants": [
                    {"ref": ref, "new": per_day[day].get(ref, 0), "exposed": totals[ref]}
                    for ref in refs
                ],
            }
        )
    return {
        "total": sum(v["exposed"] for v in variants),
        "variants": variants,
        "sampleRatio": {
            "chiSquare": ratio.chi_square,
            "pValue": ratio.p_value,
            "mismatch": ratio.mismatch,
        },
        "start": _start_check(live_since, first_at, early),
        "daily": series,
    }


def _moment(value) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _start_check(live_since, first_at, early: int) -> dict:
    """Did exposures begin when the experience went live (not before, not much later)?"""
    check = {
        "liveSince": live_since,
        "firstExposureAt": first_at,
        "exposedBeforeLive": early,
        "ok": True,
        "message": "",
    }
    if live_since is None or first_at is None:
        return check
    if early:
        check["ok"] = False
        check["message"] = (
            f"{early} guest(s) were exposed before it went live "
            f"({live_since:%Y-%m-%d %H:%M} UTC): test traffic, or a cached page serving it."
        )
    elif first_at - live_since > LATE_START:
        hours = (first_at - live_since).total_seconds() / 3600
        check["ok"] = False
        check["message"] = (
            f"the first exposure came {hours:.0f} hours after it went live: check that the "
            "site calls it."
        )
    return check


def _metric_results(ctx: Context, metric: Metric, *, daily: bool) -> dict:
    binary = metric.kind == Metric.Kind.CONVERSION
    series = cumulative(metric_rows(ctx.experience, metric), ctx.refs, binary)
    empty = {ref: Sample(n=0, sum=0, sum_squares=0, binary=binary) for ref in ctx.refs}
    final = series[-1][1] if series else empty
    rows = []
    for variant in ctx.variants:
        sample = final[str(variant.ref)]
        row = {
            "ref": str(variant.ref),
            "name": variant.name,
            "isControl": variant is ctx.control,
            "exposed": sample.n,
            "total": sample.sum,
            "mean": sample.mean,
            "uplift": None,
            "upliftLow": None,
            "upliftHigh": None,
            "difference": None,
            "pValue": None,
            "pValueAdjusted": None,
            "significant": False,
            "chanceToBeatControl": None,
            "expectedLoss": None,
            "cupedApplied": False,
            "guardrail": None,
            "note": "",
        }
        if variant is not ctx.control:
            versus = _comparison(ctx, final, variant)
            row.update(
                uplift=versus.uplift,
                upliftLow=versus.uplift_low,
                upliftHigh=versus.uplift_high,
                difference=versus.difference,
                pValue=versus.p_value,
                chanceToBeatControl=versus.chance_to_beat_control,
                expectedLoss=versus.expected_loss,
                cupedApplied=versus.cuped,
                note=versus.reason,
            )
            if metric.role == Metric.Role.GUARDRAIL:
                row["guardrail"] = _guardrail(metric, versus)
                row["significant"] = row["guardrail"] == "breached"
                needed = (
                    _guests_for_guardrail(metric, versus, final[str(ctx.control.ref)].n + sample.n)
                    if row["guardrail"] == "pending" and versus.uplift is not None
                    else None
                )
                row["guestsNeeded"] = needed
        rows.append(row)
    result = {
        "ref": str(metric.ref),
        "name": metric.label,
        "role": metric.role,
        "kind": metric.kind,
        "event": metric.event,
        "condition": metric.condition,
        "conditionText": condition_text(metric.condition),
        "property": metric.property,
        "windowDays": metric.window_days,
        "guardrailDirection": metric.guardrail_direction or None,
        "guardrailThreshold": metric.guardrail_threshold,
        "variants": rows,
    }
    if daily:
        result["daily"] = [_daily_point(ctx, day, samples) for day, samples in series]
    return result


def _daily_point(ctx: Context, day: date, samples: dict[str, Sample]) -> dict:
    points = []
    for variant in ctx.variants:
        sample = samples[str(variant.ref)]
        point = {"ref": str(variant.ref), "exposed": sample.n, "mean": sample.mean}
        if variant is not ctx.control:
            versus = _comparison(ctx, samples, variant)
            point.update(
                uplift=versus.uplift, upliftLow=versus.uplift_low, upliftHigh=versus.uplift_high
            )
        points.append(point)
    return {"date": day.isoformat(), "variants": points}


def _correct(ctx: Context, metrics: list[dict]) -> None:
    """Adjust the p-values of every variant on the primary and secondary metrics together."""
    family = [
        row
        for metric in metrics
        if metric["role"] != Metric.Role.GUARDRAIL
        for row in metric["variants"]
        if not row["isControl"]
    ]
    adjusted = p_values_adjust([row["pValue"] for row in family], ctx.experience.correction)
    for row, p in zip(family, adjusted, strict=True):
        row["pValueAdjusted"] = p
        row["significant"] = p is not None and p < ALPHA


OPS = {"eq": "=", "neq": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


def condition_text(condition: dict | None) -> str:
    """A property condition in words: ``revenue ≥ 20``, ``plan is one of a, b``."""
    if not condition:
        return ""
    prop, op, value = condition.get("property"), condition.get("op"), condition.get("value")
    if op == "exists":
        return f"{prop} is set" if value else f"{prop} is not set"
    if op == "in":
        return f"{prop} is one of {', '.join(str(v) for v in value)}"
    if op == "contains":
        return f"{prop} contains {value}"
    return f"{prop} {OPS.get(op, op)} {value}"


def percent(value: float | None) -> str:
    """``+191 %``; a relative change in words-friendly form."""
    if value is None:
        return "–"
    digits = 0 if abs(value) >= 0.1 else 1
    return f"{value * 100:+.{digits}f} %".replace("-", "−")


def chance(value: float | None) -> str:
    """``99 %``; never a flat 100 % or 0 % for what is only very likely."""
    if value is None:
        return ""
    if value > 0.995:
        return "> 99 %"
    if value < 0.005:
        return "< 1 %"
    return f"{value * 100:.0f} %"


def verdict(ctx: Context, exposure: dict, metrics: list[dict]) -> dict:
    """The page's headline in plain words, and how it should look (good, bad, warn, info)."""
    if not exposure["total"]:
        return {"kind": "waiting", "tone": "info", "headline": "No exposures yet.", "detail": ""}
    if exposure["sampleRatio"]["mismatch"]:
        ratio = exposure["sampleRatio"]
        split = ", ".join(f"{v['name']} {v['exposed']:,}" for v in exposure["variants"])
        return {
            "kind": "srm",
            "tone": "bad",
            "headline": "Sample-ratio mismatch: do not trust these numbers yet.",
            "detail": (
                f"The guests exposed ({split}) do not follow the weights "
                f"(chi-square p = {ratio['pValue']:.2g}): something assigns or records "
                "variants unevenly. Fix that before reading any result."
            ),
        }
    start = exposure["start"]
    primary = next((m for m in metrics if m["role"] == Metric.Role.PRIMARY), None)
    guardrails = [m for m in metrics if m["role"] == Metric.Role.GUARDRAIL]
    for metric in guardrails:
        for row in metric["variants"]:
            if row.get("guardrail") == "breached":
                return {
                    "kind": "guardrail",
                    "tone": "bad",
                    "headline": (
                        f"{row['name']} hurts {metric['name']}: {percent(row['uplift'])} "
                        f"({percent(row['upliftLow'])} to {percent(row['upliftHigh'])}), past "
                        f"the {metric['guardrailThreshold']:g} % guardrail."
                    ),
                    "detail": "Stop it or fix the variant before shipping it.",
                }
    if primary is None:
        return {
            "kind": "no_metric",
            "tone": "info",
            "headline": f"{exposure['total']:,} guests exposed; no primary metric to judge.",
            "detail": "Add a primary metric to see which variant wins.",
        }
    rows = [r for r in primary["variants"] if not r["isControl"]]
    winners = [r for r in rows if r["significant"] and (r["uplift"] or 0) > 0]
    losers = [r for r in rows if r["significant"] and (r["uplift"] or 0) < 0]
    caveat = "" if start["ok"] else f" Note: {start['message']}"
    control = ctx.control.name if ctx.control else "control"
    if winners:
        best = max(winners, key=lambda r: r["uplift"])
        pending = [m for m in guardrails for r in m["variants"] if r.get("guardrail") == "pending"]
        headline = (
            f"{best['name']} beats {control} on {primary['name']}: {percent(best['uplift'])} "
            f"({percent(best['upliftLow'])} to {percent(best['upliftHigh'])}), "
            f"{chance(best['chanceToBeatControl'])} chance to win"
        )
        if pending:
            headline += f"; keep it running {_until(ctx, exposure, guardrails)} for the guardrails"
        elif guardrails:
            headline += "; the guardrails are clear"
        return {
            "kind": "winner",
            "tone": "good",
            "headline": headline + ".",
            "detail": caveat.strip(),
            "leader": best["name"],
        }
    if losers:
        worst = min(losers, key=lambda r: r["uplift"])
        return {
            "kind": "loser",
            "tone": "bad",
            "headline": (
                f"{worst['name']} does worse than {control} on {primary['name']}: "
                f"{percent(worst['uplift'])} ({percent(worst['upliftLow'])} to "
                f"{percent(worst['upliftHigh'])})."
            ),
            "detail": caveat.strip(),
            "leader": control,
        }
    ahead = max(
        (r for r in rows if r["chanceToBeatControl"] is not None),
        key=lambda r: r["chanceToBeatControl"],
        default=None,
    )
    lead = (
        f" {ahead['name']} is at {percent(ahead['uplift'])} with a "
        f"{chance(ahead['chanceToBeatControl'])} chance to beat {control}, not yet conclusive."
        if ahead
        else ""
    )
    return {
        "kind": "no_difference",
        "tone": "warn" if not start["ok"] else "info",
        "headline": f"No difference yet on {primary['name']}.{lead}",
        "detail": ("Keep it running: the results are safe to check every day." + caveat)
        if ctx.experience.sequential_testing
        else "Keep it running to the planned sample size before reading it." + caveat,
    }


def _until(ctx: Context, exposure: dict, guardrails: list[dict]) -> str:
    """``until about 14 December`` from the guests the guardrails still need at today's pace."""
    needed = [
        r.get("guestsNeeded") for m in guardrails for r in m["variants"] if r.get("guardrail")
    ]
    needed = [n for n in needed if n]
    first = exposure["start"]["firstExposureAt"]
    if not needed or first is None:
        return "a while longer"
    days = max((timezone.now() - first).total_seconds() / 86400, 1)
    pace = exposure["total"] / days
    extra = max(0, max(needed) - exposure["total"]) / pace if pace else None
    if extra is None:
        return "a while longer"
    when = timezone.now() + timedelta(days=math.ceil(extra))
    return f"until about {when:%-d %B}"


def experience_summary(experience: Experience) -> dict:
    """For lists and dashboards: exposures, leader and significance on the primary metric.

    Two queries (exposures, the primary metric), whatever the traffic. ``leader`` is the
    variant ahead on the primary metric (``None`` without data); ``significant`` whether that
    lead is significant after correction; ``verdict`` the page's headline kind.
    """
    ctx = _context(experience)
    ctx.metrics = [m for m in ctx.metrics if m.role == Metric.Role.PRIMARY][:1]
    exposure = _exposures(ctx, experience.live_since or experience.starts_at)
    metrics = [_metric_results(ctx, m, daily=False) for m in ctx.metrics]
    _correct(ctx, metrics)
    judged = verdict(ctx, exposure, metrics)
    leader, significant, uplift, chance = None, False, None, None
    if metrics:
        rows = [r for r in metrics[0]["variants"] if not r["isControl"]]
        best = max(
            (r for r in rows if r["uplift"] is not None), key=lambda r: r["uplift"], default=None
        )
        if best is not None:
            ahead = best["uplift"] > 0
            leader = best["name"] if ahead else (ctx.control.name if ctx.control else None)
            significant = best["significant"] if ahead else any(r["significant"] for r in rows)
            uplift, chance = best["uplift"], best["chanceToBeatControl"]
    return {
        "friendlyId": experience.friendly_id,
        "status": experience.status,
        "exposed": exposure["total"],
        "leader": leader,
        "significant": significant,
        "uplift": uplift,
        "chanceToBeatControl": chance,
        "sampleRatioMismatch": exposure["sampleRatio"]["mismatch"],
        "verdict": judged["kind"],
        "headline": judged["headline"],
    }
