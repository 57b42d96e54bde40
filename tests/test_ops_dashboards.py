"""The operations dashboards in Django admin: breakers (seen and steered, staff only, POST
with CSRF), job queues and outcomes, event log sizes per team."""

import re
import time

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django_redis import get_redis_connection

from chatproject.dbrouter import on_shard
from jobs.breakers import FORCED_OPEN, BreakerOpen, SharedCircuitBreaker, breaker_status, force, reset
from jobs.tasks import prune_event_logs, unfurl_link
from messaging.models import Event
from ops.job_stats import FAILURES_KEY, OUTCOMES_KEY, RUNNING_KEY, RUNNING_STALE_SECS
from teams.models import Account
from tests.conftest import World

pytestmark = pytest.mark.django_db(databases="__all__")

BREAKERS = "/admin/ops/circuitbreaker/"
JOBS = "/admin/ops/jobqueue/"
EVENT_LOGS = "/admin/ops/eventlog/"
KEY = "dashboard:test-upstream"


@pytest.fixture
def clean_redis():
    connection = get_redis_connection("default")
    connection.delete(OUTCOMES_KEY, RUNNING_KEY, FAILURES_KEY, "io")
    reset(KEY)
    yield connection
    reset(KEY)
    connection.delete(OUTCOMES_KEY, RUNNING_KEY, FAILURES_KEY, "io")


def _login(email: str, *, superuser: bool = False, perms: tuple[str, ...] = ()) -> Client:
    client = Client(enforce_csrf_checks=True)
    if superuser:
        account = Account.objects.create_superuser(email, "pw")
    else:
        account = Account.objects.create_user(email, "pw", is_staff=True)
        account.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="ops", codename__in=perms)
        )
    client.force_login(account)
    return client


def _csrf(client: Client, url: str) -> str:
    page = client.get(url)
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)


def _fail_calls(key: str, n: int) -> None:
    breaker = SharedCircuitBreaker(key)

    def failing() -> None:
        raise ConnectionError("upstream down")

    for _ in range(n):
        with pytest.raises((ConnectionError, BreakerOpen)):
            breaker.call(failing)


def test_breakers_page_shows_state_rate_and_transitions(world: World, clean_redis) -> None:
    client = _login("root@ops.test", superuser=True)

    def row() -> str:
        page = client.get(BREAKERS)
        assert page.status_code == 200
        return re.search(
            rf'<tr class="breaker" data-key="{KEY}">(.*?)</tr>', page.content.decode(), re.S
        ).group(1)

    _fail_calls(KEY, 4)
    for _ in range(4):
        SharedCircuitBreaker(KEY).call(lambda: None)
    assert '<td class="state">closed</td>' in row() and "<td>50%</td>" in row()  # 4 of 8 calls
    _fail_calls(KEY, 2)  # the default policy opens at half of >= 10 calls failing
    assert '<td class="state">open</td>' in row()
    html = client.get(BREAKERS).content.decode()
    assert re.search(rf"<td>{KEY}</td><td>closed-&gt;open</td><td>automatic</td>", html)


def test_staff_force_a_breaker_with_post_and_csrf(world: World, clean_redis) -> None:
    _fail_calls(KEY, 1)
    client = _login("root@ops.test", superuser=True)
    assert client.post(BREAKERS, {"key": KEY, "command": "force-open"}).status_code == 403  # no CSRF token
    assert breaker_status(KEY).state == "closed"
    token = _csrf(client, BREAKERS)
    answer = client.post(BREAKERS, {"key": KEY, "command": "force-open", "csrfmiddlewaretoken": token})
    assert answer.status_code == 302 and breaker_status(KEY).state == FORCED_OPEN
    with pytest.raises(BreakerOpen):
        SharedCircuitBreaker(KEY).call(lambda: None)
    for command, state in (("force-closed", "forced-closed"), ("disable", "disabled"), ("reset", "closed")):
        client.post(BREAKERS, {"key": KEY, "command": command, "csrfmiddlewaretoken": token})
        assert breaker_status(KEY).state == state
    html = client.get(BREAKERS).content.decode()
    assert "forced-open-&gt;forced-closed" in html and "manual" in html
    assert client.get(BREAKERS).status_code == 200
    assert (
        client.post(BREAKERS, {"key": KEY, "command": "explode", "csrfmiddlewaretoken": token}).status_code
        == 302
    )
    assert breaker_status(KEY).state == "closed"


