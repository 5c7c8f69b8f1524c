"""Experiences' step of the processing pipeline (``FOOTPRINT["PIPELINE"]``, tracking.pipeline)."""

from __future__ import annotations

import uuid

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
    executions = []
    for message, flow in flows:
        found = variants.get(flow["flowVariantRef"])
        if found is None:  # the experience was deleted since: its executions went with it
            continue
        variant_id, experience_id = found
        executions.append(
            FlowExecution(
                ref=uuid.UUID(flow["ref"]),
                experience_id=experience_id,
                variant_id=variant_id,
                guest_id=message.guest_id,
                session_id=message.session_id,
                browser_ref=message.properties.get("browserRef") or "",
                occurred_at=message.timestamp,
                execution_time_ms=flow["flowExecutionTimeMs"],
                status=flow["status"],
            )
        )
    FlowExecution.objects.bulk_create(executions, ignore_conflicts=True)
