from proto import agent_pb2 as _agent_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("user", "role", "customer")
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    user: str
    role: str
    customer: str
    def __init__(self, user: _Optional[str] = ..., role: _Optional[str] = ..., customer: _Optional[str] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: str
    def __init__(self, customer: _Optional[str] = ...) -> None: ...

class HealthSummary(_message.Message):
    __slots__ = ("has_data", "cpu_usage_ratio", "memory_used_ratio", "worst_filesystem", "worst_filesystem_used_ratio")
    HAS_DATA_FIELD_NUMBER: _ClassVar[int]
    CPU_USAGE_RATIO_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_RATIO_FIELD_NUMBER: _ClassVar[int]
    WORST_FILESYSTEM_FIELD_NUMBER: _ClassVar[int]
    WORST_FILESYSTEM_USED_RATIO_FIELD_NUMBER: _ClassVar[int]
    has_data: bool
    cpu_usage_ratio: float
    memory_used_ratio: float
    worst_filesystem: str
    worst_filesystem_used_ratio: float
    def __init__(self, has_data: _Optional[bool] = ..., cpu_usage_ratio: _Optional[float] = ..., memory_used_ratio: _Optional[float] = ..., worst_filesystem: _Optional[str] = ..., worst_filesystem_used_ratio: _Optional[float] = ...) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("agent_id", "customer", "hostname", "connected", "last_seen_unix_ms", "agent_version", "revoked", "health", "enrolled_unix_ms")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    customer: str
    hostname: str
    connected: bool
    last_seen_unix_ms: int
    agent_version: str
    revoked: bool
    health: HealthSummary
    enrolled_unix_ms: int
    def __init__(self, agent_id: _Optional[str] = ..., customer: _Optional[str] = ..., hostname: _Optional[str] = ..., connected: _Optional[bool] = ..., last_seen_unix_ms: _Optional[int] = ..., agent_version: _Optional[str] = ..., revoked: _Optional[bool] = ..., health: _Optional[_Union[HealthSummary, _Mapping]] = ..., enrolled_unix_ms: _Optional[int] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentInfo]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentInfo, _Mapping]]] = ...) -> None: ...

class GetHostRequest(_message.Message):
    __slots__ = ("host",)
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: str
    def __init__(self, host: _Optional[str] = ...) -> None: ...

class StoredGap(_message.Message):
    __slots__ = ("first_lost_sequence", "last_lost_sequence", "lost_batches", "start_unix_ms", "end_unix_ms", "reason", "reported_unix_ms")
    FIRST_LOST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_LOST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LOST_BATCHES_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    END_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPORTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    first_lost_sequence: int
    last_lost_sequence: int
    lost_batches: int
    start_unix_ms: int
    end_unix_ms: int
    reason: str
    reported_unix_ms: int
    def __init__(self, first_lost_sequence: _Optional[int] = ..., last_lost_sequence: _Optional[int] = ..., lost_batches: _Optional[int] = ..., start_unix_ms: _Optional[int] = ..., end_unix_ms: _Optional[int] = ..., reason: _Optional[str] = ..., reported_unix_ms: _Optional[int] = ...) -> None: ...

class HostDetail(_message.Message):
    __slots__ = ("agent", "collected_unix_ms", "samples", "failures", "gaps", "batches_stored")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_STORED_FIELD_NUMBER: _ClassVar[int]
    agent: AgentInfo
    collected_unix_ms: int
    samples: _containers.RepeatedCompositeFieldContainer[_agent_pb2.Sample]
    failures: _containers.RepeatedCompositeFieldContainer[_agent_pb2.CheckFailure]
    gaps: _containers.RepeatedCompositeFieldContainer[StoredGap]
    batches_stored: int
    def __init__(self, agent: _Optional[_Union[AgentInfo, _Mapping]] = ..., collected_unix_ms: _Optional[int] = ..., samples: _Optional[_Iterable[_Union[_agent_pb2.Sample, _Mapping]]] = ..., failures: _Optional[_Iterable[_Union[_agent_pb2.CheckFailure, _Mapping]]] = ..., gaps: _Optional[_Iterable[_Union[StoredGap, _Mapping]]] = ..., batches_stored: _Optional[int] = ...) -> None: ...
