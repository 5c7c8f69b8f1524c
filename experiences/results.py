"""Experiment results: exposures and conversions per variant in one query, judged in ``stats``.

A guest is exposed to a variant from their first flow execution of it (merged guests count as
their survivor). They converted if they have a goal event after that first exposure and within
the goal window (and, when the goal has one, matching its property condition).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.db import connection

from config.lib.db import within_days
from profiles.models import Guest
from profiles.segment_sql import Compiler
from tracking.models import Event

from .models import Experience, FlowExecution
from .stats import Sample, compare, sample_ratio_check


def rate(converted: int, exposed: int) -> float:
    return converted / exposed if exposed else 0.0


@dataclass
class VariantResult:
    ref: str
    name: str
    is_control: bool
    weight: int
    exposed: int
    converted: int
    conversion_rate: float
    uplift: float | None = None
    uplift_low: float | None = None
    uplift_high: float | None = None
    difference: float | None = None
    p_value: float | None = None
    chance_to_beat_control: float | None = None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def counts(experience: Experience) -> dict[int, tuple[int, int]]:
    """``variant id -> (exposed guests, converted guests)``, in one query."""
    quote = connection.ops.quote_name
    flows, guests, events = (
        quote(FlowExecution._meta.db_table),
        quote(Guest._meta.db_table),
        quote(Event._meta.db_table),
    )
    params: list = [experience.pk]
    goal = "FALSE"
    if experience.goal_event:
        window = within_days("e.timestamp", "x.first_at")
        conditions = [
            "e.guest_id = x.guest_id",
            "e.workspace_id = %s",
            "e.name = %s",
            "e.timestamp > x.first_at",
            window,
        ]
        goal_params: list = [
            experience.workspace_id,
            experience.goal_event,
            experience.goal_window_days,
        ]
        condition = experience.goal_condition
        if condition:
            compiled = Compiler(workspace_id=experience.workspace_id, now=None).value_condition(
                "e.properties", condition["property"], condition["op"], condition["value"]
            )
            conditions.append(compiled.sql)
            goal_params += compiled.params
        goal = f"EXISTS (SELECT 1 FROM {events} e WHERE {' AND '.join(conditions)})"  # noqa: S608
        params = [experience.pk, *goal_params]
    sql = f"""
        WITH x AS (
            SELECT f.variant_id, COALESCE(g.merged_into_id, g.id) AS guest_id,
                   MIN(f.occurred_at) AS first_at
            FROM {flows} f JOIN {guests} g ON g.id = f.guest_id
            WHERE f.experience_id = %s AND f.status = 'SUCCESS'
            GROUP BY f.variant_id, COALESCE(g.merged_into_id, g.id)
        )
        SELECT x.variant_id, COUNT(*), SUM(CASE WHEN {goal} THEN 1 ELSE 0 END)
        FROM x GROUP BY x.variant_id
    """  # noqa: S608 - our own table names; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {variant_id: (exposed, converted or 0) for variant_id, exposed, converted in cursor}


def experience_results(experience: Experience) -> dict:
    """Per-variant results against control, and the sample-ratio check."""
    variants = list(experience.variants.all())
    found = counts(experience)
    control = next((v for v in variants if v.is_control), variants[0] if variants else None)
    c_exposed, c_converted = found.get(control.pk, (0, 0)) if control else (0, 0)
    rows = []
    for variant in variants:
        exposed, converted = found.get(variant.pk, (0, 0))
        row = VariantResult(
            ref=str(variant.ref),
            name=variant.name,
            is_control=variant is control,
            weight=variant.weight,
            exposed=exposed,
            converted=converted,
            conversion_rate=rate(converted, exposed),
        )
        if variant is not control:
            versus = compare(
                Sample(n=c_exposed, sum=c_converted, sum_squares=c_converted, binary=True),
                Sample(n=exposed, sum=converted, sum_squares=converted, binary=True),
            )
            row.uplift, row.uplift_low, row.uplift_high = (
                versus.uplift,
                versus.uplift_low,
                versus.uplift_high,
            )
            row.difference = versus.difference
            row.p_value = versus.p_value
            row.chance_to_beat_control = versus.chance_to_beat_control
        rows.append(row)
    ratio = sample_ratio_check([r.exposed for r in rows], [r.weight for r in rows])
    return {
        "friendlyId": experience.friendly_id,
        "goal": {
            "event": experience.goal_event,
            "condition": experience.goal_condition,
            "windowDays": experience.goal_window_days,
        },
        # The read API speaks camelCase throughout: isControl, pValue, conversionRate, …
        "variants": [{_camel(key): value for key, value in asdict(row).items()} for row in rows],
        "sampleRatio": {
            "chiSquare": ratio.chi_square,
            "pValue": ratio.p_value,
            "mismatch": ratio.mismatch,
        },
    }
