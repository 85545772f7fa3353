"""Driving the session endpoint as the collector would, without a collector.

``FakeTunnel`` is both ends of one Tunnel RPC: the agent's end (``TunnelIO``) and the
test's, which plays the collector (``send``, ``next``, ``close``, ``break_rpc``).
``Endpoint`` wraps a real ``SessionEndpoint`` with a real backend behind it and
records what the agent sent on its control stream.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.consent.memory import ConsentMemory
from agent.consent.verify import ConsentVerifier
from agent.journal import Journal
from agent.playbook.policy import SessionApprovalMode
from agent.session.backend import Backend
from agent.session.endpoint import SessionEndpoint
from agent.session.recording import CustomerCopy
from agent.session.requests import SessionRequests
from proto import agent_pb2

Frame = agent_pb2.TunnelFrame
SESSION = "ses-0123456789ab"
CUSTOMER, AGENT_ID = "acme", "agt-1"
_BROKEN = object()
_DONE = object()


class FakeTunnel:
    """One tunnel RPC. Agent side: the TunnelIO methods. Test side: the rest."""

    def __init__(self, stall_after: int | None = None) -> None:
        """``stall_after``: the collector stops reading after that many frames."""
        self._stall_after = stall_after
        self._written = 0
        self._to_agent: asyncio.Queue[object] = asyncio.Queue()
        self._from_agent: asyncio.Queue[object] = asyncio.Queue()
        self.agent_done_writing = False
        self.cancelled = False
        self.finished = asyncio.Event()  # the agent is done with the RPC

    # -- the agent's end (TunnelIO) -----------------------------------------------------

    async def write(self, frame: Frame) -> None:
        if self.cancelled or self.agent_done_writing:
            raise ConnectionError("the tunnel is closed")
        self._written += 1
        if self._stall_after is not None and self._written > self._stall_after:
            await asyncio.Event().wait()  # flow control: blocked until the RPC is cancelled
        await self._from_agent.put(frame)

    async def read(self) -> Frame | None:
        item = await self._to_agent.get()
        if item is _BROKEN:
            self._to_agent.put_nowait(_BROKEN)
            raise ConnectionError("UNAVAILABLE: the RPC broke")
        if item is None:
            self._to_agent.put_nowait(None)
            return None
        assert isinstance(item, Frame)
        return item

    async def done_writing(self) -> None:
        if not self.agent_done_writing:
            self.agent_done_writing = True
            await self._from_agent.put(_DONE)
            self._to_agent.put_nowait(
                None
            )  # like the collector: the RPC ends with the agent's side

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._to_agent.put_nowait(_BROKEN)
            self._from_agent.put_nowait(_DONE)
        self.finished.set()

    # -- the collector's end ---------------------------------------------------------------

    def send(self, **frame: object) -> None:
        self._to_agent.put_nowait(Frame(**frame))  # type: ignore[arg-type]

    def close(self) -> None:
        """The collector ends the RPC cleanly (engineer gone, terminate)."""
        self._to_agent.put_nowait(None)

    def break_rpc(self) -> None:
        """The RPC fails (network, collector crash)."""
        self._to_agent.put_nowait(_BROKEN)

    async def next(self, timeout: float = 10.0) -> Frame | None:
        """The agent's next frame; None once it closed its side."""
        item = await asyncio.wait_for(self._from_agent.get(), timeout)
        if item is _DONE:
            self._from_agent.put_nowait(_DONE)
            return None
        assert isinstance(item, Frame)
        return item

    async def expect(self, kind: str, timeout: float = 10.0) -> Frame:
        frame = await self.next(timeout)
        assert frame is not None, f"the agent closed the tunnel instead of sending {kind}"
        assert frame.WhichOneof("kind") == kind, f"expected {kind}, got {frame}"
        return frame

    async def open_channel(
        self,
        channel: int,
        kind: str,
        command: str = "",
        *,
        pty: bool = False,
        cols: int = 80,
        rows: int = 24,
    ) -> str:
        """Open a channel; returns the agent's error ("" when open)."""
        request = agent_pb2.ChannelOpen(
            channel=channel,
            kind=kind,
            command=command,
            pty=pty,
            term="xterm-256color" if pty else "",
            cols=cols,
            rows=rows,
        )
        self.send(open=request)
        opened = await self.expect("opened")
        assert opened.opened.channel == channel
        return opened.opened.error

    def type(self, channel: int, data: bytes) -> None:
        self.send(data=agent_pb2.ChannelData(channel=channel, data=data))

    async def until_end(self, timeout: float = 15.0) -> ChannelLog:
        """Collect frames until the agent closes its side; returns what came."""
        log = ChannelLog()
        async with asyncio.timeout(timeout):
            while (frame := await self.next(timeout)) is not None:
                log.add(frame)
        return log

    async def until_closed(self, channel: int, timeout: float = 15.0) -> ChannelLog:
        """Collect frames until ``channel`` is closed by the agent."""
        log = ChannelLog()
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next(timeout)
                assert frame is not None, f"the tunnel ended before channel {channel} closed"
                log.add(frame)
                if frame.WhichOneof("kind") == "close" and frame.close.channel == channel:
                    return log

    async def until_output(self, channel: int, text: bytes, timeout: float = 15.0) -> ChannelLog:
        """Collect frames until ``channel``'s output contains ``text``."""
        log = ChannelLog()
        async with asyncio.timeout(timeout):
            while text not in log.stdout(channel):
                frame = await self.next(timeout)
                assert frame is not None, f"the tunnel ended before {text!r} came"
                log.add(frame)
        return log


