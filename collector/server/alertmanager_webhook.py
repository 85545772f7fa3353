"""``POST /alertmanager`` on the metrics port: Alertmanager's webhook, bearer-token authenticated.

Runs on an HTTP server thread and hands each accepted payload to the ticket
service on the event loop, waiting for the result so Alertmanager retries on error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from collector.alertmanager import check_bearer, parse_payload
from collector.auth_failures import AuthFailures
from collector.errors import CollectorError, InvalidRequest, RateLimited, Unauthenticated
from collector.server.http import PEER_HEADER, PostHandler
from collector.tickets.service import TicketService

log = logging.getLogger(__name__)

PATH = "/alertmanager"
APPLY_TIMEOUT_SECONDS = 30.0


def alertmanager_handler(
    service: TicketService,
    loop: asyncio.AbstractEventLoop,
    tokens: Collection[str],
    clock_ms: Callable[[], int],
    failures: AuthFailures | None = None,
) -> PostHandler:
    """The POST handler: 401 bad token, 400 malformed payload or unusable alerts, 200 ok."""

    def handle(body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        peer = headers.get(PEER_HEADER, "")
        try:
            if failures is not None:
                failures.check("alertmanager", peer)
            check_bearer(headers.get("authorization"), tokens)
        except RateLimited as exc:
            return 429, {"error": str(exc)}
        except Unauthenticated as exc:
            if failures is not None:
                asyncio.run_coroutine_threadsafe(
                    failures.record("alertmanager", peer, str(exc)), loop
                )
            return 401, {"error": str(exc)}
        try:
            payload = parse_payload(body)
        except InvalidRequest as exc:
            return 400, {"error": str(exc)}
        future = asyncio.run_coroutine_threadsafe(
            service.apply_alertmanager(payload, clock_ms()), loop
        )
        try:
            problems = future.result(timeout=APPLY_TIMEOUT_SECONDS)
        except CollectorError as exc:
            log.warning("alertmanager payload not applied: %s", exc)
            return 503, {"error": f"not applied, retry later: {exc}"}
        if problems:
            return 400, {"error": "some alerts could not become tickets", "problems": problems}
        return 200, {"status": "ok", "alerts": len(payload.alerts)}

    return handle
