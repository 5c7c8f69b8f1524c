"""Processing a batch of messages, as a list of steps read from settings (like ``MIDDLEWARE``).

``FOOTPRINT["PIPELINE"]`` names each step by its dotted path, in order. A step takes the
``Batch`` and changes it: drops messages, resolves their guests, places them in sessions,
stores them. The steps of the apps above ``tracking`` (profiles: erasure, identity, sessions,
segments) plug in by name, so ``tracking`` never imports them. The whole list runs inside the
caller's transaction; once no message is left, the rest is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from .messages import Message


@dataclass
class Batch:
    messages: list[Message]
    # Source id -> its dedup window; workspace id -> its session timeout.
    dedup_windows: dict[int, timedelta]
    session_timeouts: dict[int, timedelta]
    event_ids: list[int] = field(default_factory=list)
    duplicates: int = 0
    suppressed: int = 0
    # What one step leaves for a later one (the guest resolution for the sessions step).
    notes: dict = field(default_factory=dict)
    # Dedup keys are claimed on a connection of their own and committed at once (the drain:
    # other drains never wait for this batch's transaction to learn whether an id is taken).
    keys_apart: bool = False


Step = Callable[[Batch], None]


@cache
def _steps(paths: tuple[str, ...]) -> list[Step]:
    return [import_string(path) for path in paths]


def steps() -> list[Step]:
    return _steps(tuple(settings.FOOTPRINT["PIPELINE"]))


def batch_run(batch: Batch) -> Batch:
    for step in steps():
        if not batch.messages:
            break
        step(batch)
    return batch


@cache
def _hooks(paths: tuple[str, ...]) -> list[Callable]:
    return [import_string(path) for path in paths]


def hooks(name: str) -> list[Callable]:
    """The callables ``FOOTPRINT[name]`` names (what follows a guest merge, retention's
    targets): how a lower layer calls what the layers above it add."""
    return _hooks(tuple(settings.FOOTPRINT[name]))


def hook(name: str) -> Callable:
    """The one callable ``FOOTPRINT[name]`` names."""
    return _hooks((settings.FOOTPRINT[name],))[0]


# --- tracking's own steps ---------------------------------------------------------------------


def ips_anonymize(batch: Batch) -> None:
    """Zero the host part of addresses where the workspace asks for it, before anything else."""
    from .store import messages_ip_anonymize

    messages_ip_anonymize(messages=batch.messages)


def duplicates_drop(batch: Batch) -> None:
    """Keep the messages whose messageId is new in their workspace (claims the dedup keys)."""
    from .store import dedup_claim

    fresh = dedup_claim(
        messages=batch.messages, dedup_windows=batch.dedup_windows, apart=batch.keys_apart
    )
    batch.duplicates += len(batch.messages) - len(fresh)
    batch.messages = fresh


def events_insert(batch: Batch) -> None:
    """Store one event per message (their guests and sessions are set by now)."""
    from .store import events_insert as insert

    batch.event_ids = insert(batch.messages)


def rollups_count(batch: Batch) -> None:
    """Add the stored events to the hourly rollups and the event and trait catalogue."""
    from .store import rollups_count as count

    count(batch.messages)
