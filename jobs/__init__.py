"""Celery jobs (unfurl, search indexing, import/export) and their resilience layer."""
