"""Celery tasks of profiles: thin wrappers over services, safe to run twice."""

from celery import shared_task

from .sessions import sessions_close_idle as close_idle


@shared_task
def sessions_close_idle() -> int:
    """Close the sessions idle past their workspace's timeout (run by beat every minute)."""
    return close_idle()
