"""What /metrics reads at scrape time: the multiprocess files of every process, plus the
state kept in Redis (circuit breakers, job queues and outcomes)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import psutil
from django.conf import settings
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import RedisError

from jobs.breakers import CLOSED, DISABLED, FORCED_CLOSED, FORCED_OPEN, HALF_OPEN, OPEN, all_breakers
from ops.job_stats import OUTCOMES, job_stats

logger = logging.getLogger(__name__)

BREAKER_STATES = (CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, FORCED_CLOSED, DISABLED)
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db$")


class RedisStateCollector(Collector):
    """Breakers and jobs as Redis holds them now; with Redis down, only `chat_redis_up 0`."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("chat_redis_up", "Whether /metrics could read Redis")
        try:
            breakers = all_breakers()
            jobs = job_stats()
        except RedisError as exc:
            logger.warning("metrics without Redis state: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        state = GaugeMetricFamily(
            "chat_breaker_state", "1 for the state each breaker is in", labels=["key", "state"]
        )
        rejections = CounterMetricFamily("chat_breaker_rejections", "Calls a breaker refused", labels=["key"])
        deferrals = CounterMetricFamily(
            "chat_breaker_deferrals", "Jobs rescheduled by a refusal", labels=["key"]
        )
        failure_rate = GaugeMetricFamily(
            "chat_breaker_failure_rate", "Failures/calls in the window", labels=["key"]
        )
        for breaker in breakers:
            for name in BREAKER_STATES:
                state.add_metric([breaker.key, name], 1 if breaker.state == name else 0)
            rejections.add_metric([breaker.key], breaker.rejections)
            deferrals.add_metric([breaker.key], breaker.deferrals)
            failure_rate.add_metric([breaker.key], breaker.failure_rate)
        yield from (state, rejections, deferrals, failure_rate)
        depth = GaugeMetricFamily("chat_queue_depth", "Jobs waiting in a Celery queue", labels=["queue"])
        for queue in jobs.queues:
            depth.add_metric([queue.name], queue.waiting)
        yield depth
        unacked = GaugeMetricFamily("chat_jobs_unacked", "Jobs taken by a worker, not yet acknowledged")
        unacked.add_metric([], jobs.unacked)
        yield unacked
        running = GaugeMetricFamily("chat_jobs_running", "Jobs running now", labels=["task"])
        for task_name, count in sorted(jobs.running.items()):
            running.add_metric([task_name], count)
        yield running
        outcomes = CounterMetricFamily("chat_job_outcomes", "Finished job runs", labels=["task", "outcome"])
        for task_name, counts in sorted(jobs.outcomes.items()):
            for outcome in OUTCOMES:
                outcomes.add_metric([task_name, outcome], counts.get(outcome, 0))
        yield outcomes


def forget_dead_processes(directory: Path) -> None:
    """Live gauges (open sockets, subscriptions) of a process that died without saying so
    (killed, crashed) would count forever; drop them. Processes share this machine."""
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.search(path.name)
        if match and not psutil.pid_exists(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), str(directory))


def exposition() -> bytes:
    directory = settings.METRICS_DIR
    forget_dead_processes(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    registry.register(RedisStateCollector())
    return generate_latest(registry)
