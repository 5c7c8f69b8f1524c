"""First-party analytics.js: Segment's browser library, served by Footprint itself.

The library is the standalone build of ``@segment/analytics-next``, vendored (pinned in
``vendor/package.json``, copied by ``make vendor`` per ``vendor/manifest.json``, licence
included) under ``footprint/vendor/analytics-next/``: ``standalone.js`` is what Segment's
snippet loads as ``/analytics.js/v1/<writeKey>/analytics.min.js``, and ``bundles/`` the chunks
it loads lazily from ``<cdn>/analytics-next/bundles/``. A site whose snippet names Footprint's
host (``install_snippet``) so loads nothing from a third party.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from django.contrib.staticfiles import finders

LIBRARY = "footprint/vendor/analytics-next/standalone.js"
# The chunks' names carry their content hash, so a browser may keep them for good; the
# library's own path does not change between versions, so it is kept for a day.
LIBRARY_CACHE_CONTROL = "public, max-age=86400"
CHUNK_CACHE_CONTROL = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Script:
    body: bytes
    etag: str


_lock = threading.Lock()
_files: dict[str, Script] | None = None


def _script(path: Path) -> Script:
    body = path.read_bytes()
    return Script(body=body, etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def library_files() -> dict[str, Script]:
    """The library (under ``""``) and its chunks by file name, read once per process."""
    global _files
    with _lock:
        if _files is None:
            found = finders.find(LIBRARY)
            files: dict[str, Script] = {}
            if found:
                library = Path(found)
                files[""] = _script(library)
                for chunk in sorted((library.parent / "bundles").glob("*.js")):
                    files[chunk.name] = _script(chunk)
            _files = files
        return _files


# Segment's snippet (@segment/snippet 5.2.1, minified) as analytics.js documents it for a
# custom host: the library's URL names Footprint, and ``_cdn`` tells the library where its
# settings and chunks are (it can only guess that itself from an https:// script URL).
SNIPPET = (
    '!function(){var i="analytics",analytics=window[i]=window[i]||[];if(!analytics.initialize)'
    'if(analytics.invoked)window.console&&console.error&&console.error("Segment snippet '
    'included twice.");else{analytics.invoked=!0;analytics.methods=["trackSubmit",'
    '"trackClick","trackLink","trackForm","pageview","identify","reset","group","track",'
    '"ready","alias","debug","page","screen","once","off","on","addSourceMiddleware",'
    '"addIntegrationMiddleware","setAnonymousId","addDestinationMiddleware","register"];'
    "analytics.factory=function(e){return function(){if(window[i].initialized)return "
    "window[i][e].apply(window[i],arguments);var n=Array.prototype.slice.call(arguments);"
    'if(["track","screen","alias","group","page","identify"].indexOf(e)>-1){var c=document.'
    'querySelector("link[rel=\'canonical\']");n.push({__t:"bpc",c:c&&c.getAttribute("href")'
    "||void 0,p:location.pathname,u:location.href,s:location.search,t:document.title,"
    "r:document.referrer})}n.unshift(e);analytics.push(n);return analytics}};for(var n=0;"
    "n<analytics.methods.length;n++){var key=analytics.methods[n];analytics[key]="
    "analytics.factory(key)}analytics.load=function(key,n){var t=document.createElement("
    '"script");t.type="text/javascript";t.async=!0;t.setAttribute('
    '"data-global-segment-analytics-key",i);t.src=HOST+"/analytics.js/v1/"+key+'
    '"/analytics.min.js";var r=document.getElementsByTagName("script")[0];'
    "r.parentNode.insertBefore(t,r);analytics._loadOptions=n};analytics._writeKey=KEY;"
    "analytics._cdn=HOST;"
    'analytics.SNIPPET_VERSION="5.2.0";\n'
    "analytics.load(KEY);\n"
    "analytics.page();\n"
    "}}();"
)


def install_snippet(*, base: str, write_key: str) -> str:
    """The ``<script>`` a site pastes into its pages: analytics.js from ``base`` (Footprint's
    scheme and host), sending with ``write_key``, and a first page call."""
    host, key = (json.dumps(value).replace("<", "\\u003c") for value in (base, write_key))
    # Names the snippet uses only as placeholders: HOST and KEY are not JavaScript there.
    code = SNIPPET.replace("HOST", host).replace("=KEY;", f"={key};").replace("(KEY)", f"({key})")
    return f"<script>\n  {code}\n</script>"
