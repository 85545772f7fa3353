"""``aftercare inspections``, ``aftercare inspection ...`` and ``aftercare customer``.

Engineers: plan (and change or cancel plans), reschedule, run, publish, show, report.
Customers: see their plans and inspections, consent, decline, sign, reject, report.
Admins: set a customer's report language (``aftercare customer settings``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from collector.client import arguments
from collector.client.connection import ApiClient
from collector.client.output import iso, safe, safe_block, size_text, with_times
from collector.client.paging import fetch_all
from proto import api_pb2

__all__ = ["add_commands"]

STATES = (
    "planned",
    "announced",
    "consented",
    "declined",
    "due",
    "running",
    "awaiting_report",
    "awaiting_signoff",
    "signed",
    "rejected",
    "overdue",
    "failed",
    "cancelled",
)
FORMATS = ("html", "pdf", "md", "json")
LANGUAGES = ("zh-CN", "en")


def add_commands(commands: Any) -> None:
    """Register ``inspections``, ``inspection`` and ``customer`` on the client's parser."""
    p = commands.add_parser(
        "inspections",
        help="list inspections",
        description="List inspections, newest first: planned, announced (awaiting consent), "
        "consented, declined, due, running, awaiting_report, awaiting_signoff, signed, "
        "rejected, overdue (date passed without consent, or report past due).",
    )
    p.add_argument("--state", action="append", choices=STATES, help="only these (repeat)")
    p.add_argument("--customer", default="", help="only this customer (engineers)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=_list)

    inspection = commands.add_parser(
        "inspection",
        help="plan, show or act on inspections",
        description="Plan inspections (巡检), and show or act on one inspection.",
    )
    sub = inspection.add_subparsers(dest="inspection_command", required=True, metavar="ACTION")
    _add_plan_commands(sub)
    _simple(sub, "show", "state, hosts, timeline and report status", _show)
    _action(sub, "consent", "consent to the inspection (customers)", "consent")
    decline = _action(sub, "decline", "decline, optionally proposing a date (customers)", "decline")
    decline.add_argument("--reason", required=True, help="why")
    decline.add_argument("--propose", dest="at", default="", help="another date, 2027-01-20T09:00")
    reschedule = _action(sub, "reschedule", "move the date (engineers)", "reschedule")
    reschedule.add_argument("--at", required=True, help="the new date, 2027-01-20T09:00")
    _action(sub, "run", "run now on every host in scope (engineers; after consent)", "run")
    publish = _action(sub, "publish", "publish the reviewed report (engineers)", "publish")
    publish.add_argument("--summary", default="", help="the engineer's review summary")
    sign = _action(sub, "sign", "sign the published report (customers)", "sign")
    sign.add_argument("--name", required=True, help="the signer's name, e.g. 张三")
    sign.add_argument("--title", required=True, help="the signer's title, e.g. 运维主管")
    sign.add_argument("--comment", default="")
    sign.add_argument(
        "--sha256",
        default="",
        help="sha256 of the report you reviewed (printed by `inspection report`); "
        "default: the published one, shown before signing",
    )
    reject = _action(sub, "reject", "reject the published report (customers)", "reject")
    reject.add_argument("--reason", required=True, help="why")
    report = sub.add_parser(
        "report",
        help="the inspection report (巡检报告)",
        description="Render the published report. Its sha256 (what a signature binds) "
        "goes to stderr.",
    )
    report.add_argument("id", type=arguments.ticket_id, help="inspection number")
    report.add_argument("--format", choices=FORMATS, default="html")
    report.add_argument(
        "--lang", choices=LANGUAGES, default="", help="default: the customer's preferred one"
    )
    report.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE")
    report.set_defaults(handler=_report)

    customer = commands.add_parser(
        "customer", help="customer settings", description="Show or set a customer's settings."
    )
    csub = customer.add_subparsers(dest="customer_command", required=True, metavar="ACTION")
    settings = csub.add_parser(
        "settings",
        help="show or set (admins) the preferred report language",
        description="Show a customer's settings; admins set them with --language.",
    )
    settings.add_argument("customer", nargs="?", default="", help="default: your own customer")
    settings.add_argument("--language", choices=LANGUAGES, help="preferred report language")
    settings.add_argument("--json", action="store_true", help="print machine-readable JSON")
    settings.set_defaults(handler=_settings)


def _add_plan_commands(sub: Any) -> None:
    plan = sub.add_parser(
        "plan",
        help="plan inspections for a customer (engineers)",
        description="Create a schedule: the first date, then every quarter or month (the "
        "day of month kept where the month has it). Audited; visible to the customer.",
    )
    plan.add_argument("--customer", required=True)
    plan.add_argument("--every", choices=("quarter", "month"), default="quarter")
    plan.add_argument("--first", required=True, help="first date, e.g. 2027-01-15T09:00")
    _plan_options(plan)
    plan.set_defaults(handler=_plan)

    plans = sub.add_parser("plans", help="list plans", description="List inspection plans.")
    plans.add_argument("--customer", default="", help="only this customer (engineers)")
    plans.add_argument("--json", action="store_true", help="print machine-readable JSON")
    plans.set_defaults(handler=_plans)

    modify = sub.add_parser(
        "plan-modify",
        help="change a plan (engineers)",
        description="Change a plan; its inspections not yet run follow (a new date needs "
        "the customer's consent again).",
    )
    modify.add_argument("plan", type=arguments.ticket_id, help="plan number")
    modify.add_argument("--every", choices=("quarter", "month"), default="")
    modify.add_argument("--first", default="", help="new first date, e.g. 2027-01-22T09:00")
    _plan_options(modify, changing=True)
    modify.set_defaults(handler=_plan_modify)

    cancel = sub.add_parser(
        "plan-cancel",
        help="cancel a plan (engineers)",
        description="Cancel a plan and its inspections not yet run.",
    )
    cancel.add_argument("plan", type=arguments.ticket_id, help="plan number")
    cancel.add_argument("--reason", required=True)
    cancel.add_argument("--json", action="store_true", help="print machine-readable JSON")
    cancel.set_defaults(handler=_plan_cancel)


def _plan_options(p: argparse.ArgumentParser, changing: bool = False) -> None:
    p.add_argument(
        "--hosts",
        default=None if changing else "",
        help="host selector: comma-separated patterns like web-*,db-1 (default: every host)",
    )
    p.add_argument("--engineer", default="", help="the responsible engineer (default: you)")
    p.add_argument("--notice", default="", help="announce this long before the date (default 7d)")
    p.add_argument(
        "--config-file",
        dest="config_files",
        action="append",
        metavar="PATH",
        help="configuration file whose checksum is compared for drift (repeat)",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _simple(sub: Any, name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("id", type=arguments.ticket_id, help="inspection number")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=handler)
    return p


def _action(sub: Any, name: str, help_text: str, action: str) -> argparse.ArgumentParser:
    p = _simple(sub, name, help_text, _act)
    p.set_defaults(action=action)
    return p


# -- handlers ---------------------------------------------------------------------------


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    reply = fetch_all(
        client,
        "ListInspections",
        api_pb2.ListInspectionsRequest(states=args.state or [], customer=args.customer),
        "inspections",
    )
    if args.json:
        _print_json([_info_dict(i) for i in reply.inspections])
        return 0
    if not reply.inspections:
        print("no inspections")
        return 0
    print(f"{'#':>5} {'STATUS':<17} {'CUSTOMER':<12} {'DATE':<21} {'ENGINEER':<10} REPORT DUE")
    for i in reply.inspections:
        print(
            f"{i.id:>5} {safe(i.status):<17} {safe(i.customer):<12} "
            f"{iso(i.scheduled_unix_ms) or '-':<21} {safe(i.engineer or '-'):<10} "
            f"{iso(i.report_due_unix_ms) or '-'}"
        )
    return 0


def _show(client: ApiClient, args: argparse.Namespace) -> int:
    _print_detail(client.call("GetInspection", api_pb2.GetInspectionRequest(id=args.id)), args.json)
    return 0


def _act(client: ApiClient, args: argparse.Namespace) -> int:
    sha256 = ""
    if args.action == "sign":
        sha256 = args.sha256 or _published_sha256(client, args.id)
    request = api_pb2.InspectionAction(
        id=args.id,
        action=args.action,
        reason=getattr(args, "reason", "") or "",
        at=getattr(args, "at", "") or "",
        summary=getattr(args, "summary", "") or "",
        name=getattr(args, "name", "") or "",
        title=getattr(args, "title", "") or "",
        comment=getattr(args, "comment", "") or "",
        report_sha256=sha256,
    )
    detail = client.call("ActOnInspection", request)
    if args.json:
        _print_detail(detail, True)
    else:
        info = detail.inspection
        extra = f" (report sha256 {info.report_sha256})" if info.report_sha256 else ""
        print(f"inspection {info.id}: {safe(info.status)}{extra}")
    return 0


def _published_sha256(client: ApiClient, inspection_id: int) -> str:
    detail = client.call("GetInspection", api_pb2.GetInspectionRequest(id=inspection_id))
    sha256: str = detail.inspection.report_sha256
    if sha256:
        print(f"signing the published report sha256 {sha256}", file=sys.stderr)
    return sha256


def _report(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.call(
        "GetInspectionReport",
        api_pb2.InspectionReportRequest(id=args.id, format=args.format, lang=args.lang),
    )
    print(f"report sha256 {reply.report_sha256}", file=sys.stderr)
    if args.output:
        try:
            Path(args.output).write_bytes(reply.content)
        except OSError as exc:
            print(f"cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.output} ({size_text(len(reply.content))})", file=sys.stderr)
        return 0
    if args.format == "pdf":
        if sys.stdout.isatty():
            print("a PDF is binary: write it to a file with -o FILE", file=sys.stderr)
            return 1
        sys.stdout.buffer.write(reply.content)
        sys.stdout.buffer.flush()
        return 0
    print(safe_block(reply.content.decode("utf-8", "replace")))
    return 0


def _plan(client: ApiClient, args: argparse.Namespace) -> int:
    plan = client.call(
        "CreateInspectionPlan",
        api_pb2.InspectionPlanRequest(
            customer=args.customer,
            every=args.every,
            first=args.first,
            hosts=args.hosts,
            engineer=args.engineer,
            notice=args.notice,
            config_files=args.config_files or [],
        ),
    )
    _print_plan(plan, args.json, "planned")
    return 0


def _plans(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.call(
        "ListInspectionPlans", api_pb2.ListInspectionPlansRequest(customer=args.customer)
    )
    if args.json:
        _print_json([_plan_dict(p) for p in reply.plans])
        return 0
    if not reply.plans:
        print("no inspection plans")
        return 0
    print(
        f"{'#':>4} {'STATE':<10} {'CUSTOMER':<12} {'EVERY':<8} {'FIRST':<21} {'ENGINEER':<10} HOSTS"
    )
    for p in reply.plans:
        print(
            f"{p.id:>4} {safe(p.state):<10} {safe(p.customer):<12} {safe(p.every):<8} "
            f"{iso(p.first_unix_ms) or '-':<21} {safe(p.engineer):<10} {safe(p.hosts or '*')}"
        )
    return 0


def _plan_modify(client: ApiClient, args: argparse.Namespace) -> int:
    request = api_pb2.ChangeInspectionPlanRequest(
        id=args.plan,
        every=args.every,
        first=args.first,
        engineer=args.engineer,
        notice=args.notice,
        set_config_files=args.config_files is not None,
        config_files=args.config_files or [],
    )
    if args.hosts is not None:
        request.hosts = args.hosts
    _print_plan(client.call("ChangeInspectionPlan", request), args.json, "changed")
    return 0


def _plan_cancel(client: ApiClient, args: argparse.Namespace) -> int:
    request = api_pb2.ChangeInspectionPlanRequest(id=args.plan, cancel=True, reason=args.reason)
    _print_plan(client.call("ChangeInspectionPlan", request), args.json, "cancelled")
    return 0


def _settings(client: ApiClient, args: argparse.Namespace) -> int:
    if args.language:
        reply = client.call(
            "SetCustomerSettings",
            api_pb2.CustomerSettings(customer=args.customer, language=args.language),
        )
    else:
        reply = client.call(
            "GetCustomerSettings", api_pb2.GetCustomerSettingsRequest(customer=args.customer)
        )
    if args.json:
        _print_json({"customer": reply.customer, "language": reply.language})
    else:
        print(f"{safe(reply.customer)}: report language {safe(reply.language or '(unset: zh-CN)')}")
    return 0


# -- output -----------------------------------------------------------------------------


def _print_plan(plan: api_pb2.InspectionPlan, as_json: bool, verb: str) -> None:
    if as_json:
        _print_json(_plan_dict(plan))
        return
    print(
        f"plan {plan.id} {verb}: {safe(plan.customer)} every {safe(plan.every)} from "
        f"{iso(plan.first_unix_ms)} ({safe(plan.state)}); `aftercare inspections` lists them"
    )


def _print_detail(detail: api_pb2.InspectionDetail, as_json: bool) -> None:
    if as_json:
        _print_json(
            {
                "inspection": _info_dict(detail.inspection),
                "hosts": [MessageToDict(h, preserving_proto_field_name=True) for h in detail.hosts],
                "events": [
                    {
                        "id": e.id,
                        "at": iso(e.at_unix_ms),
                        "actor": e.actor,
                        "kind": e.kind,
                        "details": json.loads(e.details_json or "{}"),
                    }
                    for e in detail.events
                ],
                "detail": json.loads(detail.detail_json or "{}"),
            }
        )
        return
    i = detail.inspection
    print(f"inspection {i.id} [{safe(i.status)}] {safe(i.customer)} plan {i.plan_id}")
    print(f"  date {iso(i.scheduled_unix_ms)}  engineer {safe(i.engineer or '-')}")
    print(f"  hosts {safe(i.hosts or '* (every host)')}")
    if i.report_due_unix_ms:
        print(f"  report due {iso(i.report_due_unix_ms)}")
    if i.report_sha256:
        print(f"  report sha256 {i.report_sha256}")
    if i.ticket_ids:
        print(f"  tickets {', '.join(f'#{t}' for t in i.ticket_ids)}")
    for h in detail.hosts:
        print(f"  host {safe(h.hostname):<20} {safe(h.outcome):<10} {safe(h.detail)}")
    print("timeline:")
    for e in detail.events:
        details = json.loads(e.details_json or "{}")
        summary = details.get("reason") or details.get("error") or details.get("note") or ""
        print(
            f"  {iso(e.at_unix_ms)}  {safe(e.kind):<16} {safe(e.actor):<20} {safe_block(summary)}"
        )


def _info_dict(i: api_pb2.InspectionInfo) -> dict[str, Any]:
    info = with_times(MessageToDict(i, preserving_proto_field_name=True))
    info["id"] = i.id
    info["plan_id"] = i.plan_id
    info["ticket_ids"] = list(i.ticket_ids)
    info["overdue"] = i.overdue
    return info


def _plan_dict(p: api_pb2.InspectionPlan) -> dict[str, Any]:
    info = with_times(MessageToDict(p, preserving_proto_field_name=True))
    info["id"] = p.id
    info["notice_ms"] = p.notice_ms
    return info


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))
