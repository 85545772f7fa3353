"""The customer's consent on the host: the pinned approval root, signed approvals, memory.

``root``    which approval root this host pins (agent config or enrolment);
``memory``  what the host remembers: used nonces and the root's revocations;
``verify``  whether a signed approval counts for exactly one session or run here.
"""
