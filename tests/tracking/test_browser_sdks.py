"""The vendors' browser SDKs, unmodified, in headless Chromium on another site's page.

Each SDK is the npm package pinned in tests/sdks/node (package-lock.json), loaded by a page
that a small HTTP server of the test serves on a port of its own: another origin than
Footprint's, so every call is a real cross-origin request with its preflight. The page is
configured the way the vendor documents a custom endpoint. Chromium is Debian's; any request
to a host other than this machine's loopback is refused and reported, so a test fails when an
SDK reaches for its vendor's CDN or API. What the SDK sent is then read back through the read
API and checked field by field, and the page's console must hold no error.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.factories import ExperienceFactory, VariantFactory
from tests.tracking.test_sdks import ReadApi, assert_all_processed
from tracking import library, services
from tracking.doors import stream
from tracking.models import Source

ROOT = Path(__file__).resolve().parent.parent.parent
NODE_DIR = ROOT / "tests" / "sdks" / "node"
MODULES = NODE_DIR / "node_modules"
CHROMIUM = os.environ.get("FOOTPRINT_CHROMIUM") or shutil.which("chromium")
# Debian's Chromium, headless, without the background traffic a desktop browser makes.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def needs(*packages: str) -> None:
    """Skip (fail in CI) unless Chromium, Playwright and the SDK packages are installed."""
    problems = []
    if not CHROMIUM:
        problems.append("Chromium (apt-get install chromium, or set FOOTPRINT_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright Python package (make install)")
    for package in packages:
        if not (MODULES / package / "package.json").is_file():
            problems.append(f"{package} in tests/sdks/node/node_modules (make node-sdk)")
    if problems:
        message = "needs " + ", ".join(problems)
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)


def package_version(package: str) -> str:
    return json.loads((MODULES / package / "package.json").read_text())["version"]


# --- The other site: its pages and the SDK files from node_modules ----------------------------


class Site:
    """A web site on its own port: pages set by the test, ``/node_modules/...`` and its own
    built scripts under ``/assets/``."""

    def __init__(self, assets: Path):
        self.pages: dict[str, str] = {}
        self.assets = assets
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = urlsplit(self.path).path
                if path in site.pages:
                    self.answer(200, site.pages[path].encode(), "text/html; charset=utf-8")
                    return
                for prefix, root in (("/node_modules/", MODULES), ("/assets/", site.assets)):
                    if not path.startswith(prefix):
                        continue
                    file = (root / path.removeprefix(prefix)).resolve()
                    if file.is_relative_to(root.resolve()) and file.is_file():
                        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                        if file.suffix in (".js", ".mjs", ".cjs"):
                            kind = "text/javascript"
                        self.answer(200, file.read_bytes(), kind)
                        return
                self.answer(404, b"not found", "text/plain")

            def answer(self, status, body, kind):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def page(self, path: str, html: str) -> str:
        self.pages[path] = html
        return f"{self.origin}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site(tmp_path):
    served = Site(tmp_path)
    yield served
    served.close()


@contextlib.contextmanager
def chromium():
    """Debian's Chromium through Playwright. Playwright's loop runs on this thread while the
    browser is open, so the database is touched only before or after (Django refuses it
    there)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield Visit(browser)
        finally:
            browser.close()


