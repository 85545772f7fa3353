"""A session approval signed in the browser, verified by a real agent, end to end.

The host pins the customer's approval root and requires signed approvals
(``[sessions] approval = "signed"``), so nothing but a bundle that verifies against that
root opens a shell. The customer creates a WebCrypto key in Debian's headless Chromium;
while it is uncertified, approving fails in the page and the engineer's stock ``ssh``
gets no shell; a signature made in the page by another, uncertified key over the
certified key's exact bytes is refused too. The customer's administrator certifies it
with the stock CLI (``aftercare approvers add``); the page then signs the next approval,
the agent checks it against the pinned root (its journal says so) and the engineer's
command runs.
Screenshots go to ``$AFTERCARE_SCREENSHOTS`` (default: the test's tmp dir).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector.portal_support import PASSWORD
from tests.e2e.test_portal_browser import CHROMIUM, DRIVER, chrome, heading, shots_dir
from tests.e2e.test_portal_live import set_password
from tests.gateway_support import World, make_world
from tests.support import Agent, free_port, run

__all__ = ["chrome"]  # the fixture, shared with the other browser tests

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None or shutil.which("ssh") is None,
        reason="needs chromium, chromium-driver and openssh-client (apt-get install them)",
    ),
]


def cli(home: Path, options: list[str], *args: str) -> Any:
    """The stock ``aftercare`` CLI with ``HOME=home`` and ``--json``; its parsed output."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AFTERCARE_")}
    environ["HOME"] = str(home)
    result = run("collector.client.cli", *options, *args, "--json", env=environ)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def signed_world(
    tmp_path: Path, make_agent: Callable[..., Agent]
) -> Iterator[tuple[World, str, Path]]:
    """(world whose host pins the root and takes only signed approvals, portal URL,
    the administrator's HOME holding the root key)."""
    admin_home = tmp_path / "acme-admin"
    root = cli(admin_home, [], "approvers", "init")["root_fingerprint"]
    web = f"127.0.0.1:{free_port()}"
    for world in make_world(
        tmp_path,
        make_agent,
        approval="signed",
        approval_root=root,
        collector_args=("--web-listen", web),
    ):
        yield world, f"https://{web}", admin_home


FORGE = """
const [toSign, claimed, done] = arguments;
(async () => {
  const answer = await (await fetch(toSign, {credentials: "same-origin"})).json();
  const body = Uint8Array.from(atob(answer.body), (c) => c.charCodeAt(0));
  const other = await crypto.subtle.generateKey({name: "Ed25519"}, false, ["sign", "verify"]);
  const signature = await crypto.subtle.sign({name: "Ed25519"}, other.privateKey, body);
  const form = document.getElementById("sign-key").form;
  form.dataset.signed = "yes";
  document.getElementById("sign-key").value = claimed;
  document.getElementById("sign-body").value = answer.body;
  document.getElementById("sign-signature").value =
    btoa(String.fromCharCode(...new Uint8Array(signature)));
  done(true);
  form.submit();
})().catch((error) => done(String(error)));
"""


def no_shell(world: World, sid: str) -> None:
    """The engineer's ssh for ``sid`` runs nothing."""
    refused = world.ssh("erin", sid, "echo", "opened-$((6*7))")
    assert refused.returncode != 0 and "opened-42" not in refused.stdout, refused


def test_a_browser_signed_approval_is_verified_by_the_host_and_opens_the_shell(
    signed_world: tuple[World, str, Path], chrome: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    world, url, admin_home = signed_world
    shots = shots_dir(tmp_path)
    set_password(world, "alice")
    chrome.get(url + "/login")
    chrome.find_element(By.ID, "name").send_keys("alice")
    chrome.find_element(By.ID, "password").send_keys(PASSWORD)
    chrome.find_element(By.ID, "sign-in").click()
    heading(chrome, "")
    chrome.get(url + "/approval-key")
    chrome.find_element(By.ID, "create-key").click()
    WebDriverWait(chrome, 15).until(
        lambda d: d.find_element(By.ID, "key-fingerprint").text.startswith("sha256:")
    )
    key_fp = chrome.find_element(By.ID, "key-fingerprint").text
    public = chrome.find_element(By.ID, "key-public").text

    # Attack: the browser key is not certified yet. The page refuses to sign, the
    # approve button posts nothing, the host never opens a shell.
    unsigned = world.request()
    chrome.get(f"{url}/sessions/{unsigned}")
    WebDriverWait(chrome, 15).until(
        lambda d: "no current certificate" in d.find_element(By.ID, "sign-error").text
    )
    chrome.find_element(By.ID, "approve").click()
    WebDriverWait(chrome, 15).until(
        lambda d: "no current certificate" in d.find_element(By.ID, "sign-error").text
    )
    chrome.save_screenshot(str(shots / "signed-1-uncertified.png"))
    assert world.session(unsigned)["state"] == "pending"
    no_shell(world, unsigned)

    # The administrator certifies the key shown on the page, with the stock CLI.
    options = world.collector.client_options(world.tokens["alice"])
    added = cli(
        admin_home, options, "approvers", "add", "alice", "--key", public, "--customer", "acme"
    )
    assert added["uploaded"] and added["key_fingerprint"] == key_fp

    # Attack: the certified key's exact bytes, signed by another (uncertified) key made
    # in the same page, posted through the page's own form under the certified key's
    # name. The collector refuses it; nothing reaches the host.
    forged = world.request()
    chrome.get(f"{url}/sessions/{forged}")
    WebDriverWait(chrome, 15).until(lambda d: forged in d.find_element(By.ID, "sign-summary").text)
    chrome.execute_async_script(FORGE, f"/sessions/{forged}/to-sign?key={key_fp}", key_fp)
    WebDriverWait(chrome, 15).until(lambda d: d.current_url.endswith("/approve"))
    page = chrome.find_element(By.TAG_NAME, "body").text
    assert "signature does not verify" in page and world.session(forged)["state"] == "pending", page
    chrome.save_screenshot(str(shots / "signed-2-forged.png"))
    no_shell(world, forged)

    sid = world.request()
    chrome.get(f"{url}/sessions/{sid}")
    WebDriverWait(chrome, 15).until(lambda d: sid in d.find_element(By.ID, "sign-summary").text)
    assert chrome.find_element(By.ID, "sign-fingerprint").text == key_fp
    chrome.save_screenshot(str(shots / "signed-3-signing.png"))
    chrome.find_element(By.ID, "approve").click()
    heading(chrome, "approved")
    chrome.save_screenshot(str(shots / "signed-4-approved.png"))
    approved = world.session(sid)
    assert approved["state"] == "approved", approved

    ran = world.ssh("erin", sid, "echo", "signed-$((6*7))")
    assert ran.returncode == 0 and "signed-42" in ran.stdout, ran
    journal = (world.agent.state_dir / "sessions.log").read_text()
    assert f"{sid}" in journal and "signed by alice of acme" in journal, journal
    no_shell(world, unsigned)  # still: the refused approval was never stored
    assert world.session(unsigned)["state"] == "pending"
