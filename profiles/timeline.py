"""A guest's events as sentences a person reads: "Viewed *Pricing* (https://shop.example/pricing)",
"Did *Order Completed*: revenue 42.00 EUR, order_id o-17", "Saw *B* of *Hero banner*".

One function per kind of event; ``event_sentence`` picks it by door and type. Each returns safe
HTML (values escaped) with the event's own words in ``<em>``. The experience a TRACKING event
names is looked up by the caller, once per page, through ``FOOTPRINT["EXPERIENCES_NAMED"]``
(experiences sit above profiles), and passed in as ``experiences``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from tracking.models import Door

# How many properties or traits a sentence names before it says "and N more".
MAX_DETAILS = 4
MAX_VALUE_CHARS = 60
# Properties a track sentence names first, when present.
KEY_PROPERTIES = (
    "revenue",
    "total",
    "value",
    "order_id",
    "product_id",
    "sku",
    "name",
    "category",
    "price",
    "quantity",
    "plan",
    "query",
    "url",
)
# Properties never worth a word in a sentence (the door's bookkeeping).
QUIET_PROPERTIES = frozenset(
    {"currency", "ref", "browserRef", "flowExecutionRef", "arbitraryData", "pointOfSale"}
)


@dataclass(frozen=True)
class ExperienceNamed:
    """What a sentence needs of an experience: its name and where its page is."""

    name: str
    url: str


def shown(value) -> str:
    """A property or trait value in a few words: text as is, anything else as compact JSON."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, int | float):
        text = f"{value:g}" if isinstance(value, float) else str(value)
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        text = f"{len(value)} item{'s' if len(value) != 1 else ''}"
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def details(
    values: Mapping, *, first: tuple[str, ...] = (), skip=frozenset(), pair="{} <em>{}</em>"
) -> SafeString:
    """``key value, key value and 3 more`` for a mapping, the ``first`` keys first."""
    keys = [key for key in first if key in values and key not in skip]
    keys += sorted(key for key in values if key not in keys and key not in skip)
    keys = [key for key in keys if values[key] not in (None, "", [], {})]
    if not keys:
        return mark_safe("")
    named = format_html_join(", ", pair, ((key, shown(values[key])) for key in keys[:MAX_DETAILS]))
    more = len(keys) - MAX_DETAILS
    if more > 0:
        return format_html("{} and {} more", named, more)
    return named


def with_details(sentence: SafeString, values: Mapping, **kwargs) -> SafeString:
    said = details(values, **kwargs)
    return format_html("{}: {}", sentence, said) if said else sentence


def money(event) -> SafeString:
    if event.revenue is None:
        return mark_safe("")
    return format_html(" worth <em>{} {}</em>", f"{event.revenue:,.2f}", event.currency or "")


def page_url(event) -> str:
    page = (event.context or {}).get("page") or {}
    props = event.properties or {}
    return str(props.get("url") or props.get("pageUri") or page.get("url") or "")


def page_title(event) -> str:
    page = (event.context or {}).get("page") or {}
    props = event.properties or {}
    return str(props.get("title") or props.get("pageTitle") or page.get("title") or event.name)


def page_sentence(event, experiences) -> SafeString:
    title, url = page_title(event), page_url(event)
    verb = "Viewed screen" if event.type == "screen" else "Viewed page"
    if title and url and title != url:
        return format_html("{} <em>{}</em> ({})", verb, title, shown(url))
    return format_html("{} <em>{}</em>", verb, title or shown(url) or "(no title)")


def track_sentence(event, experiences) -> SafeString:
    sentence = format_html("Did <em>{}</em>{}", event.name or "(unnamed)", money(event))
    skip = QUIET_PROPERTIES | ({"revenue"} if event.revenue is not None else set())
    return with_details(sentence, event.properties or {}, first=KEY_PROPERTIES, skip=skip)


def traits_changed(traits: Mapping, before: Mapping | None) -> dict:
    """The traits an identify set to a new value, given what the guest's previous identify
    said (None: no previous identify is known, so every trait is new)."""
    if before is None:
        return dict(traits)
    return {key: value for key, value in traits.items() if before.get(key, object()) != value}


def identify_sentence(event, experiences) -> SafeString:
    """Who the guest was identified as, and which traits this call changed (the caller sets
    ``traits_before``, the traits of the guest's identify before this one, when it knows)."""
    who = event.user_id or event.anonymous_id
    sentence = format_html("Identified as <em>{}</em>", who) if who else mark_safe("Identified")
    traits = event.traits or {}
    if not traits:
        return sentence
    before = getattr(event, "traits_before", None)
    changed = traits_changed(traits, before)
    if not changed:
        return format_html("{}; no trait changed", sentence)
    verb = "set" if before is None else "changed"
    said = details(changed, first=("email", "name"), pair="{} to <em>{}</em>")
    return format_html("{}; {} {}", sentence, verb, said)


