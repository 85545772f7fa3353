"""The SSH gateway: engineers' stock OpenSSH clients in, session tunnels to agents out.

    server.py      listening socket, paramiko transports, the registry of live connections
    interface.py   paramiko ServerInterface: public-key auth, channel requests
    connection.py  one engineer connection: its tunnel, channels, window watchdog
    relay.py       one SSH channel <-> one tunnel channel, recorded
    recording.py   asciicast files, their store records, live watchers
    access.py      the thread-side facade over the collector's asyncio services
    bridge.py      blocking view of an agent tunnel for gateway threads
    tunnels.py     TunnelBroker: pairs a tunnel request with the agent's Tunnel RPC (event loop)
    transfers.py   file copies (scp, sftp, rsync) seen on a channel
    hostkey.py     the gateway's own host key

paramiko is thread-based; the collector is asyncio. Gateway threads reach the event
loop only through ``bridge`` and ``access`` (run_coroutine_threadsafe).
"""
