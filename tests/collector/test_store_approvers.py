"""The Store contract for customer approvals: approver certificates, revocations, the
pinned approval root from the hello, and what runs and sessions keep of a signed approval."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from collector.errors import Conflict, InvalidRequest
from collector.store import Store
from collector.store.base import ApproverRecord, RevocationRecord
from tests.collector.test_store_contract import make_agent
from tests.collector.test_store_runs import new_run
from tests.collector.test_store_sessions import create

T0 = 1_700_000_000_000
ROOT = "sha256:" + "a" * 64
KEY1 = "sha256:" + "1" * 64
KEY2 = "sha256:" + "2" * 64


def approver(key: str = KEY1, customer: str = "acme", name: str = "alice") -> ApproverRecord:
    return ApproverRecord(
        customer=customer,
        key_fingerprint=key,
        name=name,
        root_fingerprint=ROOT,
        issued_ms=T0,
        expires_ms=T0 + 1000,
        certificate=b'{"body":"x","sig":"y"}',
        added_ms=T0 + 1,
        added_by="user:alice",
    )


def revocation(key: str = KEY1, customer: str = "acme", at: int = T0 + 5) -> RevocationRecord:
    return RevocationRecord(customer, key, ROOT, at, b'{"body":"r","sig":"s"}', at + 1, "user:bob")


def test_add_list_and_replace_certificates(store: Store) -> None:
    assert store.add_approver(approver()) == approver()
    store.add_approver(approver(KEY2, name="bob"))
    store.add_approver(approver(KEY1, customer="globex", name="gina"))
    assert [a.name for a in store.list_approvers()] == ["alice", "bob", "gina"]
    assert [a.name for a in store.list_approvers("acme")] == ["alice", "bob"]
    assert store.list_approvers("nobody") == []
    renewed = replace(approver(), expires_ms=T0 + 5000, certificate=b"renewed")
    store.add_approver(renewed)
    assert store.list_approvers("acme")[0] == renewed


def test_a_revoked_key_stays_revoked(store: Store) -> None:
    store.add_approver(approver())
    store.add_approver(approver(KEY1, customer="globex"))
    stored = store.add_revocation(revocation())
    assert stored == revocation()
    assert store.add_revocation(revocation(at=T0 + 99)) == revocation(), "the first one stays"
    [acme] = store.list_approvers("acme")
    assert acme.revoked_ms == T0 + 5
    assert store.list_approvers("globex")[0].revoked_ms is None, "per customer"
    with pytest.raises(Conflict, match="revoked"):
        store.add_approver(approver())
    assert store.list_revocations("acme") == [revocation()]
    assert store.list_revocations("globex") == []
    assert len(store.list_revocations()) == 1


def test_revocations_of_many_customers_in_one_read(store: Store) -> None:
    store.add_revocation(revocation(KEY2, at=T0 + 9))
    store.add_revocation(revocation())
    store.add_revocation(revocation(customer="globex"))
    found = store.revocations_of(["globex", "acme", "nobody", "globex"])
    assert found == [
        [revocation(customer="globex")],
        store.list_revocations("acme"),
        [],
        [revocation(customer="globex")],
    ]
    assert [r.key_fingerprint for r in found[1]] == [KEY1, KEY2]  # by time added
    assert store.revocations_of([]) == []


def test_a_revocation_without_a_certificate_is_kept(store: Store) -> None:
    store.add_revocation(revocation(KEY2))
    assert [r.key_fingerprint for r in store.list_revocations("acme")] == [KEY2]
    with pytest.raises(Conflict):
        store.add_approver(approver(KEY2))


def test_approver_input_is_checked(store: Store) -> None:
    for bad in (replace(approver(), customer=""), replace(approver(), certificate=b"")):
        with pytest.raises(InvalidRequest):
            store.add_approver(bad)
    with pytest.raises(InvalidRequest):
        store.add_revocation(replace(revocation(), revocation=b""))
    assert store.list_approvers() == [] and store.list_revocations() == []


def test_hello_records_the_pinned_root(store: Store) -> None:
    store.add_agent(make_agent())
    assert store.get_agent("a1").approval_root == ""  # type: ignore[union-attr]
    store.record_hello("a1", "web1", "1.0", now_ms=T0, approval_root=ROOT)
    assert store.get_agent("a1").approval_root == ROOT  # type: ignore[union-attr]
    store.record_hello("a1", "web1", "1.0", now_ms=T0 + 1)
    assert store.get_agent("a1").approval_root == "", "unpinned again"  # type: ignore[union-attr]


def test_runs_keep_digest_bound_params_and_signed_approval(store: Store) -> None:
    bound = {"service": "nginx", "password": "sha256:" + "b" * 64}
    stored = store.create_run(new_run(playbook_digest="sha256:" + "c" * 64, bound_params=bound))
    assert store.get_run(stored.run_id) == stored
    assert stored.bound_params == bound and stored.signed_approval is None
    updated = store.update_run(stored.run_id, at_ms=T0 + 1, signed_approval=b"\x00bundle")
    assert updated.signed_approval == b"\x00bundle"
    assert store.get_run(stored.run_id) == updated
    with pytest.raises(InvalidRequest):
        store.update_run(stored.run_id, at_ms=T0 + 2, signed_approval=b"")
    with pytest.raises(InvalidRequest):
        store.create_run(new_run("run-000000000001", bound_params={"x": 1}))  # type: ignore[dict-item]


def test_sessions_keep_the_signed_approval(store: Store) -> None:
    session = create(store)
    assert session.signed_approval is None
    approved = replace(session, state="approved", signed_approval=b"bundle-bytes")
    saved = store.update_session(approved, [])
    assert saved.signed_approval == b"bundle-bytes"
    assert store.get_session(session.session_id) == saved


def test_a_customer_holds_at_most_the_limit_of_approver_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that ListApprovers stays far below the client's message limit."""
    import asyncio
    import time

    from collector import limits
    from collector.approvers import ApproverService
    from collector.auth import Principal
    from collector.errors import InvalidRequest
    from collector.store import SQLiteStore
    from collector.store.writer import StoreThread
    from tests.consent_support import CustomerRoot

    monkeypatch.setattr(limits, "APPROVERS_PER_CUSTOMER", 2)
    root = CustomerRoot("acme")
    db = StoreThread(SQLiteStore(tmp_path / "a.db"))
    service = ApproverService(db, lambda agent, message: True, lambda: int(time.time() * 1000))
    carol = Principal("carol", "customer", "acme")

    async def scenario() -> None:
        for name in ("alice", "bob"):
            await service.add(carol, root.certify(name).certificate.encode())
        with pytest.raises(InvalidRequest, match="approver certificates, the limit"):
            await service.add(carol, root.certify("dave").certificate.encode())

    try:
        asyncio.run(scenario())
    finally:
        db.close()
