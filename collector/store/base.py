"""The store interface: records (frozen dataclasses) and the ``Store`` protocol.

Every backend (SQLite now, PostgreSQL later) implements ``Store`` and passes the one
contract suite in ``tests/collector/test_store_contract.py`` (tickets:
``test_store_tickets.py``). Times are int unix milliseconds; secrets (join tokens,
API tokens) only ever arrive here as sha256 hex.
Backends raise the store exceptions re-exported below (from ``collector.errors``) and
map their driver's errors to ``StoreError`` with ``raise ... from exc``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, get_args, overload

from collector.errors import (
    Conflict,
    InvalidRequest,
    MigrationError,
    NotFound,
    StoreError,
    TokenExpired,
    TokenUnknown,
    TokenUsed,
    UnknownAgent,
    UserExists,
)
from collector.history.model import HistorySeries
from collector.outbox import OutboxStore
from collector.runs.errors import UnknownRun
from collector.runs.model import (
    FINISHED_RUN_STATES,
    RUN_MODES,
    RUN_STATES,
    RunRecord,
    RunState,
)
from collector.sessions.model import NewSessionEvent, RemoteSession, SessionEvent, SessionState
from collector.store.inspection_base import InspectionStore
from collector.store.lease_base import LeaseStore
from collector.store.notice_base import NoticeStore
from collector.store.portal_base import PortalStore
from collector.store.routing_base import RoutingStore
from collector.tickets.model import Level, NewEvent, NewTicket, Ticket, TicketEvent, TicketState

__all__ = [
    "FINISHED_RUN_STATES",
    "ROLES",
    "RUN_MODES",
    "RUN_STATES",
    "AgentRecord",
    "ApproverRecord",
    "AuditEntry",
    "BatchOutcome",
    "Conflict",
    "GapRecord",
    "HelloRecord",
    "HistoryRollup",
    "IncomingBatch",
    "InvalidRequest",
    "LatestBatch",
    "MigrationError",
    "NotFound",
    "RecordingRecord",
    "RevocationRecord",
    "Role",
    "RunRecord",
    "RunState",
    "SampleRow",
    "SshKeyRecord",
    "Store",
    "StoreError",
    "StoredFailure",
    "StoredSample",
    "TokenExpired",
    "TokenUnknown",
    "TokenUsed",
    "UnknownAgent",
    "UnknownRun",
    "User",
    "UserExists",
]

Role = Literal["admin", "engineer", "customer"]
ROLES: tuple[Role, ...] = get_args(Role)


@dataclass(frozen=True)
class User:
    """A person with an API token; ``customer`` is set for customer users."""

    name: str
    role: Role
    customer: str | None
    created_ms: int
    disabled_ms: int | None = None  # set: the user's token is refused
    token_expires_ms: int | None = None  # set: the token is refused from then on
    token_created_ms: int | None = None  # when the current token was issued


@dataclass(frozen=True)
class AgentRecord:
    """An enrolled agent and its current client certificate."""

    agent_id: str
    customer: str
    hostname: str
    enrolled_ms: int
    cert_serial: str
    cert_not_after_ms: int
    revoked_ms: int | None = None
    agent_version: str = ""
    last_seen_ms: int | None = None
    session_approval: str = ""  # host policy from the hello: collector|local|either|disabled
    approval_root: str = ""  # "sha256:HEX" of the customer's approval root pinned on the host


class StoredSample(NamedTuple):
    """One metric value of a batch (a named tuple: built 150 times per batch, and a
    decoder can build many at once with ``tuple.__new__``)."""

    name: str
    labels: Mapping[str, str]
    value: float


_as_sample = functools.partial(tuple.__new__, StoredSample)  # no per-field checks


class SampleRow(Sequence[StoredSample]):
    """A batch's samples held compactly: their names, label sets and values as three
    sequences, and the decoder's ``layout`` when it knows one (an object shared by the
    batches of a source that send the same series in the same order, so the store can
    remember what it derives from the series once per layout). Names and label sets are
    then tuples shared by those batches too.

    Iterating builds each ``StoredSample`` when it is read. Ingest keeps no object per
    sample alive: with 10,000 hosts sending 150 samples every 15 s, samples held until
    each host's next batch filled the garbage collector's young generations, and its
    collections stalled every ack for up to a second."""

    __slots__ = ("labels", "layout", "names", "values")

    def __init__(
        self,
        names: Sequence[str],
        labels: Sequence[Mapping[str, str]],
        values: Sequence[float],
        layout: object | None = None,
    ) -> None:
        if not len(names) == len(labels) == len(values):
            raise ValueError("a sample row needs one name, label set and value per sample")
        self.names = names
        self.labels = labels
        self.values = values
        self.layout = layout

    @classmethod
    def of(cls, samples: Sequence[StoredSample]) -> SampleRow:
        """``samples`` as a row (itself if it is one)."""
        if isinstance(samples, SampleRow):
            return samples
        return cls(
            tuple(s.name for s in samples),
            tuple(s.labels for s in samples),
            tuple(s.value for s in samples),
        )

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> StoredSample: ...
    @overload
    def __getitem__(self, index: slice) -> list[StoredSample]: ...
    def __getitem__(self, index: int | slice) -> StoredSample | list[StoredSample]:
        if isinstance(index, slice):
            return list(self)[index]
        return StoredSample(self.names[index], self.labels[index], self.values[index])

    def __iter__(self) -> Iterator[StoredSample]:
        return map(_as_sample, zip(self.names, self.labels, self.values, strict=True))


@dataclass(frozen=True)
class StoredFailure:
    """A check that failed to produce samples in a batch."""

    check: str
    error: str


@dataclass(frozen=True)
class HelloRecord:
    """What an agent's hello tells the store (``Store.record_hellos``)."""

    agent_id: str
    hostname: str
    agent_version: str
    seen_ms: int
    session_approval: str = ""
    approval_root: str = ""


