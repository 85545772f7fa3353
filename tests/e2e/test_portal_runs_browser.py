"""A playbook run through the portal, end to end with real parts: the collector process
with its portal serving a vendor-signed catalogue, a real agent that pins the
customer's approval root, the customer's administrator on the real ``aftercare`` CLI,
and two headless Debian Chromiums (the engineer's and the customer's).

The engineer starts a mutating run from the fleet page and keeps its page open; the
customer creates a WebCrypto key in the browser, the administrator certifies it with
the root, the customer reads the translated summary and signs the approval in the
browser; the AGENT verifies that signature against its pinned root and runs the
playbook; the engineer's open page shows the output as it comes. Screenshots go to
``$AFTERCARE_SCREENSHOTS`` (default: the test's tmp dir): look at them.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector.portal_support import PASSWORD
from tests.e2e.test_portal_browser import CHROMIUM, DRIVER, heading, shots_dir, start_chrome
from tests.e2e.test_signed_path import People
from tests.support import PYTHON, REPO, Agent, Collector, free_port, vendor_catalogue, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="needs Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver)",
    ),
]

# Mutating (so it waits for the customer), with output spread over a few seconds.
PLAYBOOK = """name: rotate-marker
version: 1.2.0
description: Rotates the application's marker (a test playbook) and says so.
mode: mutating
collects: nothing; it prints three lines
parameters:
  - name: word
    type: string
    description: what to print at the end
    pattern: '[a-z]+'
    required: true
steps:
  - name: first
    exec:
      argv: ["echo", "tick-one"]
  - name: pause
    exec:
      argv: ["sleep", "4"]
  - name: last
    exec:
      argv: ["echo", "{{ word }}"]
