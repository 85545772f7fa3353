"""``aftercare-agent run``: sample every interval, spool durably, stream to the collector.

Sampling never waits for the network: each cycle is appended to the spool, and
the collector link drains the spool whenever it is connected. Messages from the
collector go to the playbook run handler, ``session_*`` messages to the
remote-session endpoint, the customer root's revocations to the consent verifier
(``agent.consent``), which both consult, and audit checkpoints to the audit witness.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent.audit_witness import AuditWitness
from agent.batch_encoding import BatchEncoder
from agent.config import AgentConfig
from agent.consent.memory import ConsentMemory
from agent.consent.root import pinned_root
from agent.consent.verify import ConsentVerifier
from agent.errors import AgentError
from agent.identity import Identity, load_identity
from agent.memory import release_free_memory
from agent.playbook.policy import Policy, load_policy
from agent.sampler import Cycle, Sampler
from agent.session.setup import build_session_endpoint, session_approval_mode
from agent.spool import Spool, SpoolEntry
from agent.stream import CollectorLink, SpoolWorker
from agent.trusted_file import read_vendor_keys
from common.audit_checkpoint import CAPABILITY as AUDIT_WITNESS
from proto import agent_pb2

if TYPE_CHECKING:
    from agent.playbook_runs import RunHandler
    from agent.session.endpoint import SessionEndpoint
    from agent.session.setup import EndpointOnFirstMessage
    from agent.session.tunnel_io import TunnelIO

log = logging.getLogger(__name__)

SPOOL_FILE = "spool.db"
CAPABILITIES = ("metrics", "gaps", AUDIT_WITNESS)


def cycle_to_batch(cycle: Cycle) -> agent_pb2.MetricBatch:
    """The wire form of one collection cycle (sequence assigned later by the spool)."""
    batch = agent_pb2.MetricBatch(collected_unix_ms=cycle.collected_unix_ms)
    add_sample = batch.samples.add
    for sample in cycle.samples:
        add_sample(name=sample.name, labels=sample.labels, value=sample.value)
    for failure in cycle.failures:
        batch.failures.add(check=failure.check, error=failure.error)
    return batch


def hello_for(
    config: AgentConfig, policy: Policy | None = None, approval_root: str = ""
) -> agent_pb2.Hello:
    """The hello: identity, capabilities ("sessions" when served), how approvals count here."""
    policy = policy or Policy()
    served = config.sessions.backend != "none"
    return agent_pb2.Hello(
        agent_version=__version__,
        hostname=config.hostname,
        capabilities=(*CAPABILITIES, "sessions") if served else CAPABILITIES,
        platform=platform_name(),
        interval_seconds=config.interval,
        session_approval=session_approval_mode(config.sessions, policy),
        approval_root=approval_root,
    )


def platform_name() -> str:
    """This host's system, release, machine and C library, as ``platform.platform()``
    says them on Linux (``Linux-6.1.0-13-amd64-x86_64-with-glibc2.36``), without that
    module (resident memory) or its ``uname -p`` process."""
    uname = os.uname()
    parts = [uname.sysname, uname.release, uname.machine]
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"; unset elsewhere
    except (ValueError, OSError):
        libc = ""
    if libc:
        parts += ["with", libc.replace(" ", "")]
    return "-".join(part.translate(_PLATFORM_UNSAFE) for part in parts if part)


_PLATFORM_UNSAFE = str.maketrans(dict.fromkeys(' /\\:;"()', "_"))

Handler = Callable[[agent_pb2.CollectorMessage], None]


def dispatch(
    runs: Handler, sessions: Handler, consent: ConsentVerifier, audit: Handler | None = None
) -> Handler:
    """The link's ``on_message``: ``session_*`` messages to ``sessions``, revocations to
    ``consent``, ``audit_checkpoint`` to ``audit`` (dropped without one), the rest to ``runs``."""

    def on_message(message: agent_pb2.CollectorMessage) -> None:
        kind = message.WhichOneof("kind") or ""
        if kind == "approver_revocations":
            _revoke(consent, message.approver_revocations)
        elif kind == "audit_checkpoint":
            if audit is not None:
                audit(message)
        else:
            (sessions if kind.startswith("session_") else runs)(message)

    return on_message


async def run_agent(state_dir: Path, config: AgentConfig, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set. Raises NotEnrolledError if ``state_dir`` has no identity."""
    identity = load_identity(state_dir)
    log.info(
        "agent %s (%s) starting, interval %.0fs",
        identity.agent_id,
        identity.customer,
        config.interval,
    )
    spool = SpoolWorker(state_dir / SPOOL_FILE, config.spool.max_size, config.spool.max_age)
    sampler = Sampler(check_timeout=config.check_timeout)
    try:
        link, runs, sessions = _wire(state_dir, identity, config, spool)
    except BaseException:  # a bad policy or [sessions]: release what was opened
        sampler.close()
        spool.close()
        raise
    sessions.start()
    link_task = asyncio.create_task(link.run_forever())
    try:
        await _sample_until(stop, sampler, spool, link, config.interval)
    finally:
        await sessions.close()
        await runs.close()
        link_task.cancel()
        await asyncio.gather(link_task, return_exceptions=True)
        sampler.close()
        spool.close()


