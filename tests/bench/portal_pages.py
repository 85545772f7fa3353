"""Benchmark: portal page-load times with 1,000 hosts and 10,000 tickets in the store.

Not a pytest test; prints figures (``--json`` for one machine-readable JSON object).

    .venv/bin/python tests/bench/portal_pages.py [--hosts 1000] [--tickets 10000]
                                                 [--loads 20] [--json]

Fills a fresh SQLite store (hosts over 50 customers, tickets spread over them, a
quarter of them resolved or closed, one pending session per customer), starts a real
collector with its portal (``tests.collector.portal_support.PortalCollector``: HTTPS
on loopback), signs in a customer user and an engineer, and loads each page
``--loads`` times over HTTPS: the overview and a ticket as the customer, the overview
as the engineer (every customer), and the engineer pages: the queue (all, and
filtered), a ticket with its action forms, the fleet (all, and one customer); and the
playbook-run pages: the start form (the catalogue, then one playbook's parameters), a
finished run with 64 KiB of output, a run waiting for the customer's approval. Every
ticket has a diagnostic run attached (10,000 runs), the loaded ticket three.
Reports min / median / max milliseconds per page and PASS/FAIL against the 300 ms
target (issue 13) on the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from collector.datadir import DataDir, initialise
from collector.runs.model import RunRecord
from collector.store import AgentRecord, SQLiteStore
from collector.tickets.model import NewEvent, NewTicket
from tests.collector.portal_support import Browser, PortalCollector

TARGET_MS = 300.0
CUSTOMERS = 50
OUTPUT_BYTES = 64 * 1024  # of the finished run loaded


def fill(data_dir: Path, hosts: int, tickets: int) -> None:
    """Hosts and tickets written straight into the store (fast, not through services)."""
    initialise(DataDir(data_dir), int(time.time() * 1000))
    store = SQLiteStore(data_dir / "aftercare.db", synchronous="NORMAL")
    now = int(time.time() * 1000)
    try:
        for i in range(hosts):
            customer = f"customer{i % CUSTOMERS:02d}"
            store.add_agent(
                AgentRecord(f"ag-{i:05d}", customer, f"host{i:05d}", now, f"s{i}", now + 10**9)
            )
        for i in range(tickets):
            customer = f"customer{i % CUSTOMERS:02d}"
            new = NewTicket(customer, f"fault {i}", "3", "engineer", hostname=f"host{i:05d}")
            ticket = store.create_ticket(new, NewEvent(now - i * 1000, "user:erin", "opened"))
            if i % 4 == 0:
                ack = NewEvent(now, "user:erin", "acknowledged")
                store.update_ticket(replace(ticket, state="closed", closed_ms=now), [ack])
            store.create_run(_run(f"run-bench{i:06d}", i % hosts, ticket.id, now - i * 1000))
        for extra in range(2):  # ticket 2 has three runs
            store.create_run(_run(f"run-extra{extra}", 1, 2, now))
        store.create_run(_run("run-bench-output", 1, None, now, state="ok"))
        store.create_run(_run("run-bench-waiting", 1, None, now, state="waiting_approval"))
    finally:
        store.close()
    runs_dir = data_dir / "runs"
    runs_dir.mkdir(mode=0o700, exist_ok=True)
    line = b"/var/log/journal  1.2G  a line of diagnostic output\n"
    (runs_dir / "run-bench-output.out").write_bytes(
        (line * (OUTPUT_BYTES // len(line) + 1))[:OUTPUT_BYTES]
    )


def _run(run_id: str, host: int, ticket_id: int | None, at_ms: int, state: str = "ok") -> RunRecord:
    finished = state == "ok"
    return RunRecord(
        run_id=run_id,
        agent_id=f"ag-{host:05d}",
        customer=f"customer{host % CUSTOMERS:02d}",
        hostname=f"host{host:05d}",
        playbook="service-status",
        version="1.0.0",
        mode="read-only",
        params={"unit": "nginx.service"},
        requested_by="rule:systemd_unit_failed",
        requested_ms=at_ms,
        ticket_id=ticket_id,
        state=state,  # type: ignore[arg-type]
        result={"status": "ok", "duration_ms": 1200, "steps": []} if finished else {},
        output_bytes=OUTPUT_BYTES if run_id == "run-bench-output" else 0,
    )


def timed(browser: Browser, path: str, loads: int) -> list[float]:
    browser.get(path)  # warm up (templates, caches)
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        answer = browser.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status == 200, (path, answer.status, answer.text[:300])
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        started = time.perf_counter()
        fill(data_dir, args.hosts, args.tickets)
        fill_s = time.perf_counter() - started
        collector = PortalCollector(data_dir)
        try:
            collector.add_user("carol", "customer", "customer01")
            collector.add_user("erin", "engineer")
            customer = Browser(collector.url, collector.ca_file)
            engineer = Browser(collector.url, collector.ca_file)
            assert customer.sign_in("carol").status == 303
            assert engineer.sign_in("erin").status == 303
            pages = {
                "customer overview": timed(customer, "/", args.loads),
                "customer ticket": timed(customer, "/tickets/2", args.loads),
                "engineer overview (all customers)": timed(engineer, "/", args.loads),
                "engineer queue (all customers)": timed(engineer, "/queue", args.loads),
                "engineer queue (level 1, one customer)": timed(
                    engineer, "/queue?level=1&customer=customer01", args.loads
                ),
                "engineer ticket with actions": timed(engineer, "/tickets/2", args.loads),
                "engineer fleet (all customers)": timed(engineer, "/fleet", args.loads),
                "engineer fleet (one customer)": timed(
                    engineer, "/fleet?customer=customer01", args.loads
                ),
                "engineer run form (catalogue)": timed(engineer, "/hosts/ag-00001/run", args.loads),
                "engineer run form (parameters)": timed(
                    engineer, "/hosts/ag-00001/run?playbook=service-status", args.loads
                ),
                "customer run (64 KiB output)": timed(
                    customer, "/runs/run-bench-output", args.loads
                ),
                "customer run waiting for approval": timed(
                    customer, "/runs/run-bench-waiting", args.loads
                ),
            }
        finally:
            collector.stop()
    report = {
        "hosts": args.hosts,
        "tickets": args.tickets,
        "fill_seconds": round(fill_s, 1),
        "target_ms": TARGET_MS,
        "pages": {
            name: {
                "min_ms": round(min(t), 1),
                "median_ms": round(statistics.median(t), 1),
                "max_ms": round(max(t), 1),
                "pass": statistics.median(t) < TARGET_MS,
            }
            for name, t in pages.items()
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.hosts} hosts, {args.tickets} tickets (filled in {report['fill_seconds']} s)")
        for name, figures in report["pages"].items():
            verdict = "PASS" if figures["pass"] else "FAIL"
            print(
                f"  {name:<36} median {figures['median_ms']:>7} ms  "
                f"(min {figures['min_ms']}, max {figures['max_ms']})  {verdict} < {TARGET_MS:g} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