def test_only_staff_with_permissions_see_or_steer(world: World, clean_redis) -> None:
    force(KEY, FORCED_OPEN)
    assert Client().get(BREAKERS).status_code == 302  # to the admin login
    member = Client()
    member.force_login(Account.objects.create_user("member@ops.test", "pw"))
    assert member.get(BREAKERS).status_code == 302
    nobody = _login("staff@ops.test")
    assert nobody.get(BREAKERS).status_code == 403
    viewer = _login("viewer@ops.test", perms=("view_circuitbreaker",))
    page = viewer.get(BREAKERS)
    assert (
        page.status_code == 200
        and KEY in page.content.decode()
        and 'name="command"' not in page.content.decode()
    )
    viewer_token = _csrf(_login("root@ops.test", superuser=True), BREAKERS)
    viewer.cookies["csrftoken"] = viewer_token
    refused = viewer.post(BREAKERS, {"key": KEY, "command": "reset", "csrfmiddlewaretoken": viewer_token})
    assert refused.status_code == 403 and breaker_status(KEY).state == FORCED_OPEN


def test_jobs_page_counts_outcomes_and_queue_depth(world: World, clean_redis) -> None:
    prune_event_logs.apply()
    prune_event_logs.apply()
    unfurl_link.apply(args=("shard_0",))  # missing arguments: the run fails
    prune_event_logs.apply_async(queue="io")  # no worker here: it waits in the queue
    html = _login("root@ops.test", superuser=True).get(JOBS).content.decode()
    assert re.search(r"<td>io</td><td class=\"waiting\">1</td>", html)
    prune = re.search(r'data-task="jobs.prune_event_logs">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r"<td>(\d+)</td>", prune) == ["0", "2", "0", "0"]
    unfurl = re.search(r'data-task="jobs.unfurl">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r"<td>(\d+)</td>", unfurl) == ["0", "0", "1", "0"]
    assert "TypeError" in html  # the failure, listed with its error
    assert "No import or export is running." in html


def test_a_killed_workers_running_entry_goes_with_no_reader(clean_redis) -> None:
    """A task's start drops the entries of tasks whose worker died (never read, they would
    pile up for good), keeps those of tasks still running, and sets the set to expire."""
    now = time.time()
    clean_redis.zadd(
        RUNNING_KEY,
        {"killed|jobs.unfurl": now - RUNNING_STALE_SECS - 1, "long-import|jobs.import_slack": now - 60},
    )
    prune_event_logs.apply()
    assert clean_redis.zrange(RUNNING_KEY, 0, -1) == [b"long-import|jobs.import_slack"]
    assert 0 < clean_redis.ttl(RUNNING_KEY) <= RUNNING_STALE_SECS


def test_event_log_page_shows_each_teams_log(world: World, api) -> None:
    for n in range(3):
        api(
            "chat.postMessage", world.acme["alice"].token, channel=world.acme.channels["general"], text=str(n)
        )
    with on_shard("shard_0"):
        acme_events = Event.objects.filter(team_id=world.acme.team.id).count()
    with on_shard("shard_1"):
        globex_events = Event.objects.filter(team_id=world.globex.team.id).count()
    html = _login("root@ops.test", superuser=True).get(EVENT_LOGS).content.decode()
    acme = re.search(r'data-team="acme"><td>acme</td><td class="events">(\d+)</td>', html).group(1)
    globex = re.search(r'data-team="globex"><td>globex</td><td class="events">(\d+)</td>', html).group(1)
    assert (int(acme), int(globex)) == (acme_events, globex_events)
    assert acme_events >= 3
