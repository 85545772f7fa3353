"""Admin actions: join tokens, users, revocation. Each one is written to the audit log.

Functions take the store and an explicit actor and time, so the CLI, the API and
tests share them.
"""

from __future__ import annotations

import re

from collector.auth import ROLES, hash_token, new_api_token, new_join_token
from collector.errors import InvalidRequest
from collector.store import AgentRecord, Store

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MAX_JOIN_TOKEN_TTL_MS = 30 * 24 * 3600 * 1000


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid customer/user name, else InvalidRequest saying why."""
    if not NAME_PATTERN.match(value):
        raise InvalidRequest(
            f"invalid {kind} name {value!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return value


def create_join_token(store: Store, customer: str, ttl_ms: int, actor: str, now_ms: int) -> str:
    """A new single-use join token for ``customer``, valid for ``ttl_ms``."""
    check_name("customer", customer)
    if not 0 < ttl_ms <= MAX_JOIN_TOKEN_TTL_MS:
        raise InvalidRequest("--ttl must be between 1s and 30d")
    token = new_join_token()
    expires_ms = now_ms + ttl_ms
    store.create_join_token(hash_token(token), customer, expires_ms, actor, now_ms)
    store.append_audit(actor, "join_token.created", customer, {"expires_ms": expires_ms}, now_ms)
    return token


def add_user(
    store: Store, name: str, role: str, customer: str | None, actor: str, now_ms: int
) -> str:
    """Create a user and return its API token (shown once, stored hashed)."""
    check_name("user", name)
    if role not in ROLES:
        raise InvalidRequest(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
    if role == "customer" and not customer:
        raise InvalidRequest("a customer user needs --customer NAME")
    if role != "customer" and customer:
        raise InvalidRequest(f"--customer applies only to role customer, not {role}")
    if customer:
        check_name("customer", customer)
    token = new_api_token()
    store.add_user(name, role, customer, hash_token(token), now_ms)
    store.append_audit(actor, "user.added", name, {"role": role, "customer": customer}, now_ms)
    return token


def revoke_agent(store: Store, agent_id: str, actor: str, now_ms: int) -> AgentRecord:
    """Revoke an agent: it is refused from its next connection on."""
    record = store.revoke_agent(agent_id, now_ms)
    store.append_audit(
        actor,
        "agent.revoked",
        agent_id,
        {"customer": record.customer, "hostname": record.hostname},
        now_ms,
    )
    return record