class Visit:
    """One page in a fresh browser context, watched: console errors, page errors, failed
    requests, and every request to a host off this machine (refused)."""

    def __init__(self, browser):
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.failed: list[str] = []
        self.outside: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.responses: list[tuple[str, str, int]] = []
        self.page.on(
            "console",
            lambda message: self.console.append(message.text) if message.type == "error" else None,
        )
        self.page.on("pageerror", lambda error: self.console.append(f"page error: {error}"))
        self.page.on(
            "requestfailed",
            lambda request: self.failed.append(f"{request.url}: {request.failure}"),
        )
        self.page.on("request", lambda request: self.requests.append((request.method, request.url)))
        self.page.on(
            "response",
            lambda response: self.responses.append(
                (response.request.method, response.url, response.status)
            ),
        )
        self.context.route("**/*", self._route)

    def _route(self, route):
        host = urlsplit(route.request.url).hostname
        if host in LOOPBACK:
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def open(self, url: str):
        self.page.goto(url, wait_until="load")
        return self.page

    def wait_for_posts(self, prefix: str, count: int, *, seconds: float = 15) -> list:
        """Wait until ``count`` POSTs to URLs starting with ``prefix`` have been answered (for
        SDKs that queue calls and send them later); their (url, status)."""
        deadline = time.monotonic() + seconds
        while True:
            answered = [
                (url, status)
                for method, url, status in self.responses
                if method == "POST" and url.startswith(prefix)
            ]
            if len(answered) >= count or time.monotonic() > deadline:
                return answered
            self.page.wait_for_timeout(100)

    def assert_clean(self):
        """No CORS or other console error, no failed request, nothing sent off the machine."""
        assert self.outside == []
        assert self.console == []
        assert self.failed == []


@pytest.fixture
def footprint(live_server) -> str:
    return f"http://127.0.0.1:{live_server.thread.port}"


def read_api_for(footprint: str, workspace) -> ReadApi:
    from tests.factories import TokenFactory, UserFactory

    member = UserFactory(workspaces=[workspace])
    return ReadApi(footprint, TokenFactory(user=member).key)


# --- Sitecore Engage ----------------------------------------------------------------------------


ENGAGE_PAGE = """<!doctype html>
<html lang="en"><head><title>Shoes</title></head><body>
<script type="module">
import { init } from '/node_modules/@sitecore/engage/esm/src/index.mjs'

window.run = async ({ clientKey, targetURL, email, friendlyId }) => {
  const engage = await init({ clientKey, targetURL, pointOfSale: 'shop/ie', cookieExpiryDays: 365 })
  const view = await engage.pageView({ channel: 'WEB', currency: 'EUR' }, { tier: 'gold' })
  const identity = await engage.identity({
    channel: 'WEB', currency: 'EUR', email, firstName: 'Ada', lastName: 'Lovelace',
    identifiers: [{ id: email, provider: 'email' }],
  })
  const custom = await engage.event(
    'QUIZ_ANSWERED', { channel: 'WEB', currency: 'EUR', question: 'size' }, { answer: '42' })
  const decision = await engage.personalize({ channel: 'WEB', currency: 'EUR', friendlyId }, 5000)
  const browserId = engage.getBrowserId()
  return { browserId, version: engage.version, view, identity, custom, decision }
}
</script></body></html>
"""


@pytest.fixture
def hero_banner(source):
    experience = ExperienceFactory(
        workspace=source.workspace,
        friendly_id="hero_banner",
        status="live",
        traffic_allocation=100,
    )
    VariantFactory(
        experience=experience, name="personal", weight=100, content={"title": "Hi {{firstName}}"}
    )
    return experience


def stream_source(workspace) -> Source:
    return services.workspace_source_get(
        workspace=workspace, name=stream.SOURCE_NAME, kind=Source.Kind.WEB
    )


