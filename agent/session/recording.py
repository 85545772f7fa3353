"""The customer's own copy of terminal sessions: asciicast v2 files kept on the host.

Shell and exec channels are recorded to
``<recordings dir>/<session id>/<tunnel id>-<channel>.cast`` (directories 0700,
files 0600): output always, typed input only with ``sessions.record_input``. File
transfers are not recorded (their bytes are files, not a terminal): subsystems
(sftp) and exec channels whose command starts with ``scp `` or ``rsync --server``.
A recording that cannot be started is logged and the channel works unrecorded; the
collector's gateway keeps the authoritative recording either way.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agent.session.backend import ChannelRequest
from common.asciicast import CastWriter

__all__ = ["FILE_TRANSFER_PREFIXES", "CustomerCopy", "is_file_transfer"]

log = logging.getLogger(__name__)

FILE_TRANSFER_PREFIXES = ("scp ", "rsync --server")
_DEFAULT_SIZE = (80, 24)


def is_file_transfer(request: ChannelRequest) -> bool:
    """True for sftp and other subsystems, and for scp / rsync server commands."""
    if request.kind == "subsystem":
        return True
    return request.kind == "exec" and request.command.lstrip().startswith(FILE_TRANSFER_PREFIXES)


class CustomerCopy:
    """Starts recordings under ``directory`` (session ids and tunnel ids name files:
    the caller checks them with ``valid_session_id``)."""

    def __init__(self, directory: Path, *, record_input: bool) -> None:
        self.directory = directory
        self.record_input = record_input

    def start(
        self, session_id: str, tunnel_id: str, channel: int, request: ChannelRequest, title: str
    ) -> CastWriter | None:
        """A writer for this channel, or None (a file transfer, or the file cannot be made)."""
        if is_file_transfer(request) or request.kind not in ("shell", "exec"):
            return None
        width, height = (request.cols, request.rows) if request.pty else _DEFAULT_SIZE
        folder = self.directory / session_id
        try:
            for path in (self.directory, folder):
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(path, 0o700)
            return CastWriter(
                folder / f"{tunnel_id}-{channel}.cast",
                width=width or _DEFAULT_SIZE[0],
                height=height or _DEFAULT_SIZE[1],
                title=title,
                command=request.command if request.kind == "exec" else "",
                record_input=self.record_input,
                env={"TERM": request.term} if request.term else None,
            )
        except OSError as exc:
            log.error("cannot record channel %d of %s: %s", channel, session_id, exc)
            return None
