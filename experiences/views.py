"""``POST /v2/callFlows``: run an experience for a guest and answer with the variant's content."""

from __future__ import annotations

import orjson
from django.http import HttpRequest, HttpResponse

from tracking.doors.http import body_read, door_view, json_response
from tracking.errors import IngestError

from .flows import flow_definition_get
from .services import content_render, flow_call

MAX_BODY = 64 * 1024


@door_view("POST", name="callflows")
def call_flows(request: HttpRequest) -> HttpResponse:
    raw = body_read(request, limit=MAX_BODY)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise IngestError("invalid_json", f"the body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise IngestError("invalid_json", "the body must be a JSON object")
    definition = flow_definition_get(
        client_key=body.get("clientKey"), friendly_id=body.get("friendlyId")
    )
    decision = flow_call(definition=definition, body=body, raw=raw)
    variant = decision.variant
    answer = {
        "friendlyId": decision.experience.friendly_id,
        "decision": "EXPOSED" if decision.exposed else "DEFAULT",
        "variant": {"ref": str(variant.ref), "name": variant.name} if variant else None,
        "content": content_render(variant.content, decision.guest) if variant else {},
        "flowExecutionRef": decision.execution_ref,
        "guestRef": str(decision.guest.ref) if decision.guest else None,
        "sessionRef": decision.session_ref,
    }
    return json_response(answer)
