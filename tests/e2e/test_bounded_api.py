"""Bounded API inputs against a real collector (issue 11, item 4).

- A customer's 3 MiB description or comment is refused (INVALID_ARGUMENT naming the
  field and the limit), and many tickets/comments that together exceed the client's
  4 MiB limit are paged, so `aftercare tickets` and `ticket show` keep working.
- Every API RPC driven with extreme values (empty, huge strings with control
  characters, max/min integers) ends with a status other than UNKNOWN.
- A batch sequence of 2^63+5 and a gap of 2^64-1 on the agent stream end in
  INVALID_ARGUMENT, not UNKNOWN.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.descriptor import FieldDescriptor

from proto import agent_pb2, agent_pb2_grpc, api_pb2, api_pb2_grpc
from tests.support import Collector

MiB = 1 << 20


def _channel(collector: Collector, **tls: bytes) -> grpc.Channel:
    ca = (collector.data_dir / "ca.pem").read_bytes()
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, **tls)
    return grpc.secure_channel(
        collector.api,
        credentials,
        options=[("grpc.max_send_message_length", 64 * MiB)],
    )


def _auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
def api(collector: Collector) -> Iterator[api_pb2_grpc.ApiStub]:
    with _channel(collector) as channel:
        yield api_pb2_grpc.ApiStub(channel)


def test_huge_ticket_text_is_refused_and_many_big_tickets_are_paged(
    collector: Collector, api: api_pb2_grpc.ApiStub
) -> None:
    customer = collector.add_user("carol", "customer", "acme")
    engineer = collector.add_user("erin", "engineer")
    huge = "x" * (3 * MiB)
    with pytest.raises(grpc.RpcError) as refused:
        api.CreateTicket(
            api_pb2.CreateTicketRequest(title="slow", description=huge, level="consult"),
            metadata=_auth(customer),
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "description is 3145728 bytes; the limit is 65536" in str(refused.value.details())

    big = "y" * 60_000  # under the limit; 80 of them are more than 4 MiB
    first = api.CreateTicket(
        api_pb2.CreateTicketRequest(title="t0", description=big, level="consult"),
        metadata=_auth(customer),
    ).ticket.id
    for i in range(1, 80):
        api.CreateTicket(
            api_pb2.CreateTicketRequest(title=f"t{i}", description=big, level="consult"),
            metadata=_auth(customer),
        )
    with pytest.raises(grpc.RpcError) as refused:
        api.ActOnTicket(
            api_pb2.TicketAction(id=first, action="comment", text=huge), metadata=_auth(customer)
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "text is 3145728 bytes; the limit is 16384" in str(refused.value.details())
    comment = "z" * 16_000
    for _ in range(300):  # about 4.8 MiB of timeline on one ticket
        api.ActOnTicket(
            api_pb2.TicketAction(id=first, action="comment", text=comment),
            metadata=_auth(customer),
        )

    listed = collector.client(engineer, "tickets", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert len(json.loads(listed.stdout)) == 80
    plain = collector.client(engineer, "tickets")
    assert plain.returncode == 0, plain.stderr[-2000:]
    shown = collector.client(engineer, "ticket", "show", str(first), "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    detail = json.loads(shown.stdout)
    comments = [e for e in detail["events"] if e["kind"] == "comment"]
    assert len(comments) == 300
    plain = collector.client(engineer, "ticket", "show", str(first))
    assert plain.returncode == 0, plain.stderr[-2000:]


def _extreme_requests(message_type: Any, real: dict[str, Any]) -> Iterator[Any]:
    """Empty, then every field at an extreme; then the same with the fields that name
    an object (ticket, session, host) naming a real one, so the extremes get past
    "not found" into the code that uses them."""
    yield message_type()
    for request in _all_extreme(message_type):
        yield request
        named = [f for f in message_type.DESCRIPTOR.fields if f.name in real]
        if named:
            copy = message_type()
            copy.CopyFrom(request)
            for field in named:
                setattr(copy, field.name, real[field.name])
            yield copy


def _all_extreme(message_type: Any) -> Iterator[Any]:
    strings = ["", "\x1b]0;x\x07\x00" + "é" * 40_000, "-1", "9" * 40, "../../etc/passwd"]
    ints = {
        FieldDescriptor.TYPE_INT64: [2**63 - 1, -(2**63)],
        FieldDescriptor.TYPE_INT32: [2**31 - 1, -(2**31)],
        FieldDescriptor.TYPE_UINT64: [2**64 - 1],
        FieldDescriptor.TYPE_UINT32: [2**32 - 1],
    }
    for value_index in range(5):
        request = message_type()
        for field in message_type.DESCRIPTOR.fields:
            _set(request, field, value_index, strings, ints)
        yield request


def _set(request: Any, field: Any, index: int, strings: list[str], ints: Any) -> None:
    name = field.name
    is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
    if is_map:
        getattr(request, name)[strings[index % len(strings)][:100] or "k"] = strings[
            index % len(strings)
        ]
    elif field.type == FieldDescriptor.TYPE_STRING:
        value = strings[index % len(strings)]
        if not isinstance(getattr(request, name), str):  # a repeated field
            getattr(request, name).extend([value] * 20)
        else:
            setattr(request, name, value)
    elif field.type == FieldDescriptor.TYPE_BYTES:
        setattr(request, name, strings[index % len(strings)].encode() * 2)
    elif field.type in ints:
        values = ints[field.type]
        setattr(request, name, values[index % len(values)])
    elif field.type == FieldDescriptor.TYPE_BOOL:
        setattr(request, name, True)


def test_no_api_request_ends_in_unknown(collector: Collector) -> None:
    tokens = {
        "admin": collector.admin_token,
        "engineer": collector.add_user("erin", "engineer"),
        "customer": collector.add_user("carol", "customer", "acme"),
    }
    tls = _agent_credentials(collector)
    service = api_pb2.DESCRIPTOR.services_by_name["Api"]
    unknown: list[str] = []
    seen: dict[str, int] = {}
    with _channel(collector) as channel, _connected_agent(collector, tls):
        api = api_pb2_grpc.ApiStub(channel)
        engineer = _auth(tokens["engineer"])
        ticket = api.CreateTicket(
            api_pb2.CreateTicketRequest(title="t", level="3", customer="acme"), metadata=engineer
        ).ticket.id
        session = _request_session(api, engineer)
        real = {
            "id": ticket,
            "ticket_id": ticket,
            "session_id": session,
            "host": "fake-1",
            "decision": "approve",
        }
        for method in service.methods:
            input_type = getattr(api_pb2, method.input_type.name)
            output_type = getattr(api_pb2, method.output_type.name)
            path = f"/{service.full_name}/{method.name}"
            if method.server_streaming:
                call = channel.unary_stream(
                    path, input_type.SerializeToString, output_type.FromString
                )
            else:
                call = channel.unary_unary(
                    path, input_type.SerializeToString, output_type.FromString
                )
            for role, token in tokens.items():
                for request in _extreme_requests(input_type, real):
                    try:
                        reply = call(
                            request,
                            metadata=_auth(token),
                            timeout=2 if method.server_streaming else 10,
                        )
                        if method.server_streaming:
                            for _ in reply:
                                pass
                        seen["OK"] = seen.get("OK", 0) + 1
                    except grpc.RpcError as exc:
                        code = exc.code()
                        seen[code.name] = seen.get(code.name, 0) + 1
                        if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
                            unknown.append(f"{method.name} as {role}: {code.name} {exc.details()}")
    assert not unknown, "\n".join(unknown[:20])
    assert "INVALID_ARGUMENT" in seen


def _request_session(api: api_pb2_grpc.ApiStub, engineer: Any) -> str:
    import time

    deadline = time.monotonic() + 20
    while True:  # the host's policy arrives with its hello
        try:
            return str(
                api.RequestSession(
                    api_pb2.RequestSessionRequest(host="fake-1", reason="r", duration_ms=3_600_000),
                    metadata=engineer,
                ).session_id
            )
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def _connected_agent(collector: Collector, tls: dict[str, bytes]) -> Iterator[None]:
    """A fake agent holding its control stream open (session approval by the collector)."""
    ca = (collector.data_dir / "ca.pem").read_bytes()
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, **tls)
    done = threading.Event()

    def messages() -> Iterator[agent_pb2.AgentMessage]:
        yield agent_pb2.AgentMessage(
            hello=agent_pb2.Hello(hostname="fake-1", session_approval="collector")
        )
        done.wait(120)

    with grpc.secure_channel(collector.agent_address, credentials) as channel:
        replies = agent_pb2_grpc.AgentStreamStub(channel).Connect(messages())
        reader = threading.Thread(target=lambda: [None for _ in _ignore_errors(replies)])
        reader.start()
        try:
            yield
        finally:
            done.set()
            replies.cancel()
            reader.join(10)


def _ignore_errors(replies: Any) -> Iterator[Any]:
    try:
        yield from replies
    except grpc.RpcError:
        return


def _agent_credentials(collector: Collector) -> dict[str, bytes]:
    """Enrol a fake agent with its own key; the TLS material for the agent port."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    args = collector.join_command("acme")
    token = args[args.index("--token") + 1]
    with _channel(collector) as channel:
        reply = agent_pb2_grpc.EnrollmentStub(channel).Enroll(
            agent_pb2.EnrollRequest(token=token, csr_pem=csr, hostname="fake-1")
        )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {"private_key": key_pem, "certificate_chain": reply.certificate_pem}


