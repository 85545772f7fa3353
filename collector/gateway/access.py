"""What the gateway's threads may ask of the collector (the thread-side facade).

Every method blocks the calling gateway thread while the work runs on the event
loop (``LoopBridge``). Domain decisions stay in ``SessionService``; this module only
translates between SSH-level facts (a key fingerprint, a channel) and it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.gateway.bridge import LoopBridge, ThreadTunnel
from collector.gateway.recording import (
    ChannelRecording,
    WatchHub,
    WatchItem,
    new_recording_path,
    start_recording,
)
from collector.gateway.transfers import FileTransfer
from collector.gateway.tunnels import TunnelBroker
from collector.metrics import CollectorMetrics
from collector.sessions.errors import LoginRefused
from collector.sessions.keys import SshKeys
from collector.sessions.model import RemoteSession
from collector.sessions.service import SessionService
from collector.shared_files import SharedFiles
from collector.store.base import RecordingRecord
from collector.store.writer import StoreThread
from common.asciicast import CastWriter


@dataclass(frozen=True)
class Login:
    """An authorised engineer login through one session."""

    session_id: str
    engineer: str
    agent_id: str
    customer: str
    hostname: str
    window_end_ms: int
    approved_by: str
    signed_approval: bytes = b""  # the customer's bundle, sent to the host with SessionOpen

    @classmethod
    def of(cls, session: RemoteSession) -> Login:
        return cls(
            session_id=session.session_id,
            engineer=session.engineer,
            agent_id=session.agent_id,
            customer=session.customer,
            hostname=session.hostname,
            window_end_ms=session.window_end_ms or 0,
            approved_by=session.approved_by or "",
            signed_approval=session.signed_approval or b"",
        )


@dataclass(frozen=True)
class GatewaySettings:
    """Gateway behaviour from the collector's config."""

    data_dir: Path
    record_input: bool = False  # also record what the engineer types
    warning_ms: int = 5 * 60_000  # warn the engineer this long before the window ends


class GatewayAccess:
    """Blocking calls from gateway threads into the collector's services."""

    def __init__(
        self,
        bridge: LoopBridge,
        db: StoreThread,
        sessions: SessionService,
        keys: SshKeys,
        broker: TunnelBroker,
        hub: WatchHub,
        metrics: CollectorMetrics,
        settings: GatewaySettings,
        clock_ms: Callable[[], int],
        files: SharedFiles | None = None,
    ) -> None:
        """``files``: where finished recordings are shared with other replicas (None:
        one process)."""
        self._bridge = bridge
        self._db = db
        self._sessions = sessions
        self._keys = keys
        self._broker = broker
        self._hub = hub
        self.metrics = metrics
        self.settings = settings
        self.clock_ms = clock_ms
        self._files = files

    def authorize(self, session_id: str, key_fingerprint: str) -> Login:
        """The login the key may make as ``session_id``; raises LoginRefused (not
        audited yet: see ``refused``)."""

        async def check() -> RemoteSession:
            user = await self._keys.owner(key_fingerprint)
            return await self._sessions.authorize_login(session_id, user)

        return Login.of(self._bridge.call(check()))

    def refused(self, refusal: LoginRefused) -> None:
        """Audit a refused login."""
        self._bridge.call(self._sessions.login_refused(refusal))

    def file_transfers(self, login: Login, transfers: list[FileTransfer]) -> None:
        """Put files copied on the session's timeline, without waiting (the caller is
        relaying bytes)."""
        self._bridge.spawn(
            self._sessions.file_transfers(login.session_id, [t.details() for t in transfers]),
            f"the file transfers of {login.session_id}",
        )

    def open_tunnel(self, login: Login) -> ThreadTunnel:
        """A tunnel to the session's agent; raises TunnelUnavailable."""
        tunnel = self._bridge.call(
            self._broker.open(
                login.agent_id,
                login.session_id,
                login.engineer,
                login.window_end_ms,
                login.approved_by,
                login.signed_approval,
            ),
            timeout=None,
        )
        return ThreadTunnel(tunnel, self._bridge)

    def connected(self, login: Login) -> None:
        self._bridge.call(self._sessions.connected(login.session_id))

    def disconnected(self, login: Login, **details: Any) -> None:
        self._bridge.call(self._sessions.disconnected(login.session_id, **details))

    def record(
        self, login: Login, kind: str, command: str, width: int, height: int
    ) -> ChannelRecording:
        """Start recording one channel of the login."""
        now = self.clock_ms()
        draft = RecordingRecord(
            session_id=login.session_id,
            part=0,
            kind=kind,
            command=command,
            path=new_recording_path(login.session_id, now),
            started_ms=now,
            input_recorded=self.settings.record_input,
        )
        record = self._bridge.call(start_recording(self._db, draft, self.settings.data_dir))
        writer = CastWriter(
            self.settings.data_dir / record.path,
            width=width,
            height=height,
            title=f"{login.session_id} {login.engineer}@{login.hostname}",
            command=command,
            record_input=self.settings.record_input,
            started_unix=now / 1000,
        )
        return ChannelRecording(writer, record, self._publisher(login.session_id), self._finish)

    def _publisher(self, session_id: str) -> Callable[[WatchItem], None]:
        def publish(item: WatchItem) -> None:
            self._bridge.soon(self._hub.publish, session_id, item)

        return publish

    def _finish(self, record: RecordingRecord, size: int, sha256: str) -> None:
        self._bridge.call(
            self._db.call(
                self._db.store.finish_recording,
                record.session_id,
                record.part,
                self.clock_ms(),
                size,
                sha256,
            )
        )
        if self._files is not None:  # readable from every replica
            self._bridge.call(self._files.publish(self.settings.data_dir / record.path))