@dataclass(frozen=True)
class IncomingBatch:
    """One batch for ``Store.store_batches``. ``decode`` turns the wire form into
    samples and failures; it is called only when the sequence is new, so a duplicate
    costs no conversion."""

    agent_id: str
    sequence: int
    collected_ms: int
    received_ms: int
    decode: Callable[[], tuple[Sequence[StoredSample], Sequence[StoredFailure]]]


@dataclass(frozen=True)
class BatchOutcome:
    """What ``Store.store_batches`` did with one batch: stored (with the decoded
    samples, for the caller's in-memory views), a duplicate (stored False, no error),
    or refused (``error``: UnknownAgent, InvalidRequest, StoreError)."""

    stored: bool
    samples: Sequence[StoredSample] = ()
    error: Exception | None = None


@dataclass(frozen=True)
class LatestBatch:
    """The agent's newest (by collection time) batch: its values replace older ones."""

    sequence: int
    collected_ms: int
    samples: list[StoredSample]
    failures: list[StoredFailure]


@dataclass(frozen=True)
class GapRecord:
    """Batches the agent dropped (spool bound exceeded), reported under its own sequence."""

    sequence: int
    first_lost_sequence: int
    last_lost_sequence: int
    lost_batches: int
    start_ms: int
    end_ms: int
    reason: str
    reported_ms: int


@dataclass(frozen=True)
class HistoryRollup:
    """One step of the metric history's roll-up and retention (see ``roll_up_history``)."""

    next_series_id: int | None  # pass as after_series_id to continue; None: all done
    rolled_up: int  # 5-minute buckets folded into 1-hour buckets
    dropped: int  # 1-hour buckets past the retention
    series_dropped: int  # series left without buckets


@dataclass(frozen=True)
class AuditEntry:
    """One audit log entry; ``hash`` chains it to ``prev_hash`` (see ``collector.audit``)."""

    id: int
    at_ms: int
    actor: str
    action: str
    target: str
    details: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ApproverRecord:
    """A customer approver's certificate, signed by the customer's approval root.

    ``certificate`` is the signed document exactly as uploaded; the other fields are
    what it says (the collector verified it, hosts verify it again).
    """

    customer: str
    key_fingerprint: str  # "sha256:HEX" of the approver's public key
    name: str
    root_fingerprint: str
    issued_ms: int
    expires_ms: int
    certificate: bytes
    added_ms: int
    added_by: str  # "user:NAME"
    revoked_ms: int | None = None  # from the revocation, if one is stored


