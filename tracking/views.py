"""The front doors' HTTP views: read, authenticate, check, store in the inbox, answer.

What every door answers alike (a preflight, a 405, a refusal in the door's format, a 503 while
the database is away, the CORS headers) is ``doors.http.door_view``'s business.
"""

from __future__ import annotations

import uuid

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from . import library, services
from .doors import collect, optimizely, segment, stream
from .doors.base import body_parse
from .doors.http import (
    body_read,
    client_ip,
    cors_allow,
    door_error,
    door_view,
    header_write_key,
    json_response,
    rate_limit_check,
)
from .errors import IngestError
from .messages import valid_ip
from .models import Source
from .selectors import (
    event_refs,
    source_get_by_portal,
    source_get_by_write_key,
    workspace_get_by_client_key,
)


def _origin_check(request: HttpRequest, source: Source) -> None:
    origin = request.META.get("HTTP_ORIGIN")
    if origin and not source.origin_allowed(origin):
        raise IngestError(
            "origin_not_allowed", f"origin {origin} may not send to this source", status=403
        )


@door_view("POST", name="segment")
def segment_door(request: HttpRequest, route: str) -> HttpResponse:
    """``POST /v1/<route>``: one Segment-spec message, or a batch of them."""
    received_at = timezone.now()
    route = segment.ROUTES[route]
    source = None
    key = header_write_key(request)
    if key is not None:
        source = source_get_by_write_key(key)
        rate_limit_check(source)
    body = body_read(request, limit=segment.body_limit(route))
    payload = body_parse(body)
    if source is None:
        body_key = payload.get("writeKey") if isinstance(payload, dict) else None
        source = source_get_by_write_key(body_key if isinstance(body_key, str) else None)
        rate_limit_check(source)
    _origin_check(request, source)
    segment.request_check(
        payload,
        route=route,
        body=body,
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
        messages=len(payload["batch"]) if route == segment.BATCH else 1,
    )
    return json_response({"success": True})


def _analytics_integration(write_key: str, request: HttpRequest) -> dict:
    """The settings an analytics.js-based SDK's own integration reads: where to send (this
    host's ``/v1``), and marked *unbundled* so that neither SDK takes the other's entry for a
    device-mode destination to load from its vendor's CDN."""
    return {
        "apiKey": write_key,
        "apiHost": f"{request.get_host()}/v1",
        "protocol": request.scheme,
        "bundlingStatus": "unbundled",
        "versionSettings": {"componentTypes": []},
        "unbundledIntegrations": [],
        "addBundledMetadata": False,
        "maybeBundledConfigIds": {},
    }


