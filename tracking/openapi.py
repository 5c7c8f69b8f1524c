"""The ingestion doors in the OpenAPI schema.

The doors are plain Django views (they speak other vendors' wire formats, not DRF), so
drf-spectacular cannot see them; this post-processing hook describes them in the same schema.
"""

from __future__ import annotations

from .channels import ALIASES, CHANNELS
from .doors import collect, optimizely, stream

TAG = "Ingestion doors"


def _object(properties: dict, required: tuple = ()) -> dict:
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _query(name: str, description: str, *, required: bool = False, **schema) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


ERROR = {
    "description": "Refused; the body names the field at fault.",
    "content": {
        "application/json": {
            "schema": _object(
                {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                }
            )
        }
    },
}
STRING = {"type": "string"}
OBJECT = {"type": "object", "additionalProperties": True}

TRACK_EVENT = _object(
    {
        "DeviceId": STRING,
        "EventType": {"type": "string", "description": "Becomes the event's name."},
        "Value": STRING,
        "EventTime": {"type": "string", "format": "date-time"},
        "Scope": STRING,
        "TrackId": {
            "type": "string",
            "description": f"Trimmed to {optimizely.TRACK_ID_LENGTH} characters; a repeat "
            "from the same source and Scope within 72 hours is skipped.",
        },
        "SessionId": STRING,
        "PageUri": STRING,
        "PageTitle": STRING,
        "RemoteAddress": {"type": "string", "description": "Overrides Epi-User-IP-Address."},
        "CountryCode": STRING,
        "User": _object({"Name": STRING, "Email": STRING, "Info": OBJECT}),
        "Payload": OBJECT,
    },
    required=("DeviceId", "EventType", "Value"),
)
STREAM_MESSAGE = _object(
    {
        "channel": {
            "type": "string",
            "example": "WEB",
            "pattern": stream.CHANNEL_RE.pattern,
            "description": f"Upper case: one of {', '.join(CHANNELS)}, or the business's own "
            "name. Other doors' words are accepted and stored as these names: "
            + ", ".join(f"{word.upper()} as {name}" for word, name in ALIASES.items())
            + ".",
        },
        "type": {
            "type": "string",
            "description": "One of these or a custom upper-case name.",
            "example": "VIEW",
            "enum": list(stream.STANDARD_TYPES),
        },
        "browser_id": STRING,
        "language": STRING,
        "currency": STRING,
        "page": STRING,
        "pos": STRING,
        "ext": OBJECT,
        "email": STRING,
        "firstname": STRING,
        "lastname": STRING,
        "identifiers": {
            "type": "array",
            "items": _object({"provider": STRING, "id": STRING}),
        },
    },
    required=("type", "channel", "browser_id"),
)
STREAM_OK = {
    "description": "JSON, or JSONP (`callback(...);`) when `callback` is given.",
    "content": {
        "application/json": {
            "schema": _object(
                {
                    "ref": STRING,
                    "status": {"type": "string", "example": "OK"},
                    "version": {"type": "string", "example": stream.VERSION},
                    "client_key": STRING,
                    "customer_ref": STRING,
                    "session_ref": STRING,
                }
            )
        },
        "application/javascript": {"schema": STRING},
    },
}
CLIENT_KEY = _query("client_key", "The workspace's client key.", required=True)
CALLBACK = _query("callback", "A JavaScript function name: the answer is JSONP.")
MESSAGE = _query(
    "message",
    "The Stream message as JSON (or send it as the POST body).",
    type="string",
)
COLLECT_HIT = _object(
    {
        "ea": {"type": "string", "description": "Event action; the event's name."},
        "ec": {"type": "string", "description": "Event category."},
        "sid": STRING,
        "aid": STRING,
        "uid": STRING,
        "context": OBJECT,
        "extra": OBJECT,
        "dims": OBJECT,
        "items": {"type": "array", "items": {}},
    },
    required=("ea", "ec"),
)
COLLECT_PARAMS = [
    _query("portal_id", "The workspace's portal id.", required=True, type="integer"),
    _query("prop_id", "The source's property id.", required=True, type="integer"),
    _query("resp_type", "The answer's form.", type="string", enum=list(collect.RESP_TYPES)),
    _query("redirect_url", "For resp_type=redirect with ea=click; an allowed host only."),
    *(
        _query(name, "An event field (JSON for context, extra, dims, items).")
        for name in collect.EVENT_FIELDS
    ),
]
COLLECT_RESPONSES = {
    "200": {
        "description": "The event's ids: `_event_callback_data({...});` (javascript), the "
        "same object (json) or a 1x1 GIF (pixel).",
        "content": {
            "application/javascript": {"schema": STRING},
            "application/json": {
                "schema": _object(
                    {
                        "type": STRING,
                        "event_id": STRING,
                        "session_id": STRING,
                        "client_id": STRING,
                        "sid": STRING,
                        "uid": STRING,
                        "aid": STRING,
                    }
                )
            },
            "image/gif": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "302": {"description": "resp_type=redirect: to redirect_url."},
    "400": ERROR,
    "404": {
        "description": 'Unknown portal or property: `{"message": "404 not found"}`.',
        "content": {"application/json": {"schema": _object({"message": STRING})}},
    },
}


def _operation(operation_id: str, summary: str, description: str, **rest) -> dict:
    return {
        "operationId": operation_id,
        "tags": [TAG],
        "summary": summary,
        "description": description,
        "security": [],
        **rest,
    }


def doors_paths() -> dict:
    epi_auth = {
        "name": "Authorization",
        "in": "header",
        "required": True,
        "description": "`epi-single <write key>`",
        "schema": STRING,
    }
    ip_header = {
        "name": "Epi-User-IP-Address",
        "in": "header",
        "description": "The visitor's IP for the request's events.",
        "schema": STRING,
    }
    accepted = {
        "description": "Accepted; invalid events of a bulk request are listed in `rejected`.",
        "content": {
            "application/json": {
                "schema": _object(
                    {"accepted": {"type": "integer"}, "rejected": {"type": "array", "items": {}}}
                )
            }
        },
    }
    stream_event = _operation(
        "stream_event_create",
        "Sitecore Stream API: one event",
        "VIEW, IDENTITY (stitches the browser's guest to the known guest), FORCE_CLOSE "
        "(closes the session), … Stored before the answer, which carries its refs.",
        parameters=[CLIENT_KEY, MESSAGE, CALLBACK],
        responses={"200": STREAM_OK, "400": ERROR, "401": ERROR},
    )
    return {
        "/v1.2/browser/create.json": {
            "get": _operation(
                "stream_browser_create",
                "Sitecore Stream API: a new browser",
                "Creates a browser ref and its visitor guest.",
                parameters=[CLIENT_KEY, CALLBACK],
                responses={"200": STREAM_OK, "401": ERROR},
            )
        },
        "/v1.2/event/create.json": {
            "get": stream_event,
            "post": {
                **stream_event,
                "operationId": "stream_event_create_post",
                "requestBody": {"content": {"application/json": {"schema": STREAM_MESSAGE}}},
            },
        },
        "/api/v1.0/Track": {
            "post": _operation(
                "optimizely_track",
                "Optimizely Tracking API: one TrackEvent",
                "Field names in PascalCase or camelCase.",
                parameters=[epi_auth, ip_header],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": TRACK_EVENT}},
                },
                responses={"200": accepted, "400": ERROR, "401": ERROR},
            )
        },
        "/api/v1.0/TrackBulk": {
            "post": _operation(
                "optimizely_track_bulk",
                "Optimizely Tracking API: up to 100 TrackEvents",
                "Each at most 256 KB; an event's RemoteAddress overrides the header IP.",
                parameters=[epi_auth, ip_header],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "maxItems": optimizely.MAX_BULK_EVENTS,
                                "items": TRACK_EVENT,
                            }
                        }
                    },
                },
                responses={"200": accepted, "400": ERROR, "401": ERROR},
            )
        },
        "/collect": {
            method: _operation(
                f"collect_{method}",
                "Event Track API: one hit",
                "Stored before the answer, which carries the event's, session's and guest's ids.",
                parameters=COLLECT_PARAMS,
                responses=COLLECT_RESPONSES,
                **(
                    {"requestBody": {"content": {"application/json": {"schema": COLLECT_HIT}}}}
                    if method == "post"
                    else {}
                ),
            )
            for method in ("get", "post")
        },
    }


def doors_describe(result, generator, request, public):
    """drf-spectacular post-processing hook: add the ingestion doors to the schema."""
    result.setdefault("paths", {}).update(doors_paths())
    tags = result.setdefault("tags", [])
    if not any(tag.get("name") == TAG for tag in tags):
        tags.append({"name": TAG, "description": "Wire formats of other vendors; see the README."})
    return result
