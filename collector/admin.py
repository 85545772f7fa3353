"""Admin actions: join tokens, users, revocation. Each one is written to the audit log.

Functions take the store and an explicit actor and time, so the CLI, the API and
tests share them.
"""

from __future__ import annotations

import re

from collector.auth import ROLES, hash_token, new_api_token, new_join_token
from collector.errors import InvalidRequest, UnknownUser
from collector.store import AgentRecord, Store, User

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MAX_JOIN_TOKEN_TTL_MS = 30 * 24 * 3600 * 1000
MAX_API_TOKEN_TTL_MS = 5 * 366 * 24 * 3600 * 1000  # five years


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


def _token_expiry(ttl_ms: int | None, now_ms: int) -> int | None:
    """When a token issued now with ``ttl_ms`` expires (None: never); InvalidRequest if
    the TTL is out of range."""
    if ttl_ms is None:
        return None
    if not 0 < ttl_ms <= MAX_API_TOKEN_TTL_MS:
        raise InvalidRequest("--ttl must be between 1s and 5 years (e.g. 90d), or omitted")
    return now_ms + ttl_ms


def add_user(
    store: Store,
    name: str,
    role: str,
    customer: str | None,
    actor: str,
    now_ms: int,
    ttl_ms: int | None = None,
) -> str:
    """Create a user and return its API token (shown once, stored hashed); with
    ``ttl_ms`` the token is refused from ``now_ms + ttl_ms`` on."""
    check_name("user", name)
    if role not in ROLES:
        raise InvalidRequest(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
    if role == "customer" and not customer:
        raise InvalidRequest("a customer user needs --customer NAME")
    if role != "customer" and customer:
        raise InvalidRequest(f"--customer applies only to role customer, not {role}")
    if customer:
        check_name("customer", customer)
    expires_ms = _token_expiry(ttl_ms, now_ms)
    token = new_api_token()
    store.add_user(name, role, customer, hash_token(token), now_ms, expires_ms)
    store.append_audit(
        actor,
        "user.added",
        name,
        {"role": role, "customer": customer, "token_expires_ms": expires_ms},
        now_ms,
    )
    return token


def list_users(store: Store) -> list[User]:
    """Every user, by name (tokens are never shown: only their hashes are stored)."""
    return store.list_users()


def disable_user(store: Store, name: str, actor: str, now_ms: int) -> User:
    """Disable a user: its token is refused from the next call on."""
    _existing(store, name)
    user = store.set_user_disabled(name, now_ms)
    store.append_audit(actor, "user.disabled", name, {"role": user.role}, now_ms)
    return user


def enable_user(store: Store, name: str, actor: str, now_ms: int) -> User:
    """Enable a disabled user again (its current token works, unless expired)."""
    _existing(store, name)
    user = store.set_user_disabled(name, None)
    store.append_audit(actor, "user.enabled", name, {"role": user.role}, now_ms)
    return user


def remove_user(store: Store, name: str, actor: str, now_ms: int) -> User:
    """Delete a user and its SSH keys; its token stops working at once."""
    _existing(store, name)
    user = store.remove_user(name)
    store.append_audit(
        actor, "user.removed", name, {"role": user.role, "customer": user.customer}, now_ms
    )
    return user


def rotate_token(
    store: Store, name: str, actor: str, now_ms: int, ttl_ms: int | None = None
) -> tuple[User, str]:
    """Give the user a new API token (returned, shown once); the old one stops working."""
    _existing(store, name)
    expires_ms = _token_expiry(ttl_ms, now_ms)
    token = new_api_token()
    user = store.replace_user_token(name, hash_token(token), expires_ms, now_ms)
    store.append_audit(actor, "user.token_rotated", name, {"token_expires_ms": expires_ms}, now_ms)
    return user, token


def _existing(store: Store, name: str) -> User:
    if not NAME_PATTERN.match(name):
        raise UnknownUser(name[:64])
    user = store.get_user(name)
    if user is None:
        raise UnknownUser(name)
    return user


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
