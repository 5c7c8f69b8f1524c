"""Celery tasks of experiences: thin wrappers over services, safe to run twice."""

from celery import shared_task
from django.core.cache import cache

from .models import Experience
from .results_cache import experiences_live_refresh, results_refresh


@shared_task
def experiences_results_refresh() -> int:
    """Keep the results of every live experience in the cache (run by beat)."""
    return experiences_live_refresh()


@shared_task
def experience_results_refresh(experience_id: int) -> bool:
    """Keep one experience's results in the cache (queued by a page that found none)."""
    experience = (
        Experience.objects.filter(pk=experience_id).prefetch_related("variants", "metrics").first()
    )
    try:
        if experience is None:
            return False
        results_refresh(experience=experience)
        return True
    finally:
        cache.delete(f"footprint:experience-results-queued:{experience_id}")
