"""The front doors' HTTP views: read, authenticate, check, store in the inbox, answer."""

from __future__ import annotations

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from . import services
from .doors import segment
from .doors.http import (
    body_read,
    client_ip,
    cors_allow,
    cors_preflight,
    error_response,
    header_write_key,
    json_response,
    rate_limit_check,
    unavailable_response,
)
from .errors import IngestError
from .models import Source
from .selectors import source_get_by_write_key


def _origin_check(request: HttpRequest, source: Source) -> None:
    origin = request.META.get("HTTP_ORIGIN")
    if origin and not source.origin_allowed(origin):
        raise IngestError(
            "origin_not_allowed", f"origin {origin} may not send to this source", status=403
        )


@csrf_exempt
def segment_door(request: HttpRequest, route: str) -> HttpResponse:
    """``POST /v1/<route>``: one Segment-spec message, or a batch of them."""
    if request.method == "OPTIONS":
        return cors_preflight(request, methods="POST, OPTIONS")
    if request.method != "POST":
        return cors_allow(
            json_response(
                {"code": "method_not_allowed", "message": "use POST"}, status=405, Allow="POST"
            ),
            request,
        )
    received_at = timezone.now()
    route = segment.ROUTES[route]
    source = None
    try:
        key = header_write_key(request)
        if key is not None:
            source = source_get_by_write_key(key)
            rate_limit_check(source)
        body = body_read(request, limit=segment.body_limit(route))
        payload = segment.body_parse(body)
        if source is None:
            body_key = payload.get("writeKey") if isinstance(payload, dict) else None
            source = source_get_by_write_key(body_key if isinstance(body_key, str) else None)
            rate_limit_check(source)
        _origin_check(request, source)
        segment.request_check(
            payload,
            route=route,
            workspace_id=source.workspace_id,
            source_id=source.pk,
            door=segment.DOOR,
            received_at=received_at,
            max_future_skew=settings.FOOTPRINT["MAX_FUTURE_SKEW"],
        )
        services.inbox_accept(
            source=source,
            door=segment.DOOR,
            body=body,
            meta={"route": route},
            ip=client_ip(request),
            received_at=received_at,
        )
    except IngestError as error:
        return cors_allow(error_response(error), request, allowed=error.status != 403)
    except (OperationalError, InterfaceError):
        return cors_allow(unavailable_response(), request)
    return cors_allow(json_response({"success": True}), request)


@csrf_exempt
def segment_settings(request: HttpRequest, write_key: str) -> HttpResponse:
    """``GET /v1/projects/<writeKey>/settings``: the document analytics.js loads at start-up."""
    if request.method == "OPTIONS":
        return cors_preflight(request, methods="GET, OPTIONS")
    try:
        source = source_get_by_write_key(write_key)
        _origin_check(request, source)
    except IngestError as error:
        return cors_allow(error_response(error), request, allowed=error.status != 403)
    except (OperationalError, InterfaceError):
        return cors_allow(unavailable_response(), request)
    document = {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": f"{request.get_host()}/v1",
                "protocol": request.scheme,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0.0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
    return cors_allow(json_response(document), request)


def healthz(request: HttpRequest) -> HttpResponse:
    return json_response({"status": "ok"})
