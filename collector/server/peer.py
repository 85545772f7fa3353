"""Who is calling: the agent from its client certificate, the user from its API token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from collector.auth import Principal, check_token_usable, hash_token
from collector.errors import AgentRevoked, Unauthenticated
from collector.store import AgentRecord
from collector.store.writer import StoreThread
from common.clock import MillisClock, wall_ms


async def authenticate_agent(
    context: grpc.aio.ServicerContext[Any, Any],
    find_agent: Callable[[str], Awaitable[AgentRecord | None]],
) -> AgentRecord:
    """The enrolled, non-revoked agent named by the verified client certificate.

    The identity comes only from the certificate the TLS layer verified against
    the collector's CA; nothing in the messages can change it.
    """
    names = list(context.auth_context().get("x509_common_name") or [])
    if not names:
        raise Unauthenticated(
            "no verified client certificate: agents must connect to the agent port "
            "with the certificate obtained by `aftercare-agent enroll`"
        )
    agent_id = names[0].decode()
    agent = await find_agent(agent_id)
    if agent is None:
        raise Unauthenticated(f"certificate names unknown agent {agent_id!r}; enrol again")
    if agent.revoked_ms is not None:
        raise AgentRevoked(agent_id, agent.revoked_ms)
    return agent


async def authenticate_user(
    context: grpc.aio.ServicerContext[Any, Any],
    db: StoreThread,
    clock_ms: MillisClock = wall_ms,
) -> Principal:
    """The user whose API token is in the ``authorization: Bearer`` metadata.

    A disabled user's or an expired token is refused (Unauthenticated saying which),
    checked against the store on every call, so disabling takes effect at once.
    """
    token = ""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            token = value.removeprefix("Bearer ").strip()
    if not token:
        raise Unauthenticated(
            "no API token: pass --token or set AFTERCARE_TOKEN (ask an admin for "
            "`aftercare-collector user add`)"
        )
    user = await db.call(db.store.user_by_token_hash, hash_token(token))
    if user is None:
        raise Unauthenticated("unknown API token: check --token / AFTERCARE_TOKEN")
    check_token_usable(user.name, user.disabled_ms, user.token_expires_ms, clock_ms())
    return Principal(user.name, user.role, user.customer)
