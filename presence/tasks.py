"""Celery entry point for presence upkeep."""

from __future__ import annotations

from celery import shared_task

from presence.state import sweep


@shared_task(name="presence.sweep", ignore_result=True)
def sweep_presence() -> int:
    """Notice sockets whose process died and members gone idle (auto-away)."""
    return sweep()
