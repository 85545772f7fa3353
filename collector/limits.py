"""Bounds on what people send the API: text sizes, list lengths, numbers, page sizes.

Pure checks (no gRPC): each raises InvalidRequest naming the field and its limit, so
the API answers INVALID_ARGUMENT with a message the user can act on. The limits are
documented in docs/limits.md; keep the two in step.

Text limits count UTF-8 bytes. They keep every stored object far below the client's
4 MiB message limit; list responses are additionally paged by count and by bytes
(``PAGE_BYTES``) so no response can exceed it, however many objects there are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from collector.errors import InvalidRequest

KiB = 1024

TICKET_TITLE = 200  # characters
TICKET_DESCRIPTION = 64 * KiB
TICKET_TEXT = 16 * KiB  # comments, reasons (reject, reopen, wait, resume)
RESOLUTION_FIELD = 16 * KiB  # cause, actions, prevention
NAME = 256  # host, customer, assignee, playbook, session and run ids, fingerprints
SESSION_REASON = 2 * KiB
LIST_FILTER_ITEMS = 16
RUN_PARAMS = 64
RUN_PARAM_VALUE = 4 * KiB
KEY_OR_CERTIFICATE = 16 * KiB  # SSH public keys, approver certificates, revocations
SIGNED_APPROVAL = 64 * KiB
SSH_KEYS_PER_USER = 100  # bounds ListSshKeys for a user (each key under 16 KiB)
APPROVERS_PER_CUSTOMER = 200  # bounds ListApprovers for a customer (certificates ~1 KiB)

MAX_UNIX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_INT64 = 2**63 - 1

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
PAGE_BYTES = 2 * 1024 * KiB  # a page stops growing at 2 MiB (half the client limit)


def text(field: str, value: str, limit: int) -> str:
    """``value`` if it is at most ``limit`` UTF-8 bytes, else InvalidRequest."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InvalidRequest(f"{field} is {size} bytes; the limit is {limit} bytes")
    return value


def blob(field: str, value: bytes, limit: int) -> bytes:
    """``value`` if it is at most ``limit`` bytes, else InvalidRequest."""
    if len(value) > limit:
        raise InvalidRequest(f"{field} is {len(value)} bytes; the limit is {limit} bytes")
    return value


def items(field: str, values: Iterable[str], count: int, each: int) -> list[str]:
    """At most ``count`` strings of at most ``each`` bytes each."""
    listed = list(values)
    if len(listed) > count:
        raise InvalidRequest(f"{field} has {len(listed)} entries; the limit is {count}")
    return [text(f"{field}[{i}]", v, each) for i, v in enumerate(listed)]


def mapping(field: str, values: Mapping[str, str], count: int, each: int) -> dict[str, str]:
    """At most ``count`` entries with keys of at most ``NAME`` and values of ``each`` bytes."""
    if len(values) > count:
        raise InvalidRequest(f"{field} has {len(values)} entries; the limit is {count}")
    for key, value in values.items():
        text(f"{field} key", key, NAME)
        text(f"{field}[{key[:40]}]", value, each)
    return dict(values)


def number(field: str, value: int, low: int, high: int) -> int:
    """``value`` if ``low <= value <= high``, else InvalidRequest naming the range."""
    if not low <= value <= high:
        raise InvalidRequest(f"{field} = {value} is out of range ({low}..{high})")
    return value


def page_size(value: int, default: int = DEFAULT_PAGE_SIZE, limit: int = MAX_PAGE_SIZE) -> int:
    """The page size asked for (0: ``default``), at most ``limit``; negative is refused."""
    number("page_size", value, 0, MAX_INT64)
    return min(value or default, limit)


def page_token(value: str) -> int:
    """The offset a page token stands for ("" is the first page)."""
    if not value:
        return 0
    if not value.isdigit() or len(value) > 18:
        raise InvalidRequest(f"page_token {value[:40]!r} is not one this collector issued")
    return int(value)
