"""File transfers seen in a relayed channel: which files, how big, which way.

The gateway does not record file transfers (their bytes are files, not a terminal),
but the session's timeline lists every file copied, as the host's ``sessions.log``
lists the channels. A ``TransferWatcher`` reads the two byte streams of one channel
as they pass — ``from_engineer`` and ``to_engineer`` — and returns each transfer
once it is complete:

* ``sftp`` (the subsystem, which is also what ``scp`` uses since OpenSSH 9.0): an
  SSH_FXP_OPEN names the path; WRITEs (upload) and DATA replies to READs (download)
  count its bytes; SSH_FXP_CLOSE of the handle completes it.
* legacy ``scp -t`` (upload) / ``scp -f`` (download), i.e. ``scp -O``: the protocol's
  ``C`` lines name each file and its size, ``D``/``E`` lines its directory.

Parsing is bounded: only packet heads are kept (``HEAD_LIMIT``), file contents are
skipped as they pass; a stream that stops making sense is no longer watched (the
channel goes on — watching must never break a copy). At most ``MAX_TRANSFERS`` are
reported per channel; ``dropped`` counts the rest (the gateway logs that number).
"""

from __future__ import annotations

import shlex
import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["FileTransfer", "TransferWatcher", "watcher_for"]

HEAD_LIMIT = 8 * 1024  # bytes of each SFTP packet kept: type, ids, handle, path
MAX_SFTP_PACKET = 16 * 1024 * 1024  # larger length: not SFTP (OpenSSH's limit is 256 KiB)
MAX_SCP_LINE = 8 * 1024
MAX_OPEN_FILES = 1024  # handles and requests tracked at once
MAX_TRANSFERS = 1000  # per channel; beyond, one summary

# SFTP v3 packet types (draft-ietf-secsh-filexfer-02).
FXP_OPEN, FXP_CLOSE, FXP_READ, FXP_WRITE = 3, 4, 5, 6
FXP_HANDLE, FXP_DATA = 102, 103
FXF_WRITE = 0x02


@dataclass(frozen=True)
class FileTransfer:
    """One file copied: ``direction`` is "upload" (to the host) or "download"."""

    protocol: str  # "sftp" | "scp"
    direction: str
    path: str  # on the host; for scp, the path given to scp (a file or a directory)
    size_bytes: int
    name: str = ""  # scp: the file's name in the protocol (under -r, with its directories)
    complete: bool = True  # False: the channel ended in the middle of this file

    def details(self) -> dict[str, object]:
        """The event details: only what is known."""
        details: dict[str, object] = {
            "protocol": self.protocol,
            "direction": self.direction,
            "path": self.path,
            "size_bytes": self.size_bytes,
        }
        if self.name:
            details["name"] = self.name
        if not self.complete:
            details["complete"] = False
        return details


class TransferWatcher:
    """Reads a channel's two streams; each method returns the transfers it completed."""

    def __init__(self) -> None:
        self.reported = 0
        self.dropped = 0

    def from_engineer(self, data: bytes) -> list[FileTransfer]:
        return []

    def to_engineer(self, data: bytes) -> list[FileTransfer]:
        return []

    def close(self) -> list[FileTransfer]:
        """The channel ended: transfers still open (cut short) are reported as they are."""
        return []

    def _bounded(self, transfers: list[FileTransfer]) -> list[FileTransfer]:
        room = max(0, MAX_TRANSFERS - self.reported)
        self.dropped += max(0, len(transfers) - room)
        kept = transfers[:room]
        self.reported += len(kept)
        return kept


def watcher_for(kind: str, command: str) -> TransferWatcher | None:
    """The watcher for a channel (``kind`` shell/exec/subsystem), None if it is no
    file transfer the gateway understands."""
    if kind == "subsystem":
        return SftpWatcher() if command == "sftp" else None
    if kind != "exec":
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or words[0].rsplit("/", 1)[-1] != "scp":
        return None
    flags = "".join(w[1:] for w in words[1:] if w.startswith("-") and w != "--")
    paths = [w for w in words[1:] if not w.startswith("-")]
    target = paths[-1] if paths else ""
    if "t" in flags:
        return ScpWatcher("upload", target)
    if "f" in flags:
        return ScpWatcher("download", target)
    return None


