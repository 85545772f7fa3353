"""The portal driven by Debian's Chromium (headless, through Selenium and chromedriver).

A customer signs in, approves a pending remote session, confirms a resolved ticket and
switches the language to zh-CN, against a real collector on real HTTPS. Screenshots of
the main pages go to ``$AFTERCARE_SCREENSHOTS`` (default: the test's tmp dir); look at
them. Skips, saying why, where chromium or chromium-driver is not installed
(``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector.portal_support import PASSWORD, PortalCollector

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="needs Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[PortalCollector]:
    running = PortalCollector(tmp_path / "data")
    running.add_user("carol", "customer", "acme")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[Any]:
    driver = start_chrome()
    try:
        yield driver
    finally:
        driver.quit()


def start_chrome() -> Any:
    """A headless Debian Chromium through chromedriver, in English; quit() it."""
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1200,900")
    options.add_argument("--lang=en-US")
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    options.accept_insecure_certs = True  # the collector's own CA is not in Chromium's store
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_page_load_timeout(30)
    return driver


def shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("AFTERCARE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def heading(chrome: Any, expected: str) -> str:
    """The page's h1 once it contains ``expected`` (a click navigates asynchronously)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def current(driver: Any) -> str | bool:
        try:
            text = str(driver.find_element(By.TAG_NAME, "h1").text)
        except (StaleElementReferenceException, WebDriverException):
            return False
        return text if expected in text else False

    try:
        return str(WebDriverWait(chrome, 15).until(current))
    except WebDriverException as exc:
        page = chrome.find_element(By.TAG_NAME, "body").text[:500]
        raise AssertionError(f"no heading with {expected!r}; the page says: {page}") from exc


def test_customer_approves_a_session_confirms_a_ticket_and_reads_chinese(
    collector: PortalCollector, chrome: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    shots = shots_dir(tmp_path)
    agent = collector.add_host("ag-acme1", "acme", "db1")
    session = collector.request_session(agent, "check the RAID controller")
    ticket_id = collector.resolved_ticket("acme", "Disk /var nearly full on db1")

    chrome.get(collector.url + "/")
    assert chrome.current_url.endswith("/login")
    chrome.save_screenshot(str(shots / "1-login.png"))
    chrome.find_element(By.ID, "name").send_keys("carol")
    chrome.find_element(By.ID, "password").send_keys(PASSWORD)
    chrome.find_element(By.ID, "sign-in").click()
    assert heading(chrome, "Overview") == "Overview"
    waiting = chrome.find_element(By.ID, "waiting").text
    assert "db1" in waiting and "check the RAID controller" in waiting
    chrome.save_screenshot(str(shots / "2-overview.png"))

    chrome.find_element(By.CSS_SELECTOR, f'a[href="/sessions/{session.session_id}"]').click()
    heading(chrome, session.session_id)
    chrome.save_screenshot(str(shots / "3-session-request.png"))
    chrome.find_element(By.ID, "minutes").send_keys("30")
    chrome.find_element(By.ID, "approve").click()
    heading(chrome, "approved")
    assert collector.session(session.session_id).state == "approved"
    chrome.save_screenshot(str(shots / "4-session-approved.png"))

    chrome.get(f"{collector.url}/tickets/{ticket_id}")
    heading(chrome, "resolved")
    chrome.save_screenshot(str(shots / "5-ticket-resolved.png"))
    chrome.find_element(By.ID, "confirm").click()
    heading(chrome, "closed")
    assert collector.db("get_ticket", ticket_id).state == "closed"

    chrome.get(collector.url + "/")
    heading(chrome, "Overview")
    chrome.find_element(By.CSS_SELECTOR, '#language option[value="zh-CN"]').click()
    chrome.find_element(By.ID, "set-language").click()
    assert heading(chrome, "概览") == "概览"
    assert "待您处理" in chrome.find_element(By.ID, "waiting").text
    chrome.save_screenshot(str(shots / "6-overview-zh-CN.png"))
    chrome.get(f"{collector.url}/tickets/{ticket_id}")
    heading(chrome, "已关闭")
    chrome.save_screenshot(str(shots / "7-ticket-zh-CN.png"))
    chrome.set_window_size(390, 844)  # a phone
    chrome.get(collector.url + "/")
    heading(chrome, "概览")
    chrome.save_screenshot(str(shots / "8-overview-phone.png"))


def test_customer_enrols_a_browser_key_and_signs_a_session_approval(
    collector: PortalCollector, chrome: Any, tmp_path: Path
) -> None:
    """WebCrypto Ed25519 key in the browser, certified by the customer's root, signs."""
    import base64

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from collector.store.base import ApproverRecord
    from common.approval_format import ApproverCertificate, fingerprint, seal
    from tests.consent_support import CustomerRoot, now_ms

    shots = shots_dir(tmp_path)
    root = CustomerRoot("acme")
    agent = collector.add_host("ag-acme9", "acme", "db9", root=root.fingerprint)
    session = collector.request_session(agent, "signed in the browser")
    chrome.get(collector.url + "/login")
    chrome.find_element(By.ID, "name").send_keys("carol")
    chrome.find_element(By.ID, "password").send_keys(PASSWORD)
    chrome.find_element(By.ID, "sign-in").click()
    heading(chrome, "Overview")

    chrome.get(collector.url + "/approval-key")
    chrome.find_element(By.ID, "create-key").click()
    WebDriverWait(chrome, 15).until(
        lambda d: d.find_element(By.ID, "key-fingerprint").text.startswith("sha256:")
    )
    shown = chrome.find_element(By.ID, "key-fingerprint").text
    public = base64.b64decode(chrome.find_element(By.ID, "key-public").text)
    assert shown == fingerprint(public)
    chrome.save_screenshot(str(shots / "sign-1-enrol.png"))

    now = now_ms()
    certificate = ApproverCertificate(
        "acme", "carol", public, root.public, now - 60_000, now + 3_600_000
    )
    document = seal(certificate.body(), root.key.sign).encode()
    collector.db(
        "add_approver",
        ApproverRecord(
            "acme",
            shown,
            "carol",
            root.fingerprint,
            now - 60_000,
            now + 3_600_000,
            document,
            now,
            "user:admin",
        ),
    )

    chrome.get(f"{collector.url}/sessions/{session.session_id}")
    WebDriverWait(chrome, 15).until(
        lambda d: session.session_id in d.find_element(By.ID, "sign-summary").text
    )
    assert chrome.find_element(By.ID, "sign-fingerprint").text == shown
    summary = chrome.find_element(By.ID, "sign-summary").text
    assert "a remote session" in summary and "Access until" in summary and "{" not in summary
    exact = chrome.find_element(By.ID, "sign-text").get_attribute("textContent")
    assert exact.startswith("{") and session.session_id in exact  # the bytes, in <details>
    chrome.save_screenshot(str(shots / "sign-2-session.png"))
    chrome.find_element(By.ID, "approve").click()
    heading(chrome, "approved")
    approved = collector.session(session.session_id)
    assert approved.state == "approved" and approved.signed_approval
    chrome.save_screenshot(str(shots / "sign-3-approved.png"))