def alias_sentence(event, experiences) -> SafeString:
    return format_html(
        "Linked <em>{}</em> to <em>{}</em>", event.previous_id or "?", event.user_id or "?"
    )


def group_sentence(event, experiences) -> SafeString:
    return with_details(
        format_html("Joined group <em>{}</em>", event.group_id or "?"), event.traits or {}
    )


def tracking_sentence(event, experiences) -> SafeString:
    """A flow execution: which variant of which experience the guest was shown."""
    variant = (event.properties or {}).get("variant") or "a variant"
    experience = experiences.get(event.name)
    if experience is None:
        return format_html("Saw <em>{}</em> of <em>{}</em>", shown(variant), event.name)
    return format_html(
        'Saw <em>{}</em> of <a href="{}"><em>{}</em></a>',
        shown(variant),
        experience.url,
        experience.name,
    )


def optimizely_sentence(event, experiences) -> SafeString:
    props = event.properties or {}
    sentence = format_html("Did <em>{}</em>{}", event.name or "(unnamed)", money(event))
    where = props.get("pageTitle") or props.get("pageUri")
    if where:
        sentence = format_html("{} on <em>{}</em>", sentence, shown(where))
    skip = QUIET_PROPERTIES | {"pageTitle", "pageUri", "trackId", "scope", "countryCode"}
    if props.get("eventValue") in (None, 0):
        skip |= {"eventValue"}
    return with_details(sentence, props, first=("eventValue",), skip=skip)


def collect_sentence(event, experiences) -> SafeString:
    props = event.properties or {}
    sentence = format_html("Did <em>{}</em>{}", event.name or "(unnamed)", money(event))
    if props.get("category"):
        sentence = format_html("{} in <em>{}</em>", sentence, shown(props["category"]))
    return with_details(sentence, props, skip=QUIET_PROPERTIES | {"category", "dims", "items"})


# Sitecore's standard event types, in words.
SITECORE_VERBS = {
    "VIEW": "Viewed",
    "IDENTITY": "Identified",
    "ADD": "Added to cart",
    "CONFIRM": "Confirmed the order",
    "CHECKOUT": "Checked out",
    "PAYMENT": "Paid",
    "CLEAR_CART": "Cleared the cart",
    "SEARCH": "Searched",
    "FORCE_CLOSE": "Ended the session",
}


def sitecore_sentence(event, experiences) -> SafeString:
    props = event.properties or {}
    verb = SITECORE_VERBS.get(event.type)
    if event.type == "VIEW":
        return format_html("Viewed <em>{}</em>", shown(page_url(event) or "a page"))
    if event.type == "IDENTITY":
        return with_details(mark_safe("Identified"), event.traits or {}, first=("email",))
    if event.type == "ADD":
        product = props.get("product") or {}
        name = product.get("name") or product.get("item_id") if isinstance(product, dict) else ""
        if name:
            return format_html("Added <em>{}</em> to the cart", shown(name))
    if event.type == "SEARCH" and props.get("product_name"):
        return format_html("Searched for <em>{}</em>", shown(props["product_name"]))
    if verb is not None:
        return with_details(
            format_html("{}{}", verb, money(event)), props, skip=QUIET_PROPERTIES | {"product"}
        )
    return with_details(
        format_html("Sent <em>{}</em>{}", event.type, money(event)), props, skip=QUIET_PROPERTIES
    )


Sentence = Callable[[object, Mapping[str, ExperienceNamed]], SafeString]

# By door first (their own wire formats), then by type.
BY_DOOR: dict[str, Sentence] = {
    Door.OPTIMIZELY: optimizely_sentence,
    Door.COLLECT: collect_sentence,
    Door.STREAM: sitecore_sentence,
}
BY_TYPE: dict[str, Sentence] = {
    "page": page_sentence,
    "screen": page_sentence,
    "track": track_sentence,
    "identify": identify_sentence,
    "alias": alias_sentence,
    "group": group_sentence,
    "TRACKING": tracking_sentence,
}


def event_sentence(event, experiences: Mapping[str, ExperienceNamed] | None = None) -> SafeString:
    """The event in one sentence (safe HTML)."""
    experiences = experiences or {}
    if event.type == "TRACKING":
        return tracking_sentence(event, experiences)
    sentence = BY_DOOR.get(event.door) or BY_TYPE.get(event.type)
    if sentence is None:
        return with_details(
            format_html("Sent <em>{}</em>", event.name or event.type), event.properties or {}
        )
    return sentence(event, experiences)
