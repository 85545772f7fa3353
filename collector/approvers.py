"""Customer approvers: certificates and revocations signed by the customer's approval root.

The collector stores these documents and forwards revocations to the customer's hosts;
it cannot make them (it never holds a root key). It verifies them on upload
(``collector.approval_check``) only to refuse mistakes and forgeries early — hosts
verify again. Customer users (and admins) add and revoke, only for their own
customer; engineers may list. Every add and revoke is audited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from collector import limits
from collector.approval_check import verify_certificate, verify_revocation
from collector.auth import Principal
from collector.errors import InvalidRequest, NotFound, PermissionDenied
from collector.store.base import ApproverRecord, RevocationRecord
from collector.store.group_call import GroupCall
from collector.store.writer import StoreThread
from common.approval_format import fingerprint
from proto import agent_pb2

__all__ = ["ApproverService"]


class ApproverService:
    """Add, list and revoke approver certificates; tell hosts about revocations."""

    def __init__(
        self,
        db: StoreThread,
        send: Callable[[str, agent_pb2.CollectorMessage], bool],
        clock_ms: Callable[[], int],
        forward: Callable[[str, agent_pb2.CollectorMessage], Awaitable[bool]] | None = None,
    ) -> None:
        """``send`` reaches agents connected here; ``forward`` those on other replicas
        (``AgentRouter.send``; None with one process)."""
        self._db = db
        self._store = db.store
        self._send = send
        self._forward = forward
        self._clock_ms = clock_ms
        self._connecting: GroupCall[str, list[RevocationRecord]] = GroupCall(
            db, db.store.revocations_of, "revocation-reads"
        )

    async def add(self, who: Principal, data: bytes) -> ApproverRecord:
        """Store a certificate signed by the root it names, for the caller's customer."""
        who.require("customer", "admin")
        certificate = verify_certificate(data)
        _require_own_customer(who, certificate.customer, "add approvers")
        held = await self._db.call(self._store.list_approvers, certificate.customer)
        if len(held) >= limits.APPROVERS_PER_CUSTOMER:
            raise InvalidRequest(
                f"customer {certificate.customer} has {len(held)} approver certificates, the "
                "limit; revoked and expired ones count too"
            )
        now = self._clock_ms()
        record = ApproverRecord(
            customer=certificate.customer,
            key_fingerprint=fingerprint(certificate.key),
            name=certificate.approver,
            root_fingerprint=fingerprint(certificate.root),
            issued_ms=certificate.issued_ms,
            expires_ms=certificate.expires_ms,
            certificate=bytes(data),
            added_ms=now,
            added_by=f"user:{who.name}",
        )
        stored = await self._db.call(self._store.add_approver, record)
        await self._audit(who, "approver.added", stored, {"expires_ms": stored.expires_ms})
        return stored

    async def list_approvers(self, who: Principal, customer: str | None) -> list[ApproverRecord]:
        """Certificates ``who`` may see (customer users: their own customer's)."""
        return await self._db.call(self._store.list_approvers, who.visible_customer(customer))

    async def revoke(self, who: Principal, data: bytes) -> ApproverRecord:
        """Store a revocation signed by the root of the certificate it revokes and send
        the customer's revocations to each of its connected hosts."""
        who.require("customer", "admin")
        revocation = verify_revocation(data)
        _require_own_customer(who, revocation.customer, "revoke approvers")
        key, root = fingerprint(revocation.key), fingerprint(revocation.root)
        approvers = await self._db.call(self._store.list_approvers, revocation.customer)
        matching = [a for a in approvers if a.key_fingerprint == key]
        if not matching:
            raise NotFound(
                f"no approver with key {key} for customer {revocation.customer!r}; "
                "`aftercare approvers list` shows them"
            )
        approver = matching[0]
        if approver.root_fingerprint != root:
            raise PermissionDenied(
                f"the revocation is signed by root {root}, but {approver.name!r}'s certificate "
                f"was issued by root {approver.root_fingerprint}; revoke with that root's key"
            )
        record = RevocationRecord(
            customer=revocation.customer,
            key_fingerprint=key,
            root_fingerprint=root,
            revoked_ms=revocation.revoked_ms,
            revocation=bytes(data),
            added_ms=self._clock_ms(),
            added_by=f"user:{who.name}",
        )
        stored = await self._db.call(self._store.add_revocation, record)
        [revoked] = [
            a
            for a in await self._db.call(self._store.list_approvers, revocation.customer)
            if a.key_fingerprint == key
        ]
        await self._audit(
            who,
            "approver.revoked",
            revoked,
            {"revoked_ms": stored.revoked_ms, "reason": revocation.reason},
        )
        await self._broadcast(revocation.customer)
        return revoked

    async def revoked_keys(self, customer: str) -> set[str]:
        """Fingerprints of the customer's revoked approver keys."""
        revocations = await self._db.call(self._store.list_revocations, customer)
        return {r.key_fingerprint for r in revocations}

    async def revocations_message(self, customer: str) -> agent_pb2.CollectorMessage | None:
        """Every signed revocation of ``customer``, for its hosts; None if there is none.
        Hosts connecting together share one read."""
        revocations = await self._connecting.submit(customer)
        if not revocations:
            return None
        return agent_pb2.CollectorMessage(
            approver_revocations=agent_pb2.ApproverRevocations(
                revocations=[r.revocation for r in revocations]
            )
        )

    async def _broadcast(self, customer: str) -> None:
        message = await self.revocations_message(customer)
        if message is None:
            return
        for agent in await self._db.call(self._store.list_agents, customer):
            if not self._send(agent.agent_id, message) and self._forward is not None:
                await self._forward(agent.agent_id, message)

    async def _audit(
        self, who: Principal, action: str, approver: ApproverRecord, details: dict[str, Any]
    ) -> None:
        await self._db.call(
            self._store.append_audit,
            f"user:{who.name}",
            action,
            f"{approver.customer}/{approver.name}",
            {
                "customer": approver.customer,
                "approver": approver.name,
                "key_fingerprint": approver.key_fingerprint,
                "root_fingerprint": approver.root_fingerprint,
                **details,
            },
            self._clock_ms(),
        )


def _require_own_customer(who: Principal, customer: str, action: str) -> None:
    if who.role == "customer" and who.customer != customer:
        raise PermissionDenied(
            f"user {who.name!r} of customer {who.customer!r} may not {action} for "
            f"customer {customer!r}"
        )
