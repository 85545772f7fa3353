"""Who may see what: customer users are pinned to their own customer."""

from __future__ import annotations

import pytest

from collector.auth import Principal, hash_token, new_api_token, new_join_token
from collector.errors import PermissionDenied


def test_tokens_are_random_and_stored_hashed() -> None:
    token = new_api_token()
    assert token != new_api_token()
    assert token.startswith("act_") and new_join_token().startswith("ajt_")
    assert hash_token(token) != token and len(hash_token(token)) == 64


def test_customer_user_is_pinned_to_its_customer() -> None:
    alice = Principal("alice", "customer", "acme")
    assert alice.visible_customer(None) == "acme"
    assert alice.visible_customer("acme") == "acme"
    with pytest.raises(PermissionDenied):
        alice.visible_customer("globex")
    assert alice.can_see("acme") and not alice.can_see("globex")


def test_engineer_sees_every_customer_and_may_filter() -> None:
    erin = Principal("erin", "engineer")
    assert erin.visible_customer(None) is None
    assert erin.visible_customer("globex") == "globex"
    assert erin.can_see("anything")


def test_require_role() -> None:
    Principal("root", "admin").require("admin")
    with pytest.raises(PermissionDenied):
        Principal("erin", "engineer").require("admin")