# -- sftp ------------------------------------------------------------------------------


class _PacketReader:
    """Splits one SFTP stream into packets, keeping each packet's head only."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._length = -1  # of the packet being read; -1: reading a length
        self._skip = 0  # body bytes past the head still to pass over
        self.broken = False

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """Yields (packet length, head) per packet; the head has at most HEAD_LIMIT bytes."""
        view = memoryview(data)
        while view and not self.broken:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = 4 if self._length < 0 else min(self._length, HEAD_LIMIT)
            take = min(need - len(self._buffer), len(view))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) < need:
                return
            if self._length < 0:
                (self._length,) = struct.unpack(">I", self._buffer)
                self._buffer.clear()
                if not 0 < self._length <= MAX_SFTP_PACKET:
                    self.broken = True
                continue
            length, head = self._length, bytes(self._buffer)
            self._skip = length - len(head)
            self._length = -1
            self._buffer.clear()
            yield length, head


class _Head:
    """Reads fields from a packet head; raises ValueError past its end."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def byte(self) -> int:
        return self._take(1)[0]

    def uint32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def string(self) -> bytes:
        return self._take(self.uint32())

    def _take(self, n: int) -> bytes:
        if self._at + n > len(self._data):
            raise ValueError("past the packet head")
        chunk = self._data[self._at : self._at + n]
        self._at += n
        return chunk


@dataclass
class _OpenFile:
    path: str
    writing: bool
    written: int = 0
    read: int = 0

    def transfer(self, complete: bool = True) -> FileTransfer:
        upload = self.written > 0 or (self.writing and self.read == 0)
        return FileTransfer(
            "sftp",
            "upload" if upload else "download",
            self.path,
            self.written if upload else self.read,
            complete=complete,
        )


class SftpWatcher(TransferWatcher):
    """Follows SFTP requests (engineer → host) and replies (host → engineer)."""

    def __init__(self) -> None:
        super().__init__()
        self._requests = _PacketReader()
        self._replies = _PacketReader()
        self._opening: dict[int, _OpenFile] = {}  # request id → file being opened
        self._reading: dict[int, bytes] = {}  # READ request id → handle
        self._files: dict[bytes, _OpenFile] = {}  # handle → open file

    def from_engineer(self, data: bytes) -> list[FileTransfer]:
        done: list[FileTransfer] = []
        for length, head in self._requests.feed(data):
            try:
                self._request(length, _Head(head), done)
            except ValueError:
                continue  # a packet whose head we cannot read: not one of ours
        return self._bounded(done)

    def _request(self, length: int, head: _Head, done: list[FileTransfer]) -> None:
        kind = head.byte()
        if kind not in (FXP_OPEN, FXP_CLOSE, FXP_READ, FXP_WRITE):
            return
        request_id = head.uint32()
        if kind == FXP_OPEN:
            path = head.string().decode("utf-8", "replace")
            flags = head.uint32()
            if len(self._opening) < MAX_OPEN_FILES:
                self._opening[request_id] = _OpenFile(path, bool(flags & FXF_WRITE))
            return
        handle = head.string()
        if kind == FXP_CLOSE:
            opened = self._files.pop(handle, None)
            if opened is not None:
                done.append(opened.transfer())
        elif kind == FXP_READ:
            if handle in self._files and len(self._reading) < MAX_OPEN_FILES:
                self._reading[request_id] = handle
        else:  # WRITE: id, handle, uint64 offset, string data — its size from the length
            opened = self._files.get(handle)
            if opened is not None:
                opened.written += max(0, length - (1 + 4 + 4 + len(handle) + 8 + 4))

    def to_engineer(self, data: bytes) -> list[FileTransfer]:
        for length, head in self._replies.feed(data):
            try:
                self._reply(length, _Head(head))
            except ValueError:
                continue
        return []

    def _reply(self, length: int, head: _Head) -> None:
        kind = head.byte()
        if kind not in (FXP_HANDLE, FXP_DATA):
            # STATUS replies end an OPEN that failed or a READ at EOF
            if kind == 101:
                request_id = head.uint32()
                self._opening.pop(request_id, None)
                self._reading.pop(request_id, None)
            return
        request_id = head.uint32()
        if kind == FXP_HANDLE:
            opened = self._opening.pop(request_id, None)
            if opened is not None and len(self._files) < MAX_OPEN_FILES:
                self._files[head.string()] = opened
            return
        handle = self._reading.pop(request_id, None)
        opened = self._files.get(handle) if handle is not None else None
        if opened is not None:  # DATA: id, string data
            opened.read += max(0, length - (1 + 4 + 4))

    def close(self) -> list[FileTransfer]:
        files, self._files = list(self._files.values()), {}
        return self._bounded([f.transfer(complete=False) for f in files if f.read or f.written])