@dataclass
class ChannelLog:
    """Frames the agent sent, with helpers per channel."""

    frames: list[Frame] = field(default_factory=list)

    def add(self, frame: Frame) -> None:
        self.frames.append(frame)

    def kinds(self, channel: int | None = None) -> list[str]:
        return [
            str(f.WhichOneof("kind"))
            for f in self.frames
            if channel is None
            or getattr(getattr(f, str(f.WhichOneof("kind"))), "channel", None) == channel
        ]

    def stdout(self, channel: int) -> bytes:
        return b"".join(
            f.data.data
            for f in self.frames
            if f.WhichOneof("kind") == "data" and f.data.channel == channel and not f.data.stderr
        )

    def stderr(self, channel: int) -> bytes:
        return b"".join(
            f.data.data
            for f in self.frames
            if f.WhichOneof("kind") == "data" and f.data.channel == channel and f.data.stderr
        )

    def exit(self, channel: int) -> agent_pb2.ChannelExit | None:
        found = [f.exit for f in self.frames if f.WhichOneof("kind") == "exit"]
        return next((e for e in found if e.channel == channel), None)

    def end_reason(self) -> str | None:
        ends = [f.end.reason for f in self.frames if f.WhichOneof("kind") == "end"]
        return ends[-1] if ends else None


class Endpoint:
    """A real SessionEndpoint under test, its tunnels and the messages it sent."""

    def __init__(
        self,
        state_dir: Path,
        backend: Backend | None,
        policy: SessionApprovalMode = "collector",
        *,
        record_input: bool = False,
        clock: object = time.time,
        poll_seconds: float = 0.05,
        stall_after: int | None = None,
        root: str = "",
    ) -> None:
        self.state_dir = state_dir
        self.stall_after = stall_after
        self.sent: list[agent_pb2.AgentMessage] = []
        self.tunnels: asyncio.Queue[FakeTunnel] = asyncio.Queue()
        self.requests = SessionRequests(state_dir, "disabled" if backend is None else policy)
        self.recordings = state_dir / "recordings"
        self.journal_path = state_dir / "sessions.log"
        self.endpoint = SessionEndpoint(
            policy=policy,
            backend=backend,
            requests=self.requests,
            send=self._send,
            open_tunnel=self._open_tunnel,
            copy=CustomerCopy(self.recordings, record_input=record_input),
            journal=Journal(self.journal_path),
            consent=ConsentVerifier(root, CUSTOMER, AGENT_ID, ConsentMemory(state_dir)),
            poll_seconds=poll_seconds,
        )

    async def _send(self, message: agent_pb2.AgentMessage) -> None:
        self.sent.append(message)

    def _open_tunnel(self) -> FakeTunnel:
        tunnel = FakeTunnel(self.stall_after)
        self.tunnels.put_nowait(tunnel)
        return tunnel

    async def open(
        self,
        *,
        session_id: str = SESSION,
        tunnel_id: str = "tun-0001",
        window_seconds: float = 300.0,
        engineer: str = "erin",
        signed_approval: bytes = b"",
    ) -> FakeTunnel:
        """Send SessionOpen; returns the tunnel the agent opened, attach already checked."""
        window_end = int((time.time() + window_seconds) * 1000)
        self.endpoint.on_message(
            agent_pb2.CollectorMessage(
                session_open=agent_pb2.SessionOpen(
                    session_id=session_id,
                    tunnel_id=tunnel_id,
                    engineer=engineer,
                    window_end_unix_ms=window_end,
                    approved_by="alice",
                    signed_approval=signed_approval,
                )
            )
        )
        tunnel = await asyncio.wait_for(self.tunnels.get(), 5)
        attach = await tunnel.expect("attach")
        assert (attach.attach.tunnel_id, attach.attach.session_id) == (tunnel_id, session_id)
        return tunnel

    def journal(self) -> list[dict[str, Any]]:
        import json

        if not self.journal_path.exists():
            return []
        return [json.loads(line) for line in self.journal_path.read_text().splitlines()]