# Any method is served the document (this view never refused one); a preflight allows GET.
@door_view("GET", any_method=True)
def segment_settings(request: HttpRequest, write_key: str) -> HttpResponse:
    """``GET /v1/projects/<writeKey>/settings``: the document analytics.js loads at start-up.

    One document for both SDKs built on analytics.js: Segment's ``@segment/analytics-next``
    sends through its ``Segment.io`` integration and Customer.io's
    ``@customerio/cdp-analytics-browser`` through ``Customer.io Data Pipelines`` (it applies a
    page's own settings only to integrations the document names), both pointed here. No other
    integration, remote plugin or middleware is named, so neither loads code from a CDN, and
    the metrics sample rate is 0, so neither reports metrics anywhere.
    """
    source = source_get_by_write_key(write_key)
    _origin_check(request, source)
    integration = _analytics_integration(write_key, request)
    document = {
        "integrations": {
            "Segment.io": integration,
            "Customer.io Data Pipelines": dict(integration),
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0.0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
    return json_response(document)


@door_view("GET", "HEAD")
def rudderstack_source_config(request: HttpRequest) -> HttpResponse:
    """``GET /sourceConfig/?writeKey=…`` (or the key as Basic auth): the source configuration
    RudderStack's JavaScript SDK (``@rudderstack/analytics-js`` 3.x) loads before it sends.

    The source is enabled with no device-mode destination, so the SDK loads nothing from
    RudderStack's CDN and sends every event to its ``dataPlaneUrl`` (this host's ``/v1``);
    error and metrics reporting are off, so it sends nothing elsewhere.
    """
    key = header_write_key(request) or request.GET.get("writeKey")
    source = source_get_by_write_key(key)
    _origin_check(request, source)
    document = {
        "isHosted": False,
        "source": {
            "id": str(source.prop_id),
            "name": source.name,
            "writeKey": key,
            "workspaceId": str(source.workspace.portal_id),
            "enabled": source.is_active,
            "deleted": False,
            "config": {
                "statsCollection": {
                    "errors": {"enabled": False},
                    "metrics": {"enabled": False},
                }
            },
            "destinations": [],
            "createdAt": source.created_at.isoformat(),
            "updatedAt": source.created_at.isoformat(),
        },
    }
    return json_response(document)


def _rejected(rejected: list, indexes: list[int]) -> list[dict]:
    return [
        {"index": index, **item.error.as_dict()}
        for index, item in zip(indexes, rejected, strict=True)
    ]


@door_view("POST", name="optimizely")
def optimizely_door(request: HttpRequest, route: str) -> HttpResponse:
    """``POST /api/v1.0/Track`` (one TrackEvent) and ``/api/v1.0/TrackBulk`` (up to 100).

    Every event is checked before the request is accepted; in a bulk request the valid ones are
    stored and the invalid ones listed in the answer (and kept as failed events). Errors are the
    JSON ``{"code", "message", "field"}`` of every door.
    """
    received_at = timezone.now()
    route = optimizely.BULK if route.lower() == "trackbulk" else optimizely.SINGLE
    key = optimizely.key_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
    if key is None:
        raise IngestError(
            "invalid_key", "send the key as Authorization: epi-single <key>", status=401
        )
    source = source_get_by_write_key(key)
    rate_limit_check(source)
    _origin_check(request, source)
    body = body_read(request, limit=optimizely.body_limit(route))
    events = optimizely.events_of(body_parse(body), route=route)
    # The visitor's address: the header the site passes on, else the caller's.
    ip = valid_ip(request.META.get(optimizely.IP_HEADER)) or client_ip(request)
    messages, rejected, rejected_at = optimizely.events_parse(
        events,
        check_sizes=True,
        fallback_prefix="check",
        workspace_id=source.workspace_id,
        source_id=source.pk,
        channel="",
        ip=ip,
        received_at=received_at,
        max_future_skew=settings.FOOTPRINT["MAX_FUTURE_SKEW"],
    )
    if route == optimizely.SINGLE and rejected:
        raise rejected[0].error
    if not messages:
        return json_response(
            {
                "code": "no_valid_events",
                "message": "no track event of the list is valid; nothing was stored",
                "rejected": _rejected(rejected, rejected_at),
            },
            status=400,
        )
    services.inbox_accept(
        source=source,
        door=optimizely.DOOR,
        body=body,
        meta={"route": route},
        ip=ip,
        received_at=received_at,
        messages=len(messages),
    )
    answer: dict = {"accepted": len(messages)}
    if rejected:
        answer["rejected"] = _rejected(rejected, rejected_at)
    return json_response(answer)


def _store_at_once(*, source: Source, door: str, payload: dict, ip, received_at):
    """Accept one checked message and process it now, for doors whose answer carries the
    stored refs: the request's new ref, and the event's, session's and guest's."""
    ref = str(uuid.uuid4())
    event_ids = services.inbox_accept_processed(
        source=source,
        door=door,
        body=orjson.dumps(payload),
        meta={"ref": ref},
        ip=ip,
        received_at=received_at,
    )
    return ref, event_refs(event_ids[0] if event_ids else None)


def _stream_answer(payload: dict, *, callback: str | None, status: int = 200) -> HttpResponse:
    """JSON, or JSONP (``callback(...);``) for a script tag when a callback was named."""
    if callback:
        body = callback.encode() + b"(" + orjson.dumps(payload) + b");"
        return HttpResponse(body, status=status, content_type="application/javascript")
    return json_response(payload, status=status)


def _stream_callback(request: HttpRequest) -> str | None:
    try:
        return stream.callback_check(request.GET.get("callback"))
    except IngestError:
        return None


def _stream_error(request: HttpRequest, error: IngestError) -> HttpResponse:
    """The Stream API's error (JSONP too, unless the callback itself was refused)."""
    response = cors_allow(
        _stream_answer(
            {"status": "ERROR", "version": stream.VERSION, **error.as_dict()},
            callback=_stream_callback(request),
            status=error.status,
        ),
        request,
    )
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


# Any method is served as GET and POST are (these views never refused one).
@door_view("GET", "POST", any_method=True, error=_stream_error, name="stream_browser")
def stream_browser_create(request: HttpRequest) -> HttpResponse:
    """``GET /v1.2/browser/create.json?client_key=…``: a new browser ref and its visitor guest."""
    callback = stream.callback_check(request.GET.get("callback"))
    workspace = workspace_get_by_client_key(request.GET.get("client_key"))
    ref, guest = services.browser_create(workspace=workspace)
    answer = {
        "ref": ref,
        "customer_ref": str(guest.ref),
        "status": "OK",
        "version": stream.VERSION,
        "client_key": workspace.client_key,
    }
    return _stream_answer(answer, callback=callback)


def _stream_store(request: HttpRequest, message: dict, *, client_key: object) -> dict:
    """Check one Stream message, store it through the inbox and the pipeline at once, and
    return the answer with its refs (the event's, its browser's, guest's and session's)."""
    received_at = timezone.now()
    workspace = workspace_get_by_client_key(client_key)
    ip = client_ip(request)
    stream.message_normalize(
        message,
        workspace_id=workspace.pk,
        source_id=0,
        ref="check",
        ip=ip,
        received_at=received_at,
    )
    source = services.workspace_source_get(
        workspace=workspace, name=stream.SOURCE_NAME, kind=Source.Kind.WEB
    )
    rate_limit_check(source)
    ref, refs = _store_at_once(
        source=source, door=stream.DOOR, payload=message, ip=ip, received_at=received_at
    )
    return {
        "ref": ref,
        "status": "OK",
        "version": stream.VERSION,
        "client_key": workspace.client_key,
        "browser_ref": message.get("browser_id"),
        "customer_ref": refs["guest"],
        "session_ref": refs["session"],
    }


@door_view("GET", "POST", any_method=True, error=_stream_error, name="stream_event")
def stream_event_create(request: HttpRequest) -> HttpResponse:
    """``GET|POST /v1.2/event/create.json?client_key=…&message=<json>``: one Stream event.

    The event is stored before the answer, which carries its ref and its guest's and session's:
    the request is written to the inbox and processed at once through the one pipeline (see
    ``services.inbox_accept_processed``).
    """
    callback = stream.callback_check(request.GET.get("callback"))
    raw = request.GET.get("message")
    if raw is None and request.method == "POST":
        raw = body_read(request, limit=stream.MAX_MESSAGE_BYTES)
    message = stream.message_from(raw)
    answer = _stream_store(
        request, message, client_key=request.GET.get("client_key") or message.get("client_key")
    )
    return _stream_answer(answer, callback=callback)


@door_view("POST", error=_stream_error, name="stream_events")
def stream_events(request: HttpRequest) -> HttpResponse:
    """``POST /v1.2/events``: one Stream event as a JSON body, ``client_key`` inside it.

    What Sitecore's Engage SDK sends ``pageView``, ``identity`` and ``event`` to (from a browser,
    preflighted for its ``Content-Type`` and ``X-Library-Version`` headers, and from a server
    with ``initServer``). The same message, checks and pipeline as ``event/create.json``.
    """
    message = stream.message_from(body_read(request, limit=stream.MAX_MESSAGE_BYTES))
    client_key = message.get("client_key") or request.GET.get("client_key")
    return json_response(_stream_store(request, message, client_key=client_key))


def _collect_answer(answer: dict, *, resp_type: str, redirect_url: str) -> HttpResponse:
    if resp_type == "redirect":
        response = HttpResponse(status=302)
        response["Location"] = redirect_url
    elif resp_type == "pixel":
        response = HttpResponse(collect.TRANSPARENT_GIF, content_type="image/gif")
    elif resp_type == "json":
        response = json_response(answer)
    else:
        body = collect.CALLBACK.encode() + b"(" + orjson.dumps(answer) + b");"
        response = HttpResponse(body, content_type="application/javascript")
    # Every hit must reach the server: nothing along the way may answer from a cache.
    response["Cache-Control"] = "no-cache, no-store, must-revalidate, private"
    response["Pragma"] = "no-cache"
    response["Expires"] = "0"
    return response


def _collect_error(request: HttpRequest, error: IngestError) -> HttpResponse:
    if isinstance(error, collect.NotFound):
        return cors_allow(json_response(collect.NOT_FOUND, status=404), request)
    return door_error(request, error)


@door_view(
    "GET", "POST", not_allowed=collect.METHOD_NOT_ALLOWED, error=_collect_error, name="collect"
)
def collect_door(request: HttpRequest) -> HttpResponse:
    """``GET|POST /collect?portal_id=&prop_id=&resp_type=&redirect_url=``: one event hit.

    The event is stored before the answer, which carries its id, session and guest: the hit is
    written to the inbox and processed at once through the one pipeline (see
    ``services.inbox_accept_processed``). Errors are JSON whatever ``resp_type`` asked for.
    """
    received_at = timezone.now()
    portal_id, prop_id, resp_type, redirect_url = collect.address_parse(request.GET)
    source = source_get_by_portal(portal_id=portal_id, prop_id=prop_id)
    if source is None:
        raise collect.NotFound
    rate_limit_check(source)
    _origin_check(request, source)
    body = body_read(request, limit=collect.MAX_BODY_BYTES) if request.method == "POST" else b""
    hit = collect.hit_from(request.GET, body)
    ip = client_ip(request)
    collect.hit_normalize(
        hit,
        workspace_id=source.workspace_id,
        source_id=source.pk,
        channel="",
        ref="check",
        ip=ip,
        received_at=received_at,
    )
    if resp_type == "redirect":
        collect.redirect_check(
            redirect_url, action=hit["ea"], allowed_hosts=source.allowed_redirect_hosts
        )
    ref, refs = _store_at_once(
        source=source, door=collect.DOOR, payload=hit, ip=ip, received_at=received_at
    )
    answer = collect.answer_of(
        ref=ref, hit=hit, guest_ref=refs["guest"], session_ref=refs["session"]
    )
    return _collect_answer(answer, resp_type=resp_type, redirect_url=redirect_url)


def _library_error(request: HttpRequest, error: IngestError) -> HttpResponse:
    """A script tag gets a 404 and a comment saying why (never the JSON of the doors)."""
    response = HttpResponse(
        f"/* {error.message} */\n".encode(),
        status=404,
        content_type="text/javascript; charset=utf-8",
    )
    response["Cache-Control"] = "no-store"
    return response


def _library_answer(request: HttpRequest, name: str, cache_control: str) -> HttpResponse:
    script = library.library_files().get(name)
    if script is None:
        raise IngestError("not_found", "no such file: run `make vendor`", status=404)
    if request.META.get("HTTP_IF_NONE_MATCH") == script.etag:
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(script.body, content_type="text/javascript; charset=utf-8")
    response["ETag"] = script.etag
    response["Cache-Control"] = cache_control
    # Public code: any page may load it, with or without ``crossorigin``.
    response["Access-Control-Allow-Origin"] = "*"
    return response


@door_view("GET", "HEAD", error=_library_error, name="analytics_js")
def analytics_js(request: HttpRequest, write_key: str) -> HttpResponse:
    """``GET /analytics.js/v1/<writeKey>/analytics.min.js``: Segment's browser library (the
    vendored analytics-next standalone build) from Footprint itself, for a source's key."""
    source_get_by_write_key(write_key)
    return _library_answer(request, "", library.LIBRARY_CACHE_CONTROL)


@door_view("GET", "HEAD", error=_library_error, name="analytics_js_chunk")
def analytics_js_chunk(request: HttpRequest, name: str) -> HttpResponse:
    """``GET /analytics-next/bundles/<name>``: a chunk the library loads lazily (named by its
    content hash, so cached for good)."""
    return _library_answer(request, name, library.CHUNK_CACHE_CONTROL)


def healthz(request: HttpRequest) -> HttpResponse:
    return json_response({"status": "ok"})
