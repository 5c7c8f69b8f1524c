"""Experiment results kept in the cache, so pages read them instead of computing them.

Results read every exposure and every metric event of an experience: seconds on millions of
events, too slow for a page. Beat's ``experiences-results-refresh`` computes the results and
the summary of every live experience every few minutes (``experiences_live_refresh``); the
dashboard reads only what it kept, and the experience list and page queue a refresh for an
experience they find nothing for (a paused or completed one, or one just launched).

An entry is keyed by the experience and a fingerprint of what its results depend on (status,
schedule, analysis settings, variants, metrics), so a changed definition is never judged by
results computed for the old one.
"""

from __future__ import annotations

import hashlib
import json
import logging

from django.core.cache import cache
from django.forms.models import model_to_dict
from django.utils import timezone

from .models import Experience

logger = logging.getLogger(__name__)

# How long an entry is kept: live experiences are refreshed long before; the results of one
# that stopped change little, and are computed again when asked for after a day.
KEEP_SECONDS = 24 * 60 * 60
# A refresh queued for an experience is not queued again for this long.
QUEUED_SECONDS = 120

DEFINITION_FIELDS = [
    "status",
    "live_since",
    "starts_at",
    "ends_at",
    "sequential_testing",
    "cuped",
    "correction",
    "friendly_id",
]


def _fingerprint(experience: Experience) -> str:
    """What the results depend on, hashed (the variants and metrics as prefetched, if they are)."""
    definition = {
        "experience": model_to_dict(experience, fields=DEFINITION_FIELDS),
        "variants": sorted(
            (model_to_dict(v, exclude=["experience"]) for v in experience.variants.all()),
            key=lambda v: v["id"],
        ),
        "metrics": sorted(
            (model_to_dict(m, exclude=["experience"]) for m in experience.metrics.all()),
            key=lambda m: m["id"],
        ),
    }
    text = json.dumps(definition, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _key(experience: Experience) -> str:
    return f"footprint:experience-results:{experience.pk}:{_fingerprint(experience)}"


def results_cached(experience: Experience) -> dict | None:
    """``{"results", "summary", "computed_at"}`` as last computed for the experience as it is
    defined now, or None when nothing is kept."""
    return cache.get(_key(experience))


def results_many_cached(experiences) -> dict[int, dict]:
    """``results_cached`` of many experiences in one cache read, by experience id."""
    keys = {_key(experience): experience.pk for experience in experiences}
    return {keys[key]: value for key, value in cache.get_many(list(keys)).items()}


def results_refresh(*, experience: Experience) -> dict:
    """Compute the experience's results (with daily series) and summary, and keep them."""
    from .results import experience_results, experience_summary

    kept = {
        "results": experience_results(experience, daily=True),
        "summary": experience_summary(experience),
        "computed_at": timezone.now(),
    }
    cache.set(_key(experience), kept, KEEP_SECONDS)
    return kept


def experiences_live_refresh() -> int:
    """``results_refresh`` for every live experience (beat's job); one failing does not stop
    the others. How many were refreshed."""
    live = Experience.objects.filter(status=Experience.Status.LIVE).prefetch_related(
        "variants", "metrics"
    )
    refreshed = 0
    for experience in live.order_by("pk"):
        try:
            results_refresh(experience=experience)
        except Exception:  # one experience's bad data must not starve the others
            logger.exception("results of experience %s could not be computed", experience.pk)
            continue
        refreshed += 1
    return refreshed


def refresh_queue(experiences) -> None:
    """Queue a refresh of these experiences (each at most once per ``QUEUED_SECONDS``).

    Without a broker (development, tests) the task runs at once, so the caller finds the
    results in the cache when it reads again."""
    from .tasks import experience_results_refresh

    for experience in experiences:
        if cache.add(f"footprint:experience-results-queued:{experience.pk}", 1, QUEUED_SECONDS):
            try:
                experience_results_refresh.delay(experience.pk)
            except Exception:  # a broker outage must not take the page down
                logger.exception("refresh of experience %s could not be queued", experience.pk)
                cache.delete(f"footprint:experience-results-queued:{experience.pk}")