"""


@pytest.fixture
def people(tmp_path: Path) -> People:
    return People(tmp_path)


@pytest.fixture
def site(
    tmp_path: Path, make_agent: Callable[..., Agent], people: People
) -> Iterator[tuple[Collector, Agent, str]]:
    """(collector, agent web-1 of acme pinning the root, the portal's URL)."""
    vendor_key = vendor_catalogue(tmp_path, {"rotate-marker.yaml": PLAYBOOK})
    web = f"127.0.0.1:{free_port()}"
    collector = Collector(
        tmp_path / "collector",
        extra_args=["--playbooks", str(tmp_path / "catalogue"), "--web-listen", web],
    )
    collector.start()
    try:
        agent = make_agent(
            "web-1",
            playbooks={"trusted_keys": [str(vendor_key)]},
            approvals={"root": people.root_fingerprint},
        )
        assert agent.enroll(collector.join_command("acme")).returncode == 0
        agent.start()
        yield collector, agent, f"https://{web}"
    finally:
        collector.stop()
        print("--- collector log ---\n" + collector.log_text()[-5000:])


def portal_user(collector: Collector, name: str, role: str, customer: str = "") -> str:
    token = collector.add_user(name, role, customer or None)
    result = subprocess.run(
        [PYTHON, "-m", "collector.cli", "user", "passwd", name,
         "--data-dir", str(collector.data_dir)],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return token


def sign_in(chrome: Any, url: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    chrome.get(url + "/login")
    chrome.find_element(By.ID, "name").send_keys(name)
    chrome.find_element(By.ID, "password").send_keys(PASSWORD)
    chrome.find_element(By.ID, "sign-in").click()
    heading(chrome, "")


def text_of(chrome: Any, element_id: str) -> str:
    """The element's text; "" while the page is being replaced (the run page reloads
    itself when the run finishes)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(chrome.find_element(By.ID, element_id).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def test_engineer_starts_a_run_customer_signs_it_in_the_browser_agent_runs_it_live(
    site: tuple[Collector, Agent, str], people: People, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    collector, agent, url = site
    shots = shots_dir(tmp_path)
    erin = portal_user(collector, "erin", "engineer")
    alice = portal_user(collector, "alice", "customer", "acme")
    wait_for(lambda: collector.client_json(erin, "agents")[0]["connected"], 20, "connected")
    engineer, customer = start_chrome(), start_chrome()
    try:
        # The engineer: fleet -> run a playbook -> pick it -> fill its parameter.
        sign_in(engineer, url, "erin")
        engineer.get(url + "/fleet")
        engineer.find_element(By.CSS_SELECTOR, "a.host-run").click()
        heading(engineer, "web-1")
        engineer.find_element(By.ID, "choose-rotate-marker").click()
        heading(engineer, "web-1")
        engineer.find_element(By.ID, "param-word").send_keys("finished")
        engineer.find_element(By.ID, "reason").send_keys("rotate after the incident")
        engineer.save_screenshot(str(shots / "run-1-start-form.png"))
        engineer.find_element(By.ID, "start-run").click()
        heading(engineer, "Playbook run")
        run_id = engineer.current_url.rsplit("/", 1)[-1]
        wait_for(lambda: "waiting_approval" in text_of(engineer, "run-state"), 20, "waiting")
        engineer.execute_script("window.stillTheSamePage = true;")
        engineer.save_screenshot(str(shots / "run-2-engineer-waiting.png"))

        # The customer: a browser key, certified by the administrator with the root.
        sign_in(customer, url, "alice")
        customer.get(url + "/approval-key")
        customer.find_element(By.ID, "create-key").click()
        wait_for(lambda: text_of(customer, "key-fingerprint").startswith("sha256:"), 15, "key")
        public = text_of(customer, "key-public")
        assert len(base64.b64decode(public)) == 32
        certified = people.cli(
            collector, alice, "admin", "approvers", "add", "alice",
            "--key", public, "--customer", "acme", "--root-key", str(people.root_key),
        )  # fmt: skip
        assert certified.returncode == 0, certified.stderr

        customer.get(url + "/")
        customer.find_element(By.CSS_SELECTOR, f'a[href="/runs/{run_id}"]').click()
        heading(customer, run_id)
        wait_for(lambda: "rotate-marker" in text_of(customer, "sign-summary"), 15, "summary")
        summary = text_of(customer, "sign-summary")
        for shown in ("a playbook run", "1.2.0", "word=finished", "web-1", "expires"):
            assert shown in summary or shown in summary.lower(), summary
        assert "sleep 4" in text_of(customer, "declared-steps")  # what it runs, declared
        customer.set_window_size(1200, 2200)
        customer.save_screenshot(str(shots / "run-3-customer-signs.png"))
        customer.find_element(By.ID, "approve").click()
        state = lambda: collector.client_json(erin, "run", "show", run_id)["run"]["state"]  # noqa: E731
        wait_for(lambda: state() != "waiting_approval", 20, "approved")

        # The engineer's page, never reloaded, shows the output as the host sends it.
        wait_for(lambda: "tick-one" in text_of(engineer, "run-output"), 30, "live output")
        assert engineer.execute_script("return window.stillTheSamePage === true;")
        assert "finished" not in text_of(engineer, "run-output")  # still sleeping: live
        engineer.save_screenshot(str(shots / "run-4-engineer-live.png"))
        wait_for(lambda: "finished" in text_of(engineer, "run-output"), 30, "the last step")
        wait_for(lambda: engineer.find_elements(By.ID, "run-steps"), 20, "the result")
        assert "ok" in text_of(engineer, "run-state")
        engineer.set_window_size(1200, 1800)
        engineer.save_screenshot(str(shots / "run-5-engineer-result.png"))
        refused = [e for e in engineer.get_log("browser") if "Content Security" in e["message"]]
        assert refused == []
    finally:
        engineer.quit()
        customer.quit()

    runs_log = (agent.state_dir / "runs.log").read_text()
    assert "signed by alice of acme" in runs_log  # the agent verified the browser's signature
