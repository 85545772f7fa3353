"""A host behind an HTTP proxy: a real collector, a real agent, a real CONNECT proxy process.

Enrolment follows ``https_proxy`` from the environment; the running agent uses
``stream.proxy`` from its config (with basic auth). The proxy records every CONNECT.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.connect_proxy import ProxyProcess
from tests.support import Agent, Collector, run, wait_for

pytestmark = pytest.mark.slow

PASSWORD = "pr0xy-s3cret"


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[Callable[..., ProxyProcess]]:
    started: list[ProxyProcess] = []

    def start(status: int = 200, auth: str = "") -> ProxyProcess:
        started.append(ProxyProcess(tmp_path / f"proxy-{len(started)}.log", status, auth))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


def stored_batches(collector: Collector, agent_id: str) -> int:
    from collector.store import open_store

    store = open_store(collector.data_dir)
    try:
        return len(store.stored_sequences(agent_id))
    finally:
        store.close()


def test_an_agent_behind_a_proxy_enrols_streams_and_names_a_refusing_proxy(
    collector: Collector,
    make_agent: Callable[..., Agent],
    proxies: Callable[..., ProxyProcess],
) -> None:
    proxy = proxies(auth=f"agent:{PASSWORD}")
    url = proxy.url(f"agent:{PASSWORD}")
    agent = make_agent("behind-proxy", stream={"proxy": url, "initial_backoff": "200ms"})

    # Enrolment through https_proxy from the environment (the pinned-CA fetch and the
    # Enroll call both go through it).
    join = collector.join_command("acme")
    environment = {**os.environ, "https_proxy": url, "no_proxy": "", "NO_PROXY": ""}
    enrolled = run(
        "agent.cli",
        "enroll",
        *join,
        "--state-dir",
        str(agent.state_dir),
        "--hostname",
        agent.hostname,
        env=environment,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    api_connects = [c for c in proxy.connects() if c["target"] == collector.api]
    assert len(api_connects) == 2, proxy.connects()
    assert all(c["status"] == 200 and c["authenticated"] for c in api_connects)

    # The running agent: stream.proxy from its config.
    agent.start()
    wait_for(lambda: stored_batches(collector, agent.agent_id) >= 2, 40, "batches stored")
    stream_connects = [c for c in proxy.connects() if c["target"] == collector.agent_address]
    assert stream_connects, proxy.connects()
    assert all(c["status"] == 200 and c["authenticated"] for c in stream_connects)
    agent.stop()

    # A proxy refusing the tunnel: a clear error naming the proxy and its answer.
    refusing = proxies(status=403)
    agent.config["stream"] = {"proxy": refusing.url(f"agent:{PASSWORD}")}
    agent.start()
    expected = (
        f"the proxy http://127.0.0.1:{refusing.port} refused CONNECT "
        f"{collector.agent_address}: HTTP 403 Forbidden"
    )
    wait_for(lambda: expected in agent.log_text(), 40, "the proxy refusal in the agent log")
    agent.stop()
    assert refusing.connects()[0]["target"] == collector.agent_address
    assert PASSWORD not in agent.log_text()
    assert PASSWORD not in enrolled.stdout + enrolled.stderr
