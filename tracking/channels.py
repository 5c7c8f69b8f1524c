"""One channel vocabulary for every door: Sitecore's upper-case names.

A session belongs to a guest and a channel (SPEC section 5), so one visit is one session only
if every door names its channel alike. Each door passes its own word through
``channel_normalise``: the Segment spec's ``browser``/``mobile``/``server`` (``context.channel``,
or the source's kind when the message does not say), ``/collect``'s ``context.channel``, the
Stream door's and ``/v2/callFlows``' ``channel``.

- Sitecore's names, in any case, are themselves (``web`` is ``WEB``).
- ``browser`` is ``WEB``; ``mobile``, ``ios`` and ``android`` are ``MOBILE_APP`` (the Segment
  spec's ``mobile`` is its iOS and Android SDKs, that is apps).
- ``server`` is ``SERVER_SIDE``, the server-side name the Stream door has always listed (a
  ``SERVER`` beside it would be a second name for one channel).
- ``pos`` (a point-of-sale source) is ``BRANCH``, Sitecore's channel for a physical store.
- Any other value is a business's own channel (as the Stream door has always accepted one): it
  is kept, upper-cased, rather than refused, so that an SDK's unexpected word never costs the
  event.
"""

from __future__ import annotations

from django.db.models import Case, CharField, Value, When
from django.db.models.functions import Lower, Trim, Upper
from django.db.models.lookups import In

MAX_LENGTH = 32

WEB = "WEB"
MOBILE_APP = "MOBILE_APP"
SERVER_SIDE = "SERVER_SIDE"
BRANCH = "BRANCH"

# The vocabulary: Sitecore's names as the Stream door has always listed them, with the labels
# the admin shows for them.
LABELS = {
    WEB: "Web",
    "MOBILE_WEB": "Mobile web",
    MOBILE_APP: "Mobile app",
    "APP": "App",
    "EMAIL": "Email",
    "SMS": "SMS",
    "CALL_CENTER": "Call center",
    BRANCH: "Branch (store)",
    "KIOSK": "Kiosk",
    "OFFLINE": "Offline",
    "SOCIAL": "Social",
    SERVER_SIDE: "Server side",
    "OTHER": "Other",
}
CHANNELS = tuple(LABELS)
CHOICES = [(name, label) for name, label in LABELS.items()]
HELP_TEXT = (
    "Sitecore's channel names (WEB, MOBILE_APP, SERVER_SIDE, …; every door's own word is stored "
    "as one of them) or the business's own, upper case."
)

# Other doors' words for the same channels, lower case.
ALIASES = {
    "browser": WEB,
    "mobile": MOBILE_APP,
    "ios": MOBILE_APP,
    "android": MOBILE_APP,
    "server": SERVER_SIDE,
    "pos": BRANCH,
}


def channel_normalise(value: str) -> str:
    """The vocabulary's name for a door's channel word ("" when there is none)."""
    text = value.strip()
    return ALIASES.get(text.lower()) or text.upper()[:MAX_LENGTH]


def channel_of_source_kind(kind: str) -> str:
    """The channel of a source's events when they do not name one."""
    return channel_normalise(kind)


def channel_label(name: str) -> str:
    """What the admin shows for a channel: its label, or a business's own name as it is."""
    return LABELS.get(name, name)


def channel_normalised_sql(field: str = "channel") -> Case:
    """``channel_normalise`` of a column as one SQL expression, for set-based updates of stored
    values. It agrees with ``channel_normalise`` on ASCII values; SQL's ``TRIM`` takes spaces
    only, and for other letters the database's ``UPPER`` decides."""
    trimmed = Trim(field)
    targets: dict[str, list[str]] = {}
    for word, name in ALIASES.items():
        targets.setdefault(name, []).append(word)
    return Case(
        *[When(In(Lower(trimmed), words), then=Value(name)) for name, words in targets.items()],
        default=Upper(trimmed),
        output_field=CharField(),
    )