# -- legacy scp ------------------------------------------------------------------------


class ScpWatcher(TransferWatcher):
    """Follows the scp/rcp protocol in the stream of the side that sends the files:
    the engineer's for an upload (``scp -t`` on the host), the host's for a download."""

    def __init__(self, direction: str, target: str) -> None:
        super().__init__()
        self._direction = direction
        self._target = target
        self._line = bytearray()
        self._skip = 0  # file bytes (and the status byte after them) still to pass
        self._current: tuple[str, int] | None = None  # the file being sent
        self._dirs: list[str] = []
        self._broken = False

    def from_engineer(self, data: bytes) -> list[FileTransfer]:
        return self._feed(data) if self._direction == "upload" else []

    def to_engineer(self, data: bytes) -> list[FileTransfer]:
        return self._feed(data) if self._direction == "download" else []

    def _feed(self, data: bytes) -> list[FileTransfer]:
        done: list[FileTransfer] = []
        view = memoryview(data)
        while view and not self._broken:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                if not self._skip and self._current is not None:
                    done.append(self._transfer(*self._current))
                    self._current = None
                continue
            if not self._line and view[0] == 0:  # an acknowledgement between messages
                view = view[1:]
                continue
            end = bytes(view[: MAX_SCP_LINE + 1]).find(b"\n")
            if end < 0:
                self._line += view
                view = view[len(view) :]
                if len(self._line) > MAX_SCP_LINE:
                    self._broken = True
                continue
            self._line += view[:end]
            view = view[end + 1 :]
            line, self._line = bytes(self._line), bytearray()
            self._message(line.decode("utf-8", "replace"))
        return self._bounded(done)

    def _message(self, line: str) -> None:
        kind, rest = line[:1], line[1:]
        if kind in ("C", "D"):
            parts = rest.split(" ", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                self._broken = True
                return
            name = "/".join([*self._dirs, parts[2]])
            if kind == "D":
                self._dirs.append(parts[2])
            else:
                self._current = (name, int(parts[1]))
                self._skip = int(parts[1]) + 1  # the contents, then a status byte
        elif kind == "E":
            if self._dirs:
                self._dirs.pop()
        elif kind not in ("T", "\x01", "\x02"):  # times, warnings, errors: nothing to count
            self._broken = True

    def _transfer(self, name: str, size: int, complete: bool = True) -> FileTransfer:
        return FileTransfer("scp", self._direction, self._target, size, name, complete)

    def close(self) -> list[FileTransfer]:
        current, self._current = self._current, None
        if current is None:
            return []
        name, size = current
        copied = max(0, size - self._skip + 1)
        return self._bounded([self._transfer(name, copied, complete=False)])
