"""ListPlaybooks and ListSshKeys are paged like the other lists (issue 16), against a
real collector: a page holds at most ``page_size`` items and says where the next one
starts, and the CLI fetches every page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proto import api_pb2, api_pb2_grpc
from tests.support import Collector


def _public_key(comment: str) -> str:
    key = Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}"


@pytest.fixture
def api(collector: Collector) -> Iterator[api_pb2_grpc.ApiStub]:
    ca = (collector.data_dir / "ca.pem").read_bytes()
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    with grpc.secure_channel(collector.api, credentials) as channel:
        yield api_pb2_grpc.ApiStub(channel)


def _auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_playbooks_are_paged_and_the_cli_lists_every_page(
    collector: Collector, api: api_pb2_grpc.ApiStub
) -> None:
    token = collector.admin_token
    everything = collector.client_json(token, "playbooks", "list", "--json")
    names = [p["name"] for p in everything]
    assert len(names) >= 3, "the shipped catalogue has several playbooks"
    seen: list[str] = []
    request = api_pb2.ListPlaybooksRequest(page_size=1)
    for _ in range(len(names) + 1):
        reply = api.ListPlaybooks(request, metadata=_auth(token))
        assert len(reply.playbooks) == 1
        seen += [p.name for p in reply.playbooks]
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    assert seen == names


def test_ssh_keys_are_paged_and_the_cli_lists_every_page(
    collector: Collector, api: api_pb2_grpc.ApiStub, tmp_path: Path
) -> None:
    erin = collector.add_user("erin", "engineer")
    for n in range(3):
        path = tmp_path / f"id_{n}.pub"
        path.write_text(_public_key(f"erin@{n}") + "\n")
        added = collector.client(erin, "keys", "add", str(path))
        assert added.returncode == 0, added.stderr
    listed = collector.client_json(erin, "keys", "list", "--json")
    assert len(listed) == 3
    first = api.ListSshKeys(api_pb2.ListSshKeysRequest(page_size=2), metadata=_auth(erin))
    assert len(first.keys) == 2 and first.next_page_token
    rest = api.ListSshKeys(
        api_pb2.ListSshKeysRequest(page_size=2, page_token=first.next_page_token),
        metadata=_auth(erin),
    )
    assert len(rest.keys) == 1 and rest.next_page_token == ""
    fingerprints = {k.fingerprint for k in [*first.keys, *rest.keys]}
    assert fingerprints == {k["fingerprint"] for k in listed}


def test_a_bad_page_token_is_refused(collector: Collector, api: api_pb2_grpc.ApiStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        api.ListPlaybooks(
            api_pb2.ListPlaybooksRequest(page_token="not-a-token"),
            metadata=_auth(collector.admin_token),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
