"""The agent's gRPC client: gRPC over HTTP/2 (``h2``) and TLS on asyncio.

``Channel`` (one connection), ``StreamCall`` (one call), ``RpcError`` with a
``StatusCode`` (every failure), ``client_context`` (the TLS settings), ``Proxy`` and
``proxy_for`` (HTTP CONNECT proxies, from the config or the environment).
"""

from agent.rpc.call import StreamCall
from agent.rpc.channel import Channel, Keepalive
from agent.rpc.proxy import Proxy, ProxyError, parse_proxy, proxy_for
from agent.rpc.status import RpcError, StatusCode
from agent.rpc.tls import client_context

__all__ = [
    "Channel",
    "Keepalive",
    "Proxy",
    "ProxyError",
    "RpcError",
    "StatusCode",
    "StreamCall",
    "client_context",
    "parse_proxy",
    "proxy_for",
]
