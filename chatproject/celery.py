"""The Celery app: Redis broker, one queue per kind of job (DESIGN.md, Jobs)."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")

app = Celery("chatproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue("default"), Queue("unfurl"), Queue("search"), Queue("io")]
app.conf.task_routes = {
    "jobs.unfurl": {"queue": "unfurl"},
    "jobs.drain_unfurls": {"queue": "unfurl"},
    "jobs.index_messages": {"queue": "search"},
    "jobs.import_*": {"queue": "io"},
    "jobs.export_*": {"queue": "io"},
    "teams.move_team": {"queue": "io"},
}
# Celery's Django fixup closes every database connection around every task unless told
# how many tasks a connection may serve; a task per post must not open a session per post.
app.conf.CELERY_DB_REUSE_MAX = 1000
# A worker reserves one task per slot (process or thread): a slow upstream holds one slot,
# and the tasks queued behind it go to slots that are free.
app.conf.worker_prefetch_multiplier = 1
app.autodiscover_tasks()
# Task modules besides each app's tasks.py, which is all autodiscovery finds.
app.conf.imports = ["jobs.search_tasks", "jobs.transfer_tasks"]
