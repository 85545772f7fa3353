"""Remote sessions, the agent's side: an engineer's login on this host through a tunnel.

Modules, one concern each:

* ``asciicast``   asciicast v2 writer (shared with the collector's gateway);
* ``requests``    pending requests and approvals given on the host;
* ``window``      whether a login is let in, and until when;
* ``endpoint``    the control stream's session messages, tunnels, approval reports;
* ``tunnel``      one tunnel: frames to backend channels and back, the window timer;
* ``tunnel_io``   the Tunnel RPC (and the protocol tests drive instead);
* ``backend``     what a backend offers; ``sshd_backend`` and ``pty_backend``;
* ``recording``   the customer's own copy; ``journal`` the trace in sessions.log;
* ``fifo``        the bounded queue behind backpressure; ``setup`` builds it all;
* ``errors``      the exception tree.
"""
