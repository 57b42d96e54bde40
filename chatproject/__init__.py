"""Project package: settings, URL and ASGI routing, the Celery app, the shard router."""

from chatproject.celery import app as celery_app

__all__ = ["celery_app"]
