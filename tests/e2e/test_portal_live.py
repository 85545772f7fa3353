"""Watching a live session in the page, end to end with real parts: the collector
process with its portal and SSH gateway, an agent logging in to a real sshd, the stock
OpenSSH client on the engineer's side, and Debian's headless Chromium on the customer's.

The customer signs in, sees the pending request, approves it; the engineer logs in with
``ssh`` and types a marker; the customer sees it appear in the live player, terminates
the session, ssh ends; the replay page then plays the recording. Screenshots go to
``$AFTERCARE_SCREENSHOTS`` (default: the test's tmp dir): look at them.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.portal import player
from tests.collector.portal_support import PASSWORD
from tests.e2e.test_portal_browser import CHROMIUM, DRIVER, chrome, heading, shots_dir
from tests.gateway_support import World, make_world
from tests.support import PYTHON, REPO, Agent, free_port, wait_for

__all__ = ["chrome"]  # the fixture, shared with the other browser test

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None or shutil.which("ssh") is None,
        reason="needs chromium, chromium-driver and openssh-client (apt-get install them)",
    ),
    pytest.mark.skipif(
        not player.player_available(), reason="asciinema-player not vendored: make vendor"
    ),
]


@pytest.fixture
def portal(tmp_path: Path, make_agent: Callable[..., Agent]) -> Iterator[tuple[World, str]]:
    """Everything running, with the portal on a free port; (world, the portal's URL)."""
    web = f"127.0.0.1:{free_port()}"
    for world in make_world(tmp_path, make_agent, collector_args=("--web-listen", web)):
        yield world, f"https://{web}"


def set_password(world: World, name: str) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "collector.cli", "user", "passwd", name,
         "--data-dir", str(world.collector.data_dir)],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def player_shows(chrome: Any, text: str, timeout: float = 20) -> None:
    """Wait until the asciinema-player's terminal shows ``text``."""
    from selenium.webdriver.common.by import By

    def shown() -> bool:
        terminals = chrome.find_elements(By.CSS_SELECTOR, "#player .ap-term")
        return any(text in t.text for t in terminals)

    try:
        wait_for(shown, timeout, f"{text!r} in the player")
    except AssertionError:
        logs = chrome.get_log("browser")
        html = chrome.find_element(By.ID, "player").get_attribute("innerHTML")[:3000]
        raise AssertionError(f"player never showed {text!r}; log: {logs}; html: {html}") from None


def engineer_saw(controller: int) -> str:
    """What the engineer's terminal received (until it closed or went quiet)."""
    seen = b""
    while select.select([controller], [], [], 1.0)[0]:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace")


def test_customer_watches_the_engineer_live_terminates_then_replays(
    portal: tuple[World, str], chrome: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    world, url = portal
    shots = shots_dir(tmp_path)
    set_password(world, "alice")
    sid = world.request()

    chrome.get(url + "/login")
    chrome.find_element(By.ID, "name").send_keys("alice")
    chrome.find_element(By.ID, "password").send_keys(PASSWORD)
    chrome.find_element(By.ID, "sign-in").click()
    heading(chrome, "")
    chrome.find_element(By.CSS_SELECTOR, f'a[href="/sessions/{sid}"]').click()
    heading(chrome, sid)
    chrome.save_screenshot(str(shots / "live-1-session-request.png"))
    chrome.find_element(By.ID, "approve").click()
    wait_for(lambda: world.session(sid)["state"] == "approved", 20, "approved")

    controller, terminal = pty.openpty()  # the engineer's terminal, 100x30
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    shell = subprocess.Popen(
        world.ssh_args("erin", sid, tty=True),
        stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    try:
        wait_for(lambda: world.session(sid)["state"] == "active", 30, "engineer logged in")
        chrome.get(f"{url}/sessions/{sid}/terminal")
        heading(chrome, sid)
        wait_for(lambda: chrome.find_element(By.ID, "player").is_displayed(), 15, "player")
        time.sleep(1.0)  # the player has opened its event stream
        os.write(controller, b"echo live-marker-$((6*7))\r")
        player_shows(chrome, "live-marker-42")
        assert not chrome.find_element(By.ID, "text-view").is_displayed()
        refused = [e for e in chrome.get_log("browser") if "Content Security" in e["message"]]
        assert refused == []  # the player runs under the portal's strict CSP
        chrome.save_screenshot(str(shots / "live-2-watching.png"))
        chrome.find_element(By.ID, "terminate").click()
        heading(chrome, sid)
        assert shell.wait(timeout=20) != 0  # ssh ended: the gateway closed the session
        assert "terminated by alice" in engineer_saw(controller)
    finally:
        if shell.poll() is None:
            shell.kill()
        os.close(controller)
    assert world.session(sid)["state"] == "terminated"
    chrome.save_screenshot(str(shots / "live-3-terminated.png"))

    chrome.get(f"{url}/sessions/{sid}/terminal")
    heading(chrome, sid)
    wait_for(lambda: chrome.find_element(By.ID, "player").is_displayed(), 15, "player")
    chrome.find_element(By.CSS_SELECTOR, "#player .ap-player").click()  # play
    player_shows(chrome, "live-marker-42")
    chrome.save_screenshot(str(shots / "live-4-replay.png"))
