"""Benchmark: what one scrape of ``/metrics`` and ``/metrics/hosts`` costs at N hosts.

Not a pytest test; prints figures (``--json`` for one machine-readable JSON object).

    .venv/bin/python tests/bench/metrics_pages.py [--hosts N] [--samples S]
                                                  [--scrapes K] [--quick] [--json]

Builds the collector's in-memory fleet as ingest leaves it: N connected hosts, each
with the latest batch of S samples of the light-agent simulator's host profiles
(``tests/bench/light_agents.py``: the names and labels of docs/metrics.md), decoded by
the collector's own ``SampleDecoder`` (so label sets are shared as in the collector).
Then renders each page K times in-process (``collector.server.metrics_pages``, the
handlers the HTTP server calls) and reports, per page, lines, MiB and the CPU seconds
of one render (median; ``time.process_time``, single thread):

- ``/metrics`` with ``--host-samples metrics`` (the default): own metrics,
  connectivity and every host's samples;
- ``/metrics`` with ``--host-samples separate``: own metrics and connectivity;
- ``/metrics/hosts``: every host's samples; and one shard of 4.

The first render of each page also makes the series text the collector remembers; it
is reported separately (``first_render_seconds``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(REPO))

from prometheus_client import CollectorRegistry  # noqa: E402

from collector.fleet import Fleet  # noqa: E402
from collector.host_metrics import FleetExposition  # noqa: E402
from collector.metrics import CollectorMetrics  # noqa: E402
from collector.server.batch_decode import SampleDecoder  # noqa: E402
from collector.server.metrics_pages import metrics_pages  # noqa: E402
from collector.store import AgentRecord  # noqa: E402
from proto import agent_pb2  # noqa: E402
from tests.bench.light_agents import profile_payloads  # noqa: E402

PROFILES = 50  # distinct host shapes (CPU count, disks, interfaces, mounts)
PAGES = {
    "metrics_with_host_samples": ("/metrics", "", True),
    "metrics_separate": ("/metrics", "", False),
    "hosts_all": ("/metrics/hosts", "", False),
    "hosts_shard_1_of_4": ("/metrics/hosts", "shard=1&shards=4", False),
}


def build_fleet(hosts: int, samples: int) -> Fleet:
    """``hosts`` connected hosts with one decoded batch of ``samples`` samples each."""
    fleet = Fleet()
    decoder = SampleDecoder()
    now_ms = int(time.time() * 1000)
    payloads = [profile_payloads(p, 1, samples, now_ms)[0] for p in range(PROFILES)]
    for n in range(hosts):
        agent = AgentRecord(f"ag-{n:06d}", f"customer-{n % 40}", f"host-{n}", 0, "01", 1)
        batch = agent_pb2.AgentMessage.FromString(payloads[n % PROFILES]).batch
        decoded, _ = decoder.decode(batch, agent.agent_id)
        fleet.connected(agent, agent.hostname, "0.1.0", now_ms)
        fleet.observed(agent.agent_id, batch.collected_unix_ms, list(decoded), now_ms)
    return fleet


def measure(fleet: Fleet, scrapes: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name, (path, query, inline) in PAGES.items():
        registry = CollectorRegistry()
        CollectorMetrics(registry)
        page = metrics_pages(registry, FleetExposition(fleet), inline)[path]
        times = []
        body = b""
        for _ in range(scrapes + 1):
            started = time.process_time()
            status, body, _ = page(query)
            times.append(time.process_time() - started)
            assert status == 200, body[:200]
        figures[name] = {
            "lines": body.count(b"\n"),
            "mib": round(len(body) / 2**20, 1),
            "first_render_seconds": round(times[0], 3),
            "seconds": round(statistics.median(times[1:]), 3),
        }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2000, help="hosts in the fleet (2000)")
    parser.add_argument("--samples", type=int, default=150, help="samples per batch (150)")
    parser.add_argument("--scrapes", type=int, default=5, help="renders per page (5)")
    parser.add_argument("--quick", action="store_true", help="200 hosts, 2 renders (CI)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    if args.quick:
        args.hosts, args.scrapes = 200, 2
    fleet = build_fleet(args.hosts, args.samples)
    result = {
        "config": {"hosts": args.hosts, "samples": args.samples, "scrapes": args.scrapes},
        "pages": measure(fleet, args.scrapes),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"aftercare metrics pages: {args.hosts} hosts x {args.samples} samples")
    for name, f in result["pages"].items():
        print(
            f"  {name:28} {f['lines']:>10,} lines {f['mib']:>8} MiB  "
            f"{f['seconds']:.3f} s CPU per render (first {f['first_render_seconds']:.3f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
