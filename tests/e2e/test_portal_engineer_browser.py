"""The engineer's flow in Debian's Chromium (headless, Selenium): queue -> ticket ->
acknowledge, comment, resolve; then the fleet on a phone-sized window. Screenshots go
to ``$AFTERCARE_SCREENSHOTS`` (default: the test's tmp dir). Skips like
test_portal_browser.py where chromium or chromium-driver is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.tickets.service import ManualTicket
from tests.collector.portal_support import ENGINEER, PASSWORD, PortalCollector
from tests.e2e.test_portal_browser import (  # noqa: F401  (fixture)
    chrome,
    heading,
    pytestmark,
    shots_dir,
)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[PortalCollector]:
    running = PortalCollector(tmp_path / "data")
    running.add_user("erin", "engineer")
    try:
        yield running
    finally:
        running.stop()


def test_engineer_takes_a_ticket_from_the_queue_and_resolves_it(
    collector: PortalCollector,
    chrome: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    shots = shots_dir(tmp_path)
    collector.add_host("ag-acme1", "acme", "db1")
    tickets = collector.server.tickets
    assert tickets is not None
    ticket_id = collector.call(
        tickets.create(ENGINEER, ManualTicket("Disk /var nearly full on db1", "", "2", "acme"))
    )

    chrome.get(collector.url + "/login")
    chrome.find_element(By.ID, "name").send_keys("erin")
    chrome.find_element(By.ID, "password").send_keys(PASSWORD)
    chrome.find_element(By.ID, "sign-in").click()
    heading(chrome, "Overview")
    chrome.find_element(By.ID, "queue-link").click()
    heading(chrome, "Ticket queue")
    chrome.save_screenshot(str(shots / "e1-queue.png"))
    chrome.find_element(By.CSS_SELECTOR, f'td a[href="/tickets/{ticket_id}"]').click()
    heading(chrome, f"#{ticket_id}")
    chrome.save_screenshot(str(shots / "e2-ticket.png"))

    chrome.find_element(By.ID, "acknowledge").click()
    heading(chrome, "acknowledged")
    chrome.find_element(By.ID, "comment-text").send_keys("rotating the logs now")
    chrome.find_element(By.ID, "comment").click()
    heading(chrome, f"#{ticket_id}")
    for field, text in (
        ("cause", "logs not rotated"),
        ("actions", "rotated logs"),
        ("prevention", "logrotate daily"),
    ):
        chrome.find_element(By.ID, field).send_keys(text)
    chrome.find_element(By.ID, "resolve").click()
    heading(chrome, "resolved")
    assert "rotating the logs now" in chrome.find_element(By.CLASS_NAME, "timeline").text
    chrome.save_screenshot(str(shots / "e3-resolved.png"))
    assert collector.db("get_ticket", ticket_id).state == "resolved"

    chrome.set_window_size(390, 844)  # a phone
    chrome.get(collector.url + "/fleet")
    heading(chrome, "Fleet")
    assert "db1" in chrome.find_element(By.TAG_NAME, "table").text
    chrome.save_screenshot(str(shots / "e4-fleet-phone.png"))
    chrome.get(f"{collector.url}/tickets/{ticket_id}")
    chrome.save_screenshot(str(shots / "e5-ticket-phone.png"))
