"""Approver records to API messages (the only place approvers meet protobuf)."""

from __future__ import annotations

from collector.store.base import ApproverRecord
from proto import api_pb2


def approver_info(approver: ApproverRecord) -> api_pb2.ApproverInfo:
    return api_pb2.ApproverInfo(
        customer=approver.customer,
        name=approver.name,
        key_fingerprint=approver.key_fingerprint,
        root_fingerprint=approver.root_fingerprint,
        issued_unix_ms=approver.issued_ms,
        expires_unix_ms=approver.expires_ms,
        revoked_unix_ms=approver.revoked_ms or 0,
        certificate=approver.certificate,
        added_unix_ms=approver.added_ms,
    )
