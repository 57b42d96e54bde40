"""The Celery app: Redis broker, one queue per kind of job (DESIGN.md, Jobs)."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")

app = Celery("chatproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue("default"), Queue("unfurl"), Queue("search"), Queue("io")]
app.autodiscover_tasks()
