"""The exposures of ``/v2/callFlows`` (Sitecore Personalize, seed 004).

A decision is answered at once; what it leaves behind, one TRACKING event and its flow
execution, is stored by the workers like any other door's messages. The request is written
to the inbox as it arrived, with the decision in its meta: the refs the answer gave (the flow
execution's, the guest's, the session's when the answer opened a new visit) and the rest of
the TRACKING event's ``flowExecution``; the guest's identifier, channel and point of sale are
read from the request again. The event's messageId is ``flow-<flow execution ref>``, so however
often a row is processed the event is stored once; experiences' pipeline step stores the flow
execution from the same message (``FOOTPRINT["PIPELINE"]``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from ..channels import WEB, channel_normalise
from ..errors import IngestError
from ..messages import Message, email_normalize
from .base import DoorSpec, InboxContext, Parsed, Rejected, body_parse

DOOR = "personalize"
# The meta keys every decision carries (see ``exposure_meta``).
DECISION_KEYS = ("ref", "eventRef", "flowExecution", "variant")


def identifier_of(body: dict) -> tuple[str, str]:
    """The one guest identifier a callFlows request carries, as (kind, value)."""
    given = [key for key in ("browserId", "email", "identifiers") if body.get(key)]
    if len(given) != 1:
        raise IngestError(
            "invalid_identifier",
            "give exactly one of browserId, email or identifiers",
            field="browserId",
        )
    key = given[0]
    value = body[key]
    if key == "browserId":
        if not isinstance(value, str) or len(value) > 255:
            raise IngestError("invalid_identifier", "browserId must be a string", field=key)
        return "browser", value
    if key == "email":
        email = email_normalize(value)
        if not email:
            raise IngestError("invalid_identifier", "email is not an email address", field=key)
        return "email", email
    if not isinstance(value, dict) or not all(
        isinstance(value.get(k), str) and value.get(k) for k in ("id", "provider")
    ):
        raise IngestError(
            "invalid_identifier", "identifiers must be {id, provider}", field="identifiers"
        )
    return value["provider"][:64], value["id"][:255]


def channel_of(body: dict) -> str:
    """The request's channel in the doors' one vocabulary (``WEB`` when it names none), so an
    exposure joins the visit it happened in."""
    return channel_normalise(str(body.get("channel") or "")) or WEB


def point_of_sale_of(body: dict) -> str:
    return str(body.get("pointOfSale") or "")[:255]


def exposure_meta(
    *, flow: dict, event_ref: str, variant_name: str, new_session_ref: str | None
) -> dict:
    """The inbox meta of one exposure: the decision, never what identifies the guest (that
    stays in the request, whose body is emptied once it is processed). ``flow`` is the
    TRACKING event's ``flowExecution`` (its ``ref`` the flow execution's); ``new_session_ref``
    the ref the answer gave a visit that did not exist yet."""
    meta = {
        "ref": flow["ref"],
        "eventRef": event_ref,
        "flowExecution": flow,
        "variant": variant_name,
    }
    if new_session_ref:
        meta["sessionRef"] = new_session_ref
    return meta


def message_of(ctx: InboxContext) -> Message:
    """The TRACKING event of one exposure, in seed 004's shape."""
    meta = ctx.meta
    missing = [key for key in DECISION_KEYS if key not in meta]
    if missing:
        raise IngestError("invalid_exposure", f"the exposure lacks {', '.join(missing)}")
    body = body_parse(ctx.body)
    if not isinstance(body, dict):
        raise IngestError("invalid_json", "the body must be a JSON object")
    kind, value = identifier_of(body)
    channel, point_of_sale = channel_of(body), point_of_sale_of(body)
    flow = meta["flowExecution"]
    occurred_at = datetime.fromtimestamp(flow["occurredAt"] / 1000, tz=UTC)
    return Message(
        workspace_id=ctx.workspace_id,
        source_id=ctx.source_id,
        door=DOOR,
        type="TRACKING",
        name=flow["flowFriendlyId"],
        message_id=f"flow-{flow['ref']}",
        timestamp=occurred_at,
        received_at=ctx.received_at,
        channel=channel,
        properties={
            "ref": meta["eventRef"],
            "variant": meta["variant"],
            "pointOfSale": point_of_sale,
            "browserRef": value if kind == "browser" else None,
            "flowExecutionRef": flow["ref"],
            "arbitraryData": {
                "flowExecution": flow,
                "_bx_arbitraryDataV3ga": {
                    "core": {"pointOfSale": point_of_sale, "channel": channel},
                    "bxt": {"flowExecution": dict(flow), "category": "EXECUTED"},
                },
            },
        },
        identifiers=[(kind, value)],
        session_ref=meta.get("sessionRef", ""),
    )


def inbox_parse(ctx: InboxContext) -> Parsed:
    try:
        return [message_of(ctx)], []
    except IngestError as error:
        return [], [Rejected(error=error, payload=_failed_payload(ctx))]
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        refusal = IngestError("invalid_exposure", f"the exposure is unreadable: {error}")
        return [], [Rejected(error=refusal, payload=_failed_payload(ctx))]


def _failed_payload(ctx: InboxContext) -> dict:
    """A refused exposure as its failed event keeps it: the decision and the request."""
    try:
        request = orjson.loads(ctx.body)
    except orjson.JSONDecodeError:
        request = None
    return {"decision": {k: v for k, v in ctx.meta.items() if k != "replay"}, "request": request}


def replay_requests(payloads: list[dict]) -> list[tuple[bytes, dict]]:
    """One inbox request per refused exposure, its decision as the meta again."""
    return [
        (orjson.dumps(payload.get("request")), {**(payload.get("decision") or {}), "replay": True})
        for payload in payloads
    ]


SPEC = DoorSpec(key=DOOR, parse=inbox_parse, replay_requests=replay_requests)
