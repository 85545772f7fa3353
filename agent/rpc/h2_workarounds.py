"""Workarounds for the ``h2`` / ``hyperframe`` libraries, kept in one place.

1. h2 moves its connection state machine to CLOSED on any GOAWAY (python-hyper/h2
   issue 1181), so every later frame raises ProtocolError. RFC 9113 section 6.8 lets
   streams up to the GOAWAY's last stream id finish - a gRPC server stopping
   gracefully sends GOAWAY and then completes its in-flight calls. ``H2Connection``
   restores the state the GOAWAY frame found.
2. h2 formats ``repr(frame)`` for a trace log on every frame it receives, even with
   logging off, and hyperframe's DATA repr hexlifies the whole payload to show its
   first 20 hex digits: a quarter of the agent's CPU when receiving bulk data.
   ``install_cheap_data_repr`` makes hyperframe hexlify only the bytes it shows (the
   text is unchanged).
3. h2's ``acknowledge_received_data`` gives bytes back to the connection's and the
   stream's receive windows together. The channel gives the connection window back
   as soon as data arrives and a stream's window only when its reader consumes the
   data, so a stalled call can exhaust only its own window, never the connection's
   (which every other call shares). ``H2Connection`` acknowledges the two separately,
   with h2's own batching of WINDOW_UPDATE frames (h2's internals: pinned to h2 4).
"""

from __future__ import annotations

import binascii
from typing import Any

import h2.connection
import h2.exceptions
import hyperframe.frame

__all__ = ["H2Connection", "install_cheap_data_repr"]


class H2Connection(h2.connection.H2Connection):
    """``h2.connection.H2Connection`` that lets streams finish after a GOAWAY, and that
    acknowledges received data to the connection and to a stream separately."""

    def acknowledge_connection_data(self, size: int) -> None:
        """Give ``size`` received bytes back to the connection's window only."""
        increment = self._inbound_flow_control_window_manager.process_bytes(size)
        if increment:
            update = hyperframe.frame.WindowUpdateFrame(0)
            update.window_increment = increment
            self._prepare_for_sending([update])

    def acknowledge_stream_data(self, size: int, stream_id: int) -> None:
        """Give ``size`` bytes the application consumed back to one stream's window.

        A stream that is closed (or was never opened) is left alone: no more data
        comes on it, so its window no longer matters.
        """
        try:
            stream = self._get_stream_by_id(stream_id)
        except h2.exceptions.NoSuchStreamError:  # closed, or never opened
            return
        if stream.open:
            self._prepare_for_sending(stream.acknowledge_received_data(size))

    def _receive_goaway_frame(self, frame: Any) -> Any:
        before = self.state_machine.state
        frames, events = super()._receive_goaway_frame(frame)
        if before != h2.connection.ConnectionState.CLOSED:
            self.state_machine.state = before
        return frames, events


def _raw_data_repr(data: bytes | None) -> str:
    """hyperframe's ``_raw_data_repr``, hexlifying only the 10 bytes it shows."""
    if not data:
        return "None"
    shown = binascii.hexlify(data[:10]).decode("ascii")
    return "<hex:" + shown + ("..." if len(data) > 10 else "") + ">"


def install_cheap_data_repr() -> None:
    """Replace hyperframe's frame payload repr with the equivalent cheap one (idempotent)."""
    hyperframe.frame._raw_data_repr = _raw_data_repr
