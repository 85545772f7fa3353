"""``aftercare-collector export`` and ``import``: move a store's content between
backends (SQLite -> PostgreSQL, and back) through a JSON-lines dump (collector.store.dump).

Import checks what it loaded: the rows per table against the dump's end line and the
target, and the audit chain with the same verification as ``audit verify``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from collector.audit import verify_chain
from collector.store import open_store_url
from collector.store.dump import DumpError, count_rows, export_store, import_store
from collector.store.postgres import redact_url
from collector.store.sqlite import SQLiteStore


def add_commands(commands: Any) -> None:
    """Register ``export`` and ``import`` on the collector's command parser."""
    export = commands.add_parser(
        "export",
        help="write a store's content as a JSON-lines dump to stdout",
        description="Write every table of the store to stdout as JSON lines (a header "
        "with the schema version, then each table's rows, then an end line with the "
        "counts), from one consistent snapshot. Stop the collector first, or rows "
        "written after the snapshot are not in the dump. docs/store-postgresql.md",
    )
    _store_url(export)
    export.set_defaults(handler=_export)
    load = commands.add_parser(
        "import",
        help="load a dump from stdin into a store (empty unless --into-non-empty)",
        description="Read a dump made by `export` from stdin into the store, in one "
        "transaction, then check the rows per table and the audit chain. A corrupt or "
        "truncated dump is refused and nothing is written. docs/store-postgresql.md",
    )
    _store_url(load)
    load.add_argument(
        "--into-non-empty",
        action="store_true",
        help="add the dump's rows to a store that already holds some (clashing rows fail "
        "the whole import)",
    )
    load.add_argument("--json", action="store_true", help="print machine-readable JSON")
    load.set_defaults(handler=_import)


def _store_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        required=True,
        metavar="URL",
        help="postgresql://USER@HOST/DB or sqlite:///PATH (SQLite: DATA_DIR/aftercare.db)",
    )


def _open(url: str) -> SQLiteStore:
    store = open_store_url(url)
    if not isinstance(store, SQLiteStore):  # pragma: no cover - every backend is one
        raise DumpError(f"store {redact_url(url)} cannot be dumped")
    return store


def _export(args: argparse.Namespace) -> int:
    store = _open(args.store)
    try:
        summary = export_store(store, sys.stdout)
    finally:
        store.close()
    sys.stdout.flush()
    rows = sum(summary.counts.values())
    print(
        f"exported {rows} rows of {len(summary.counts)} tables from {redact_url(args.store)} "
        f"(schema version {summary.schema_version})",
        file=sys.stderr,
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    store = _open(args.store)
    try:
        summary = import_store(store, sys.stdin, into_non_empty=args.into_non_empty)
        counts = count_rows(store)
        verdict = verify_chain(store.audit_entries())
    finally:
        store.close()
    short = {
        table: {"dump": n, "store": counts[table]}
        for table, n in summary.counts.items()
        if counts[table] < n or (not args.into_non_empty and counts[table] != n)
    }
    ok = verdict.ok and not short
    report = {
        "ok": ok,
        "store": redact_url(args.store),
        "schema_version": summary.schema_version,
        "rows": dict(summary.counts),
        "count_mismatches": short,
        "audit_chain": {
            "ok": verdict.ok,
            "checked": verdict.checked,
            "first_bad_id": verdict.first_bad_id,
            "reason": verdict.reason,
        },
    }
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        rows = sum(summary.counts.values())
        print(f"imported {rows} rows of {len(summary.counts)} tables into {report['store']}")
        for table, pair in short.items():
            print(f"  MISMATCH {table}: {pair['dump']} in the dump, {pair['store']} in the store")
        if verdict.ok:
            print(f"audit log intact: {verdict.checked} entries verified")
        else:
            print(f"audit log BROKEN at entry {verdict.first_bad_id}: {verdict.reason}")
    return 0 if ok else 1