def _wire(
    state_dir: Path, identity: Identity, config: AgentConfig, spool: SpoolWorker
) -> tuple[CollectorLink, RunsOnFirstMessage, SessionEndpoint | EndpointOnFirstMessage]:
    """The link and what handles the collector's messages. Raises ConfigError."""
    policy = load_policy(Path(config.playbooks.policy))
    keys = read_vendor_keys(config.playbooks.trusted_keys)
    root = pinned_root(state_dir, config.approvals)
    consent = ConsentVerifier(root, identity.customer, identity.agent_id, ConsentMemory(state_dir))
    hello = hello_for(config, policy, root)
    link = CollectorLink(state_dir, spool, config.stream, hello)
    witness = AuditWitness(state_dir, link.send_live, hello)  # keeps hello's audit fields
    runs = RunsOnFirstMessage(lambda: _run_handler(state_dir, config, link, consent, policy, keys))
    sessions = build_session_endpoint(
        state_dir,
        config.sessions,
        policy,
        link.send_live,
        lambda: _tunnel_io(link),
        consent,
    )
    link.on_message = dispatch(runs.on_message, sessions.on_message, consent, witness.on_message)
    return link, runs, sessions


class RunsOnFirstMessage:
    """The playbook run handler, built on the first run message (``on_message`` and
    ``close`` as ``RunHandler``'s): an agent that runs no playbook never loads its
    modules (issue 17). The policy and the vendor keys were read at start, so a bad
    file still stops the agent there; expired approvals are pruned when it is built."""

    def __init__(self, build: Callable[[], RunHandler]) -> None:
        self._build = build
        self._handler: RunHandler | None = None

    @property
    def built(self) -> bool:
        """Whether a run message has come (and the handler was built)."""
        return self._handler is not None

    def on_message(self, message: agent_pb2.CollectorMessage) -> None:
        """Build the handler (first time) and hand it ``message``; call on the loop.

        If it cannot be built (its state directory unreadable), the message is logged
        and dropped, and the next one tries again: the control stream goes on.
        """
        if self._handler is None:
            try:
                self._handler = self._build()
            except AgentError as exc:
                log.error("cannot handle %s: %s", message.WhichOneof("kind"), exc)
                return
        self._handler.on_message(message)

    async def close(self) -> None:
        if self._handler is not None:
            await self._handler.close()


def _run_handler(
    state_dir: Path,
    config: AgentConfig,
    link: CollectorLink,
    consent: ConsentVerifier,
    policy: Policy,
    keys: list[bytes],
) -> RunHandler:
    from agent.playbook_runs import build_run_handler

    return build_run_handler(state_dir, config.playbooks, link.send_live, consent, policy, keys)


def _tunnel_io(link: CollectorLink) -> TunnelIO:
    """A new Tunnel RPC for a session (its module loads with the first session)."""
    from agent.session.tunnel_io import GrpcTunnelIO

    return GrpcTunnelIO(link.open_tunnel())


def _revoke(consent: ConsentVerifier, message: agent_pb2.ApproverRevocations) -> None:
    try:
        added = consent.add_revocations(bytes(doc) for doc in message.revocations)
    except AgentError as exc:
        log.error("cannot record approver revocations: %s", exc)
        return
    if added:
        log.warning("%d approver key(s) revoked by the customer's approval root", added)


async def _sample_until(
    stop: asyncio.Event, sampler: Sampler, spool: SpoolWorker, link: CollectorLink, interval: float
) -> None:
    next_at = time.monotonic()
    first = True
    encoder = BatchEncoder()
    stopped = asyncio.ensure_future(stop.wait())  # one waiter for the whole run, not per cycle
    try:
        while not stop.is_set():
            entry = await spool.call(_collect_and_spool, sampler, encoder, spool.spool)
            if entry is not None:
                link.offer(entry)
            else:
                link.notify()  # not stored, but a gap entry may have been
            if first:  # start-up garbage (imports, config, connecting) is gone by now
                release_free_memory()
                first = False
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (suspended host, slow checks): skip, don't burst
                next_at = time.monotonic()
                delay = 0
            await asyncio.wait((stopped,), timeout=delay)
    finally:
        stopped.cancel()


def _collect_and_spool(sampler: Sampler, encoder: BatchEncoder, spool: Spool) -> SpoolEntry | None:
    """One cycle on the spool's thread: sample, encode, append durably (one hand-off).

    The spool's thread, not one of its own: a thread fewer in the agent (its stack and
    malloc arena), and the link reads the spool rarely enough to wait for a cycle.
    """
    cycle = sampler.collect()
    try:
        sequence, entry = spool.append_encoded(cycle.collected_unix_ms, encoder.encode(cycle))
    except UnicodeEncodeError:  # text protobuf refuses: let it say so, as it always did
        sequence, entry = spool.append_entry(cycle_to_batch(cycle))
    log.debug("batch %d spooled (%d samples)", sequence, len(cycle.samples))
    return entry