def test_sitecore_engage_in_the_browser(footprint, site, source, hero_banner):
    needs("@sitecore/engage")
    workspace = source.workspace
    email = "ada@example.com"
    config = {
        "clientKey": workspace.client_key,
        "targetURL": footprint,
        "email": email,
        "friendlyId": hero_banner.friendly_id,
    }
    url = site.page("/shop/shoes", ENGAGE_PAGE)
    read_api = read_api_for(footprint, workspace)

    with chromium() as browser:
        result = browser.open(url).evaluate("config => window.run(config)", config)

    browser.assert_clean()
    assert result["version"] == package_version("@sitecore/engage")
    browser_id = result["browserId"]
    assert browser_id
    for answer in ("view", "identity", "custom"):
        assert result[answer]["status"] == "OK", result
        assert result[answer]["client_key"] == workspace.client_key
    posted = [url for method, url in browser.requests if method == "POST"]
    assert posted.count(f"{footprint}/v1.2/events") == 3
    # The decision is for the guest the browser was stitched to: IDENTITY gave the first name.
    assert result["decision"]["decision"] == "EXPOSED"
    assert result["decision"]["content"] == {"title": "Hi Ada"}

    assert_all_processed(stream_source(workspace))
    events = read_api.get("/api/events/", source=stream_source(workspace).prop_id)["results"]
    by_type = {event["type"]: event for event in events}
    assert sorted(by_type) == ["IDENTITY", "QUIZ_ANSWERED", "VIEW"]
    assert {event["door"] for event in events} == {"stream"}
    [tracking] = read_api.get(
        "/api/events/", type="TRACKING", flowFriendlyId=hero_banner.friendly_id
    )["results"]
    execution = tracking["arbitraryData"]["flowExecution"]
    assert execution["ref"] == result["decision"]["flowExecutionRef"]
    assert tracking["browserRef"] == browser_id
    view_event = by_type["VIEW"]
    assert view_event["messageId"] == result["view"]["ref"]
    assert view_event["properties"]["tier"] == "gold"
    assert view_event["properties"]["pointOfSale"] == "shop/ie"
    assert view_event["context"]["page"] == {"url": "shoes"}
    assert view_event["context"]["locale"] == "EN"
    assert view_event["payload"]["browser_id"] == browser_id
    assert view_event["currency"] == "EUR"
    assert by_type["QUIZ_ANSWERED"]["properties"]["question"] == "size"
    assert by_type["QUIZ_ANSWERED"]["properties"]["answer"] == "42"
    assert by_type["IDENTITY"]["traits"]["firstName"] == "Ada"

    # One guest: the browser's, stitched to the email by IDENTITY.
    [guest] = read_api.get("/api/guests/", identifier=email)["results"]
    assert (guest["email"], guest["firstName"], guest["lastName"]) == (email, "Ada", "Lovelace")
    assert {"provider": "browser", "id": browser_id} in guest["identifiers"]
    assert {event["guestRef"] for event in events} == {execution["guestRef"]} == {guest["ref"]}
    assert result["decision"]["guestRef"] == guest["ref"]


