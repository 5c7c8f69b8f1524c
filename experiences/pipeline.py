"""Experiences' step of the processing pipeline (``FOOTPRINT["PIPELINE"]``, tracking.pipeline)."""

from __future__ import annotations

import uuid

from django.db import connection

from config.lib.db import rows_insert_new
from tracking.doors.personalize import DOOR
from tracking.pipeline import Batch

from .models import FlowExecution, Variant


def flow_executions_store(batch: Batch) -> None:
    """Store the flow execution of every exposure (``/v2/callFlows``) in the batch, under the
    ref its answer gave, with the guest and session its TRACKING event was placed in.

    Runs after duplicates are dropped and sessions placed, so an exposure processed twice
    reaches here once; the unique ref makes sure of it.
    """
    flows = [
        (message, message.properties["arbitraryData"]["flowExecution"])
        for message in batch.messages
        if message.door == DOOR and message.type == "TRACKING"
    ]
    if not flows:
        return
    variants = {
        str(ref): (pk, experience_id)
        for ref, pk, experience_id in Variant.objects.filter(
            ref__in={flow["flowVariantRef"] for _, flow in flows}
        ).values_list("ref", "pk", "experience_id")
    }
    ref = FlowExecution._meta.get_field("ref")
    executions = []
    for message, flow in flows:
        found = variants.get(flow["flowVariantRef"])
        if found is None:  # the experience was deleted since: its executions went with it
            continue
        variant_id, experience_id = found
        executions.append(
            (
                ref.get_db_prep_value(uuid.UUID(flow["ref"]), connection),
                experience_id,
                variant_id,
                message.guest_id,
                message.session_id,
                message.properties.get("browserRef") or "",
                message.timestamp,
                flow["flowExecutionTimeMs"],
                flow["status"],
            )
        )
    # One statement with the rows bound as arrays: the ORM's bulk_create of a batch built a
    # model per row and bound every value on its own, a fifth of the whole batch's time.
    rows_insert_new(
        FlowExecution._meta.db_table,
        EXECUTION_COLUMNS,
        EXECUTION_TYPES,
        executions,
        conflict="ref",
        returning="id",
    )


EXECUTION_COLUMNS = [
    "ref",
    "experience_id",
    "variant_id",
    "guest_id",
    "session_id",
    "browser_ref",
    "occurred_at",
    "execution_time_ms",
    "status",
]
EXECUTION_TYPES = [
    "uuid",
    "bigint",
    "bigint",
    "bigint",
    "bigint",
    "text",
    "timestamptz",
    "int",
    "text",
]