@dataclass(frozen=True)
class RevocationRecord:
    """A signed revocation of one approver key, exactly as uploaded."""

    customer: str
    key_fingerprint: str
    root_fingerprint: str
    revoked_ms: int
    revocation: bytes
    added_ms: int
    added_by: str


@dataclass(frozen=True)
class SshKeyRecord:
    """A user's SSH public key for the gateway."""

    fingerprint: str  # "SHA256:" + unpadded base64 of the key blob's digest
    user: str
    key_type: str  # e.g. "ssh-ed25519"
    key_base64: str  # the public key blob as in authorized_keys
    comment: str
    added_ms: int


@dataclass(frozen=True)
class RecordingRecord:
    """One recorded channel of a session: an asciicast v2 file under the data directory."""

    session_id: str
    part: int  # 1, 2, ... per session
    kind: str  # shell | exec
    command: str
    path: str  # relative to the data directory
    started_ms: int
    ended_ms: int | None = None
    size_bytes: int = 0
    sha256: str = ""  # set when finished
    input_recorded: bool = False


class Store(
    InspectionStore, PortalStore, LeaseStore, NoticeStore, OutboxStore, RoutingStore, Protocol
):
    """Durable collector state. Implementations are safe to call from several threads
    and several processes may open the same database."""

    # True: ``fold_history`` has a database connection of its own and may run on
    # another thread while the writer works (PostgreSQL); False: it shares the one
    # writer like every other call (SQLite). ``StoreThread.fold_history`` chooses.
    fold_beside_writer: bool

    # -- join tokens (stored only as sha256 hex of the token) -------------------------

    def create_join_token(
        self, token_hash: str, customer: str, expires_ms: int, created_by: str, now_ms: int
    ) -> None:
        """Record a new single-use enrolment token for ``customer``."""
        ...

    def consume_join_token(self, token_hash: str, now_ms: int) -> str:
        """Atomically mark the token used and return its customer.

        Raises TokenUnknown, TokenUsed (second use) or TokenExpired (now >= expiry).
        """
        ...

    # -- users (API tokens stored hashed) ---------------------------------------------

    def add_user(
        self,
        name: str,
        role: Role,
        customer: str | None,
        token_hash: str,
        now_ms: int,
        token_expires_ms: int | None = None,
    ) -> User:
        """Add a user. Raises UserExists, or InvalidRequest for a customer user
        without a customer."""
        ...

    def get_user(self, name: str) -> User | None:
        """The user called ``name``, if any."""
        ...

    def set_user_disabled(self, name: str, disabled_ms: int | None) -> User:
        """Disable (a time) or enable (None) a user. Raises UnknownUser."""
        ...

    def replace_user_token(
        self, name: str, token_hash: str, token_expires_ms: int | None, now_ms: int
    ) -> User:
        """Give the user a new token (the old one stops working). Raises UnknownUser."""
        ...

    def remove_user(self, name: str) -> User:
        """Delete the user and its SSH keys. Raises UnknownUser."""
        ...

    def user_by_token_hash(self, token_hash: str) -> User | None:
        """The user holding this API token, if any."""
        ...

    def list_users(self) -> list[User]:
        """All users, ordered by name."""
        ...

    # -- agents -----------------------------------------------------------------------

    def add_agent(self, agent: AgentRecord) -> None:
        """Record a newly enrolled agent. Raises Conflict if the id exists."""
        ...

    def get_agent(self, agent_id: str) -> AgentRecord | None:
        """The agent, revoked or not; None if unknown."""
        ...

    def get_agents(self, agent_ids: Sequence[str]) -> list[AgentRecord | None]:
        """``get_agent`` of each id, in order, in one read (agents connecting together)."""
        ...

    def list_agents(self, customer: str | None = None) -> list[AgentRecord]:
        """Agents (optionally of one customer), ordered by customer, hostname."""
        ...

    def revoke_agent(self, agent_id: str, now_ms: int) -> AgentRecord:
        """Mark the agent revoked (keeps an earlier revocation time). Raises UnknownAgent."""
        ...

    def update_agent_certificate(
        self, agent_id: str, cert_serial: str, cert_not_after_ms: int
    ) -> None:
        """Record a renewed client certificate. Raises UnknownAgent."""
        ...

    def record_hello(
        self,
        agent_id: str,
        hostname: str,
        agent_version: str,
        now_ms: int,
        session_approval: str = "",
        approval_root: str = "",
    ) -> None:
        """Update hostname, version, session policy, pinned approval root and last_seen
        from the agent's hello. Raises UnknownAgent."""
        ...

    def record_hellos(
        self, hellos: Sequence[HelloRecord], replica: str | None = None
    ) -> list[int | None]:
        """``record_hello`` for many agents in one write transaction (the latest of an
        agent's hellos wins), and, when ``replica`` is given, its presence there
        (``set_presence``). Returns per hello, in order, the agent's last stored
        sequence (what its Welcome says), or None for an unknown agent (nothing is
        written for it)."""
        ...

    # -- ingest: exactly-once by (agent_id, sequence); batches and gaps share it ------

    def store_batch(
        self,
        agent_id: str,
        sequence: int,
        collected_ms: int,
        received_ms: int,
        samples: Sequence[StoredSample],
        failures: Sequence[StoredFailure],
    ) -> bool:
        """Durably store one batch (committed, fsynced per the backend's durability
        setting) and make it the agent's latest values (replace the previous latest set,
        so vanished series disappear) — unless a newer batch is already latest
        (out-of-order arrival after an outage: keep the newest collected as latest).
        Also sets last_seen. Returns False (and changes nothing) if (agent_id, sequence)
        was already stored. Raises UnknownAgent, or InvalidRequest if sequence < 1."""
        ...

    def store_batches(self, batches: Sequence[IncomingBatch]) -> list[BatchOutcome]:
        """Group commit: store many batches (of any agents) in one transaction, with
        store_batch's rules for each, and return one outcome per batch, in order. A
        batch that fails gets its error in its outcome; the others are still stored.
        Nothing is durable before this returns."""
        ...

    def store_gap(self, agent_id: str, gap: GapRecord) -> bool:
        """Store a gap report under ``gap.sequence``; same de-dup rule as store_batch."""
        ...

    def last_sequence(self, agent_id: str) -> int:
        """Highest sequence stored for the agent (batch or gap); 0 if none."""
        ...

    def latest(self, agent_id: str) -> LatestBatch | None:
        """The agent's latest values, samples and failures in the order they came."""
        ...

    def gaps(self, agent_id: str) -> list[GapRecord]:
        """The agent's gap reports, ordered by sequence."""
        ...

    def stored_sequences(self, agent_id: str) -> list[int]:
        """Every stored batch sequence (not gaps), ascending (for verification/tests)."""
        ...

    def prune_batches(self, older_than_ms: int) -> int:
        """Drop batch bookkeeping rows received before ``older_than_ms`` — never gaps,
        the latest batch, or an agent's highest sequence. Returns the count dropped."""
        ...

    # -- metric history (docs/metric-history.md) ------------------------------------
    # store_batch also folds the batch's finite samples into 5-minute buckets, in the
    # same transaction, for at most MAX_SERIES_PER_HOST series per host.

    def metric_history(
        self,
        agent_id: str,
        names: Collection[str],
        since_ms: int,
        until_ms: int,
        labels: Mapping[str, str] | None = None,
        step_ms: int | None = None,
    ) -> list[HistorySeries]:
        """The host's series named in ``names`` (all if empty) whose labels include
        ``labels``, with buckets starting in ``[since_ms, until_ms)``, ordered by name
        then labels. ``step_ms`` (one of ``collector.history.policy.STEPS``) re-buckets;
        None returns stored buckets (5-minute, and 1-hour for old data). Raises
        InvalidRequest for an empty period, an unknown step or more than
        MAX_POINTS_PER_SERIES buckets per series."""
        ...

    def roll_up_history(
        self, now_ms: int, after_series_id: int = 0, max_series: int = 1000
    ) -> HistoryRollup:
        """For the next ``max_series`` series after ``after_series_id``: roll 5-minute
        buckets older than the fine retention into 1-hour buckets, drop 1-hour buckets
        older than the coarse retention, drop series left empty. Call again with
        ``next_series_id`` until it is None (short transactions on the writer). The
        first call of a pass (``after_series_id`` 0) folds the due staged rows first."""
        ...

    def fold_history(
        self, now_ms: int, from_agent: str = "", max_rows: int = 1000
    ) -> tuple[int, str | None]:
        """Fold up to ``max_rows`` staged history rows that are due (their 5-minute
        bucket ended, or they arrived long ago) of agents from ``from_agent`` on into
        the stored buckets, deleting them in the same transaction. Returns how many and
        the agent to call again from (None: nothing more is due). Reads include staged
        rows, so folding changes no answer."""
        ...

    def history_refusals(self) -> Mapping[str, int]:
        """Per agent id: samples left out of the history since this store was opened
        because the host is at its series bound. Cheap and safe to call from any thread
        (the /metrics scrape reads it)."""
        ...

    # -- audit log (append-only, hash chained) ----------------------------------------

    def append_audit(
        self, actor: str, action: str, target: str, details: Mapping[str, Any], at_ms: int
    ) -> AuditEntry:
        """Atomically read the previous hash and insert the chained entry (safe with
        several processes: the collector and admin CLI commands write the same
        database). ``details`` must be JSON-serialisable (InvalidRequest otherwise)."""
        ...

    def audit_entries(self, after_id: int = 0) -> list[AuditEntry]:
        """Entries with id > after_id, in id order."""
        ...

    def audit_hashes(self, after_id: int, limit: int) -> list[tuple[int, str, str]]:
        """``(id, prev_hash, hash)`` of at most ``limit`` entries with id > after_id, in
        id order (for checkpoints and their proofs: never the entries' contents)."""
        ...

    # -- tickets and their timelines --------------------------------------------------
    #
    # One fault, one ticket: at most one ticket that is not closed exists per
    # (customer, dedup_key), enforced by the database (a partial unique index), so two
    # writers racing to open the same fault cannot both succeed. Tickets without a
    # dedup_key (opened by people) never collide.

    def create_ticket(self, new: NewTicket, opened: NewEvent) -> Ticket:
        """Insert a ticket (state "open", version 1, created/updated = opened.at_ms)
        and its first event atomically; return it with its new id.

        Raises Conflict if a ticket that is not closed already has this customer and
        dedup_key (look it up with find_ticket_by_dedup and update it instead), or
        InvalidRequest for an unknown level/source/event kind, an empty customer or
        title, non-string labels or details that are not plain JSON.
        """
        ...

    def create_tickets(self, items: Sequence[tuple[NewTicket, NewEvent]]) -> list[Ticket]:
        """``create_ticket`` for every item, in one transaction (an alert storm costs
        one commit): all are stored or none. Raises what ``create_ticket`` raises for
        the first item that fails (two items with the same customer and dedup_key:
        Conflict); then nothing was stored."""
        ...

    def get_ticket(self, ticket_id: int) -> Ticket | None:
        """The ticket, in any state; None if unknown."""
        ...

    def find_ticket_by_dedup(self, customer: str, dedup_key: str) -> Ticket | None:
        """The most recently created ticket (any state) with this de-duplication key
        for this customer; None if there is none."""
        ...

    def find_tickets_by_dedup(
        self, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], Ticket]:
        """``find_ticket_by_dedup`` for many (customer, dedup_key) pairs in one read:
        the pairs that have a ticket, each with its most recently created one."""
        ...

    def list_tickets(
        self,
        customer: str | None = None,
        states: Collection[TicketState] | None = None,
        level: Level | None = None,
        limit: int = 500,
    ) -> list[Ticket]:
        """Tickets matching every filter given, newest (most recently created) first,
        at most ``limit``. ``states`` empty matches nothing. Raises InvalidRequest for
        an unknown state or level, or limit < 1."""
        ...

    def update_ticket(self, ticket: Ticket, events: Sequence[NewEvent]) -> Ticket:
        """Store ``ticket`` (all mutable fields) if its ``version`` equals the stored
        one, bump version and set updated_ms to the latest of its stored value and the
        events' at_ms, append ``events`` — atomically; return the stored ticket.

        Mutable: everything but id, customer, source, created_ms (InvalidRequest if
        they differ from the stored ticket), updated_ms and version (store-managed).
        Raises TicketNotFound (a NotFound) for an unknown id; Conflict("ticket N
        changed meanwhile; retry") on a version mismatch, or if the change would make
        a second ticket with the same dedup_key active (re-opening an old one while a
        newer one is open). Nothing is written when it raises.
        """
        ...

    def add_ticket_events(self, ticket_id: int, events: Sequence[NewEvent]) -> list[TicketEvent]:
        """Append timeline events (atomically, all or none) without changing the
        ticket itself (its version and updated_ms stay as they are). Raises
        TicketNotFound for an unknown ticket, InvalidRequest for an unknown kind or
        details that are not plain JSON."""
        ...

    def ticket_events(self, ticket_id: int) -> list[TicketEvent]:
        """The ticket's timeline in id (insertion) order; empty for an unknown ticket."""
        ...

    def ticket_events_many(self, ticket_ids: Collection[int]) -> dict[int, list[TicketEvent]]:
        """The timelines of many tickets in one query (SLA ticks, lists): ticket id ->
        its events in id order; every asked id is a key (empty list if unknown)."""
        ...

    # -- playbook runs ----------------------------------------------------------------

    def create_run(self, run: RunRecord) -> RunRecord:
        """Insert a run and return it as stored: ``updated_ms`` 0 becomes
        ``requested_ms``; a run created already finished (e.g. "refused") without
        ``finished_ms`` gets ``finished_ms = updated_ms``.

        Raises Conflict if the run_id exists, or InvalidRequest for an empty run_id,
        agent_id, customer, playbook or requested_by, an unknown state or mode,
        params that are not strings to strings, a result that is not plain JSON,
        negative output_bytes, or finished_ms on a run that is not finished.
        """
        ...

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run, in any state; None if unknown."""
        ...

    def list_runs(
        self,
        customer: str | None = None,
        agent_id: str | None = None,
        limit: int = 100,
        *,
        ticket_id: int | None = None,
    ) -> list[RunRecord]:
        """Runs matching every filter given (``ticket_id``: the runs attached to that
        ticket), newest first (requested_ms descending, then run_id ascending), at most
        ``limit``. Raises InvalidRequest if limit < 1."""
        ...

    def update_run(
        self,
        run_id: str,
        *,
        state: RunState | None = None,
        message: str | None = None,
        at_ms: int,
        finished_ms: int | None = None,
        result: Mapping[str, Any] | None = None,
        output_bytes: int | None = None,
        output_sha256: str | None = None,
        approved_by: str | None = None,
        signed_approval: bytes | None = None,
    ) -> RunRecord:
        """Set only the fields given (not None) and ``updated_ms = at_ms``, atomically;
        return the stored run. Moving to a finished state without ``finished_ms``
        sets ``finished_ms = at_ms``.

        A finished run never changes again: any update to it raises Conflict (a late
        or repeated report; nothing is written). Raises UnknownRun (a NotFound) for an
        unknown id, InvalidRequest for an unknown state, finished_ms on a run that
        stays unfinished, a result that is not plain JSON or negative output_bytes.
        """
        ...

    # -- remote sessions and their timelines -----------------------------------------

    def create_session(self, session: RemoteSession, requested: NewSessionEvent) -> RemoteSession:
        """Insert a session (as given, version 1) and its first event atomically;
        return it as stored.

        Raises Conflict if the session_id exists, or InvalidRequest for a session_id
        that is not "ses-" + 12 hex, an empty agent_id, customer, engineer or reason,
        an unknown state or event kind, or event details that are not plain JSON.
        """
        ...

    def get_session(self, session_id: str) -> RemoteSession | None:
        """The session, in any state; None if unknown."""
        ...

    def list_sessions(
        self,
        customer: str | None = None,
        engineer: str | None = None,
        states: Collection[SessionState] | None = None,
        limit: int = 100,
        agent_id: str | None = None,
    ) -> list[RemoteSession]:
        """Sessions matching every filter given (customer, engineer, states, the host's
        ``agent_id``), newest first (requested_ms descending, then session_id), at most
        ``limit``. ``states`` empty matches nothing. Raises InvalidRequest for an
        unknown state or limit < 1."""
        ...

    def pending_sessions_of(self, agent_ids: Sequence[str]) -> list[list[RemoteSession]]:
        """The pending session requests of each host, in order of ``agent_ids``, in one
        read (agents connecting together); each host's newest first."""
        ...

    def update_session(
        self, session: RemoteSession, events: Sequence[NewSessionEvent]
    ) -> RemoteSession:
        """Store ``session`` (its mutable fields) if its ``version`` equals the stored
        one, bump version and append ``events`` — atomically; return it as stored.

        Fixed at request (InvalidRequest if they differ from the stored session):
        agent_id, customer, hostname, engineer, reason, requested_duration_ms,
        requested_ms, pending_expires_ms. Raises SessionNotFound (a NotFound) for an
        unknown id, Conflict("session ID changed meanwhile; ...") on a version
        mismatch. Nothing is written when it raises.
        """
        ...

    def session_events(self, session_id: str) -> list[SessionEvent]:
        """The session's timeline in id (insertion) order; empty for an unknown one."""
        ...

    # -- customer approvers: certificates and revocations (signed documents) ----------

    def add_approver(self, approver: ApproverRecord) -> ApproverRecord:
        """Store a certificate, replacing an earlier one for the same (customer,
        key_fingerprint); return it as stored (with ``revoked_ms`` if revoked).

        Raises Conflict if that key is revoked (a revoked key stays revoked), or
        InvalidRequest for an empty customer, name or fingerprint or empty certificate.
        """
        ...

    def list_approvers(self, customer: str | None = None) -> list[ApproverRecord]:
        """Certificates (optionally of one customer), by customer, name, key."""
        ...

    def add_revocation(self, revocation: RevocationRecord) -> RevocationRecord:
        """Store a revocation; the first one stored for a (customer, key_fingerprint)
        stays and is returned. Raises InvalidRequest for empty fields."""
        ...

    def list_revocations(self, customer: str | None = None) -> list[RevocationRecord]:
        """Revocations (optionally of one customer), by customer, then time added."""
        ...

    def revocations_of(self, customers: Sequence[str]) -> list[list[RevocationRecord]]:
        """``list_revocations`` of each customer, in order, in one read."""
        ...

    # -- SSH keys and session recordings (the gateway) ---------------------------------

    def add_ssh_key(self, key: SshKeyRecord) -> SshKeyRecord:
        """Register a key. Raises Conflict if the fingerprint is registered (to anyone)."""
        ...

    def ssh_key(self, fingerprint: str) -> SshKeyRecord | None:
        """The key with this fingerprint, if registered."""
        ...

    def list_ssh_keys(self, user: str | None = None) -> list[SshKeyRecord]:
        """Keys of ``user`` (all users when None), by user then time added."""
        ...

    def remove_ssh_key(self, fingerprint: str, user: str | None = None) -> SshKeyRecord:
        """Delete a key (only ``user``'s when given). Raises NotFound."""
        ...

    def add_recording(self, recording: RecordingRecord) -> RecordingRecord:
        """Insert a recording as the session's next part (``recording.part`` is ignored);
        return it as stored. Raises NotFound for an unknown session."""
        ...

    def finish_recording(
        self, session_id: str, part: int, ended_ms: int, size_bytes: int, sha256: str
    ) -> RecordingRecord:
        """Record the end, size and digest of a recording. Raises NotFound."""
        ...

    def list_recordings(self, session_id: str) -> list[RecordingRecord]:
        """The session's recordings by part."""
        ...

    def close(self) -> None:
        """Release the connection; idempotent. Later calls raise StoreError."""
        ...
