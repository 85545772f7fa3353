from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollRequest(_message.Message):
    __slots__ = ("token", "csr_pem", "hostname")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_pem: bytes
    hostname: str
    def __init__(self, token: _Optional[str] = ..., csr_pem: _Optional[bytes] = ..., hostname: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("agent_id", "customer", "certificate_pem", "ca_pem", "agent_endpoint")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    AGENT_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    customer: str
    certificate_pem: bytes
    ca_pem: bytes
    agent_endpoint: str
    def __init__(self, agent_id: _Optional[str] = ..., customer: _Optional[str] = ..., certificate_pem: _Optional[bytes] = ..., ca_pem: _Optional[bytes] = ..., agent_endpoint: _Optional[str] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ...) -> None: ...

class RenewResponse(_message.Message):
    __slots__ = ("certificate_pem",)
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    def __init__(self, certificate_pem: _Optional[bytes] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "batch", "gap")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: MetricBatch
    gap: Gap
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[MetricBatch, _Mapping]] = ..., gap: _Optional[_Union[Gap, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("agent_version", "hostname", "capabilities", "platform", "interval_seconds")
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    agent_version: str
    hostname: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    platform: str
    interval_seconds: float
    def __init__(self, agent_version: _Optional[str] = ..., hostname: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., platform: _Optional[str] = ..., interval_seconds: _Optional[float] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("name", "labels", "value")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    value: float
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., value: _Optional[float] = ...) -> None: ...

class CheckFailure(_message.Message):
    __slots__ = ("check", "error")
    CHECK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    check: str
    error: str
    def __init__(self, check: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class MetricBatch(_message.Message):
    __slots__ = ("sequence", "collected_unix_ms", "samples", "failures")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    collected_unix_ms: int
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    failures: _containers.RepeatedCompositeFieldContainer[CheckFailure]
    def __init__(self, sequence: _Optional[int] = ..., collected_unix_ms: _Optional[int] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., failures: _Optional[_Iterable[_Union[CheckFailure, _Mapping]]] = ...) -> None: ...

class Gap(_message.Message):
    __slots__ = ("sequence", "first_lost_sequence", "last_lost_sequence", "lost_batches", "start_unix_ms", "end_unix_ms", "reason")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FIRST_LOST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_LOST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LOST_BATCHES_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    END_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    first_lost_sequence: int
    last_lost_sequence: int
    lost_batches: int
    start_unix_ms: int
    end_unix_ms: int
    reason: str
    def __init__(self, sequence: _Optional[int] = ..., first_lost_sequence: _Optional[int] = ..., last_lost_sequence: _Optional[int] = ..., lost_batches: _Optional[int] = ..., start_unix_ms: _Optional[int] = ..., end_unix_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CollectorMessage(_message.Message):
    __slots__ = ("welcome", "ack")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    ack: Ack
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("agent_id", "customer", "last_sequence")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    customer: str
    last_sequence: int
    def __init__(self, agent_id: _Optional[str] = ..., customer: _Optional[str] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("sequence", "duplicate")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    duplicate: bool
    def __init__(self, sequence: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...
