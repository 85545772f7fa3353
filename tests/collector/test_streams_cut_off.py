"""Streams.cut_off ends every open stream of an agent, superseded ones included."""

from __future__ import annotations

from collector.errors import AgentRevoked
from collector.server.streams import Streams
from proto import agent_pb2


def test_cut_off_ends_every_stream_of_the_agent_and_no_other() -> None:
    streams = Streams()
    older, newer = streams.open("ag-1"), streams.open("ag-1")
    other = streams.open("ag-2")
    reason = AgentRevoked("ag-1", 0)
    assert streams.cut_off("ag-1", reason) == 2
    for stream in (older, newer):
        assert stream.ended is reason
        assert stream.outbound.get_nowait() is None
    assert not streams.connected("ag-1")
    assert not streams.send("ag-1", agent_pb2.CollectorMessage())
    assert other.ended is None and streams.connected("ag-2")
    streams.close(older)  # the servicers' finally blocks still run: harmless
    streams.close(newer)
    assert streams.cut_off("ag-1", reason) == 0