def test_sitecore_engage_init_server_from_node(footprint, source, hero_banner):
    """``initServer``, as a Next.js or Node server uses it: the server keeps the browser id
    cookie, sends the page's events and asks for the decision."""
    needs("@sitecore/engage")
    if shutil.which("node") is None:
        message = "needs Node.js 20+ (`node` on PATH) to run @sitecore/engage's initServer"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    workspace = source.workspace
    email = "grace@example.com"

    result = subprocess.run(
        [
            shutil.which("node"),
            "engage-server.mjs",
            footprint,
            workspace.client_key,
            email,
            hero_banner.friendly_id,
        ],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["version"] == package_version("@sitecore/engage")
    first, second = report["visits"]
    # The first visit was given the browser id cookie, the second sent it back.
    cookie_name, browser_id = report["cookie"].split("=", 1)
    assert cookie_name == f"bid_{workspace.client_key}"
    assert second["setCookie"].startswith(report["cookie"])
    for visit in (first, second):
        assert visit["status"] == 200, visit
        for answer in ("view", "custom"):
            assert visit[answer]["status"] == "OK", visit
            assert visit[answer]["browser_ref"] == browser_id
    assert second["identity"]["status"] == "OK"
    assert first["decision"]["content"] == {"title": "Hi "}
    assert second["decision"]["content"] == {"title": "Hi Grace"}

    stream_events = stream_source(workspace)
    assert_all_processed(stream_events)
    read_api = read_api_for(footprint, workspace)
    events = read_api.get("/api/events/", source=stream_events.prop_id)["results"]
    assert sorted(event["type"] for event in events) == [
        "IDENTITY",
        "SERVER_RENDER",
        "SERVER_RENDER",
        "VIEW",
        "VIEW",
    ]
    views = [event for event in events if event["type"] == "VIEW"]
    assert sorted(event["context"]["page"]["url"] for event in views) == ["/account", "/shoes"]
    assert {event["properties"]["rendered"] for event in views} == {"server"}
    assert {event["payload"]["browser_id"] for event in events} == {browser_id}
    [guest] = read_api.get("/api/guests/", identifier=email)["results"]
    assert (guest["firstName"], guest["lastName"]) == ("Grace", "Hopper")
    assert {"provider": "browser", "id": browser_id} in guest["identifiers"]
    assert {event["guestRef"] for event in events} == {guest["ref"]}
    assert {first["decision"]["guestRef"], second["decision"]["guestRef"]} == {guest["ref"]}


def bundle(site: Site, name: str, source: str) -> str:
    """Build a page's script from npm packages as a site's build does (esbuild, with the
    lazily loaded parts split into chunks served beside it); its URL on the site."""
    (site.assets / f"{name}.entry.js").write_text(source)
    result = subprocess.run(
        [
            str(MODULES / ".bin" / "esbuild"),
            f"{name}.entry.js",
            "--bundle",
            "--splitting",
            "--format=esm",
            "--platform=browser",
            f"--outdir={name}",
            '--define:process.env.NODE_ENV="production"',
            "--log-level=error",
        ],
        cwd=site.assets,
        env={**os.environ, "NODE_PATH": str(MODULES)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return f"/assets/{name}/{name}.entry.js"


# --- The analytics.js family: Segment's analytics-next and Customer.io's fork ------------------

# The npm package, bundled into the site's own script (its chunks load from the site).
ANALYTICS_NEXT_PAGE = """<!doctype html>
<html lang="en"><head><title>Pricing</title></head><body>
<script type="module">
import { AnalyticsBrowser } from '{bundle}'

window.run = async ({ writeKey, cdnURL, integration, apiHost, protocol, calls }) => {
  const [analytics] = await AnalyticsBrowser.load(
    { writeKey, cdnURL },
    { integrations: { [integration]: { apiHost, protocol } } },
  )
  for (const [method, args] of calls) {
    await analytics[method](...args)
  }
  return { anonymousId: analytics.user().anonymousId() }
}
</script></body></html>
"""


def browser_calls(tag: str) -> tuple[list, dict]:
    """identify, track, page and group as a page makes them, and what each must store."""
    email = f"{tag}@example.com"
    user = f"{tag}-user"
    calls = [
        ["identify", [user, {"email": email, "firstName": "Ada", "plan": "pro"}]],
        ["track", ["Order Completed", {"orderId": "o-1", "revenue": 19.99, "currency": "EUR"}]],
        ["page", ["Docs", "Pricing", {"plan": "pro"}]],
        ["group", [f"{tag}-acme", {"name": "Acme", "seats": 42}]],
    ]
    expected = {
        "identify": {"traits": {"email": email, "firstName": "Ada", "plan": "pro"}},
        "track": {
            "event": "Order Completed",
            "properties": {"orderId": "o-1", "revenue": 19.99, "currency": "EUR"},
        },
        "page": {"name": "Pricing", "properties": {"plan": "pro", "category": "Docs"}},
        "group": {"groupId": f"{tag}-acme", "traits": {"name": "Acme", "seats": 42}},
    }
    return calls, {"email": email, "user": user, "by_type": expected}


def assert_browser_read_back(
    read_api, source, expected, *, anonymous_id, library, snippet_page=False
):
    """Each call is one stored event with the fields given; one guest holds them all.

    ``snippet_page``: the snippet's own ``analytics.page()`` (no name) was sent too, side by
    side with identify, so it may or may not carry the user id.
    """
    assert_all_processed(source)
    events = read_api.get("/api/events/", source=source.prop_id, page_size=50)["results"]
    calls = events
    if snippet_page:
        [first] = [e for e in events if e["type"] == "page" and e["name"] is None]
        assert first["anonymousId"] == anonymous_id
        assert first["properties"]["path"] == "/shop/pricing"
        assert first["properties"]["title"] == "Pricing"
        assert first["context"]["library"] == library
        calls = [e for e in events if e is not first]
    assert sorted(event["type"] for event in calls) == sorted(expected["by_type"])
    for event in calls:
        want = expected["by_type"][event["type"]]
        for key, value in want.items():
            if isinstance(value, dict):
                assert {k: event[key].get(k) for k in value} == value, (event["type"], key)
            else:
                assert event[key] == value, (event["type"], key)
        assert event["userId"] == expected["user"], event["type"]
        assert event["anonymousId"] == anonymous_id, event["type"]
        assert event["door"] == "segment"
        assert event["channel"] == "WEB"
        assert event["context"]["library"] == library
        assert event["context"]["page"]["path"] == "/shop/pricing"
    [guest] = read_api.get("/api/guests/", identifier=expected["email"])["results"]
    assert guest["firstName"] == "Ada"
    assert guest["traits"]["plan"] == "pro"
    assert {"provider": "user_id", "id": expected["user"]} in guest["identifiers"]
    assert {"provider": "anonymous_id", "id": anonymous_id} in guest["identifiers"]
    assert {event["guestRef"] for event in events} == {guest["ref"]}
    return events


@pytest.mark.parametrize(
    ("package", "integration", "library"),
    [
        pytest.param(
            "@customerio/cdp-analytics-browser",
            "Customer.io Data Pipelines",
            "analytics.js",
            id="customerio",
        ),
        pytest.param("@segment/analytics-next", "Segment.io", "analytics.js", id="segment"),
    ],
)
def test_analytics_js_sdk_from_npm(footprint, site, source, package, integration, library):
    needs(package, "esbuild")
    calls, expected = browser_calls(integration.split(".")[0].lower())
    script = bundle(site, "analytics", f"export {{ AnalyticsBrowser }} from '{package}'\n")
    url = site.page("/shop/pricing", ANALYTICS_NEXT_PAGE.replace("{bundle}", script))
    read_api = read_api_for(footprint, source.workspace)
    config = {
        "writeKey": source.write_key,
        "cdnURL": footprint,
        "integration": integration,
        "apiHost": f"127.0.0.1:{urlsplit(footprint).port}/v1",
        "protocol": "http",
        "calls": calls,
    }

    with chromium() as browser:
        result = browser.open(url).evaluate("config => window.run(config)", config)

    browser.assert_clean()
    sent = [u for method, u in browser.requests if method == "POST"]
    assert len(sent) == len(calls)
    assert all(u.startswith(f"{footprint}/v1/") for u in sent), sent
    assert f"{footprint}/v1/projects/{source.write_key}/settings" in [
        u for _, u in browser.requests
    ]
    events = assert_browser_read_back(
        read_api,
        source,
        expected,
        anonymous_id=result["anonymousId"],
        # "npm:next-<version>" from both: the npm build of analytics-next or of its fork.
        library={"name": library, "version": f"npm:next-{package_version(package)}"},
    )
    assert events


# --- RudderStack ----------------------------------------------------------------------------------

RUDDERSTACK_PAGE = """<!doctype html>
<html lang="en"><head><title>Pricing</title></head><body>
<script type="module">
import { RudderAnalytics } from '{bundle}'

window.run = async ({ writeKey, dataPlaneUrl, configUrl, calls }) => {
  const rudderanalytics = new RudderAnalytics()
  await new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error('ready() did not fire')), 10000)
    rudderanalytics.ready(resolve)
    rudderanalytics.load(writeKey, dataPlaneUrl, { configUrl, logLevel: 'ERROR' })
  })
  for (const [method, args] of calls) {
    await new Promise((resolve) => rudderanalytics[method](...args, resolve))
  }
  return { anonymousId: rudderanalytics.getAnonymousId() }
}
</script></body></html>
"""


# The SDK sends its queued calls side by side, and SQLite takes one writer at a time.
@pytest.mark.postgres
def test_rudderstack_sdk_from_npm(footprint, site, source):
    """``@rudderstack/analytics-js``'s bundled build (the one that needs no CDN for its
    plugins) with ``configUrl`` and ``dataPlaneUrl`` both Footprint."""
    package = "@rudderstack/analytics-js"
    needs(package, "esbuild")
    calls, expected = browser_calls("rudderstack")
    script = bundle(site, "rudderstack", f"export {{ RudderAnalytics }} from '{package}/bundled'\n")
    url = site.page("/shop/pricing", RUDDERSTACK_PAGE.replace("{bundle}", script))
    read_api = read_api_for(footprint, source.workspace)
    config = {
        "writeKey": source.write_key,
        "dataPlaneUrl": footprint,
        "configUrl": footprint,
        "calls": calls,
    }

    with chromium() as browser:
        result = browser.open(url).evaluate("config => window.run(config)", config)
        delivered = browser.wait_for_posts(f"{footprint}/v1/", len(calls))

    browser.assert_clean()
    assert [status for _, status in delivered] == [200] * len(calls), delivered
    config_gets = [u for method, u in browser.requests if urlsplit(u).path == "/sourceConfig/"]
    assert len(config_gets) == 1 and "writeKey=" in config_gets[0]
    events = assert_browser_read_back(
        read_api,
        source,
        expected,
        anonymous_id=result["anonymousId"],
        library={
            "name": "RudderLabs JavaScript SDK",
            "version": package_version(package),
            "variant": "bundled",
        },
    )
    assert events


# --- First-party analytics.js: the snippet names only Footprint -------------------------------

SNIPPET_PAGE = """<!doctype html>
<html lang="en"><head><title>Pricing</title>
{snippet}
</head><body>
<script>
window.run = ({ calls }) => new Promise((resolve) => analytics.ready(async () => {
  for (const [method, args] of calls) {
    await window.analytics[method](...args)
  }
  resolve({ anonymousId: window.analytics.user().anonymousId() })
}))
</script></body></html>
"""


# The snippet's page call and the page's first calls go side by side (see RudderStack's).
@pytest.mark.postgres
def test_first_party_analytics_js_from_the_install_snippet(footprint, site, source):
    """The source page's snippet: the library, its chunks and its settings all come from
    Footprint, and so does nothing else; the calls (with the snippet's own page call) land."""
    needs()
    calls, expected = browser_calls("snippet")
    snippet = library.install_snippet(base=footprint, write_key=source.write_key)
    url = site.page("/shop/pricing", SNIPPET_PAGE.replace("{snippet}", snippet))
    read_api = read_api_for(footprint, source.workspace)

    with chromium() as browser:
        result = browser.open(url).evaluate("config => window.run(config)", {"calls": calls})
        # The snippet's analytics.page() is sent too.
        delivered = browser.wait_for_posts(f"{footprint}/v1/", len(calls) + 1)

    browser.assert_clean()
    assert [status for _, status in delivered] == [200] * (len(calls) + 1), delivered
    fetched = [u for method, u in browser.requests if method == "GET"]
    assert fetched[0] == url
    assert all(u.startswith(footprint) for u in fetched[1:]), fetched
    paths = {urlsplit(u).path for u in fetched[1:]}
    assert f"/analytics.js/v1/{source.write_key}/analytics.min.js" in paths
    assert f"/v1/projects/{source.write_key}/settings" in paths
    chunks = [p for p in paths if p.startswith("/analytics-next/bundles/")]
    assert any("/ajs-destination." in p for p in chunks), paths

    version = json.loads((ROOT / "vendor" / "package-lock.json").read_text())["packages"][
        "node_modules/@segment/analytics-next"
    ]["version"]
    assert_browser_read_back(
        read_api,
        source,
        expected,
        anonymous_id=result["anonymousId"],
        library={"name": "analytics.js", "version": f"next-{version}"},
        snippet_page=True,
    )