@pytest.mark.parametrize(
    "message",
    [
        agent_pb2.AgentMessage(batch=agent_pb2.MetricBatch(sequence=2**63 + 5)),
        agent_pb2.AgentMessage(
            gap=agent_pb2.Gap(
                sequence=1,
                first_lost_sequence=1,
                last_lost_sequence=2**64 - 1,
                lost_batches=2**64 - 1,
            )
        ),
        agent_pb2.AgentMessage(batch=agent_pb2.MetricBatch(sequence=1, collected_unix_ms=-(2**63))),
    ],
)
def test_out_of_range_numbers_on_the_agent_stream_are_invalid_arguments(
    collector: Collector, message: agent_pb2.AgentMessage
) -> None:
    tls = _agent_credentials(collector)
    ca = (collector.data_dir / "ca.pem").read_bytes()
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, **tls)
    with grpc.secure_channel(collector.agent_address, credentials) as channel:
        stub = agent_pb2_grpc.AgentStreamStub(channel)
        hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(hostname="fake-1"))
        replies = stub.Connect(iter([hello, message]), timeout=20)
        with pytest.raises(grpc.RpcError) as failed:
            for _ in replies:
                pass
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failed.value.details()
    assert "out of range" in str(failed.value.details())


def test_text_stored_before_the_limits_is_shown_truncated(collector: Collector) -> None:
    """A 3 MiB description and a 3 MiB comment already in the store (written before
    the limits, or by a source without them): the engineers' CLI still works."""
    import time

    from collector.datadir import DataDir
    from collector.tickets.lifecycle import create_event
    from collector.tickets.model import NewEvent, NewTicket

    engineer = collector.add_user("erin", "engineer")
    store = DataDir(collector.data_dir).open_store()
    try:
        now = int(time.time() * 1000)
        for i in range(3):
            new = NewTicket("acme", f"old {i}", "consult", "customer", "d" * (3 * MiB))
            ticket = store.create_ticket(new, create_event(new, "user:carol", now))
            comment = NewEvent(now, "user:carol", "comment", {"text": "c" * (3 * MiB)})
            store.add_ticket_events(ticket.id, [comment])
    finally:
        store.close()
    listed = collector.client(engineer, "tickets", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    tickets = json.loads(listed.stdout)
    assert len(tickets) == 3
    shown = collector.client(engineer, "ticket", "show", str(ticket.id), "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "more bytes not shown" in shown.stdout
    assert collector.client(engineer, "ticket", "show", str(ticket.id)).returncode == 0


def test_a_session_timeline_larger_than_a_message_is_paged(collector: Collector) -> None:
    """An scp -r of thousands of files gives a session thousands of events: `session show`
    and `session log` still get the whole timeline, page by page."""
    import time

    from collector.datadir import DataDir
    from collector.sessions import lifecycle
    from collector.sessions.model import NewSessionEvent
    from collector.store import AgentRecord

    engineer = collector.add_user("erin", "engineer")
    store = DataDir(collector.data_dir).open_store()
    try:
        now = int(time.time() * 1000)
        store.add_agent(AgentRecord("agt-1", "acme", "web-1", now, "1", now + 10**9))
        requested = lifecycle.request(
            agent_id="agt-1", customer="acme", hostname="web-1", engineer="erin",
            reason="copy", duration_ms=3_600_000, at_ms=now,
        )  # fmt: skip
        session = store.create_session(requested.session, requested.events[0])
        path = "/srv/" + "d" * 1500
        copies = [
            NewSessionEvent(now, "user:erin", "file_transfer", {"path": f"{path}/{i}", "size": i})
            for i in range(4000)
        ]
        store.update_session(session, copies)
    finally:
        store.close()
    shown = collector.client(engineer, "session", "show", session.session_id, "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    events = json.loads(shown.stdout)["events"]
    assert len(events) == 4001 and len(shown.stdout) > 6 * MiB  # past one 4 MiB message
    logged = collector.client(engineer, "session", "log", session.session_id)
    assert logged.returncode == 0, logged.stderr[-2000:]
