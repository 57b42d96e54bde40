"""The admin page's import and export, end to end on a real Celery worker: upload a small
Slack export, watch the progress bar reach done, find the channels in the new team; then
export a team and download the zip from the link."""

import zipfile

import pytest

from tests import slack_fixtures as fx
from tests.browser import TIMEOUT_MS, screenshot, session_cookie
from tests.conftest import World
from tests.servers import running_worker

pytestmark = [pytest.mark.django_db(databases="__all__", transaction=True), pytest.mark.browser]

JOB_SECS = 120_000  # ms: a job on a loaded machine


def test_import_and_export_from_the_admin_page(world: World, chromium, web_server, tmp_path) -> None:
    archive = fx.write_zip(tmp_path / "Old Co Slack export.zip", fx.export_files())
    context = chromium.new_context(accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_cookies([{**session_cookie("alice@acme.test", world.acme.team.id), "url": web_server.http}])
    page = context.new_page()
    page.on("pageerror", lambda e: print(f"page error: {e}"))
    with running_worker("io", concurrency=1):
        page.goto(web_server.http + "/team-admin/")
        page.set_input_files("#import-file", str(archive))
        page.click("#import-form button[type=submit]")
        page.wait_for_selector("#import-job:visible")
        page.wait_for_selector("#import-progress[data-status=done]", timeout=JOB_SECS)
        bar = page.locator("#import-progress")
        assert bar.get_attribute("value") == bar.get_attribute("max") != "1"
        assert page.locator("#import-errors li").count() == 0
        domain = page.inner_text("#import-done .job-domain")
        assert domain == "old-co"
        screenshot(page, "import-done")

        page.click("#export-start")
        page.wait_for_selector("#export-progress[data-status=done]", timeout=JOB_SECS)
        with page.expect_download() as download:
            page.click("#export-download")
        with zipfile.ZipFile(download.value.path()) as exported:
            assert "channels.json" in exported.namelist()
        screenshot(page, "export-done")

    page.click("#import-done a")
    page.click(f".teams button:has-text('{domain}')")
    page.wait_for_selector("#client[data-state=live]")
    # The importer is the new team's owner, not in the archive: they are put in #general
    # (and nothing else), and every public channel is there to browse.
    page.wait_for_selector("#channel-title:text-is('#general')")
    page.click("#browse-channels")
    listed = page.locator("#dialog .pick .label").all_inner_texts()
    assert {"#general", "#random"} <= set(listed), listed
    page.click("#dialog .pick:has-text('#random')")
    page.wait_for_selector("#channel-title:text-is('#random')")
    page.locator("#messages .msg").first.wait_for()
    assert "random" in page.locator("#sidebar .conv .name").all_inner_texts()
    screenshot(page, "imported-team")
    context.close()
