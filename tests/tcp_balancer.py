"""A layer-4 (TCP) load balancer for tests: what docs/replicas.md puts in front of the
replicas. Each accepted connection is forwarded to the current target; ``point_at``
changes the target for new connections (as a health-checking balancer does when a
replica dies). TLS passes through untouched: agents still authenticate to the replica.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpBalancer:
    """``start()``, then agents dial ``address``; ``stop()`` closes everything."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def point_at(self, target: str) -> None:
        self.target = target

    def start(self) -> TcpBalancer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            host, port = self.target.rsplit(":", 1)
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                client.close()  # the target is down: the agent retries
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):  # one side ended: end the whole connection
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
