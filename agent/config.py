"""The agent's configuration: a TOML file read once at start into a frozen dataclass.

``load_config`` reads the file (docs/agent-config.md documents every key), rejects
unknown keys and wrong types, fills defaults and validates ranges and cross-field
rules. Every error is a ConfigError naming the file and the dotted key. This is the
only agent module that reads configuration files (the standard proxy environment
variables are read where connections are made: ``agent.rpc.proxy.proxy_for``).
"""

from __future__ import annotations

import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.rpc.proxy import parse_proxy
from agent.trusted_file import ownership_problem
from common.durations import parse_duration, parse_size

__all__ = [
    "LOG_LEVELS",
    "SESSION_BACKENDS",
    "AgentConfig",
    "LogConfig",
    "PlaybooksConfig",
    "SessionsConfig",
    "SpoolConfig",
    "StreamConfig",
    "load_config",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
SESSION_BACKENDS = ("none", "sshd", "pty")
_MIB = 1024 * 1024
_DEFAULT_INTERVAL = 15.0
_DEFAULT_CHECK_TIMEOUT = 5.0
_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")


def _require(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise ConfigError(problem, key=key)


@dataclass(frozen=True)
class SpoolConfig:
    """``[spool]``: bounds of the on-disk store of batches not yet acknowledged."""

    max_size: int = 64 * _MIB  # bytes of spooled messages
    max_age: float = 7 * 86400.0  # seconds a batch may wait before it is dropped

    def __post_init__(self) -> None:
        _require(self.max_size >= 16 * 1024, "spool.max_size", "must be at least 16KiB")
        _require(self.max_age >= 60, "spool.max_age", "must be at least 1m")


@dataclass(frozen=True)
class StreamConfig:
    """``[stream]``: the connection to the collector."""

    max_in_flight: int = 64  # messages sent but not yet acknowledged
    initial_backoff: float = 1.0  # seconds before the first reconnect attempt
    max_backoff: float = 60.0  # ceiling of the exponential reconnect backoff
    renew_at_fraction: float = 0.67  # renew the certificate after this share of its life
    proxy: str = ""  # http://[user:password@]host:port; "": the environment decides

    def __post_init__(self) -> None:
        if self.proxy:
            try:
                parse_proxy(self.proxy)
            except ValueError as exc:
                raise ConfigError(str(exc), key="stream.proxy") from None
        _require(
            1 <= self.max_in_flight <= 10_000,
            "stream.max_in_flight",
            f"must be between 1 and 10000, got {self.max_in_flight}",
        )
        _require(self.initial_backoff >= 0.01, "stream.initial_backoff", "must be at least 10ms")
        _require(
            self.max_backoff >= self.initial_backoff,
            "stream.max_backoff",
            "must not be shorter than stream.initial_backoff",
        )
        _require(
            0.1 <= self.renew_at_fraction <= 0.95,
            "stream.renew_at_fraction",
            f"must be between 0.1 and 0.95, got {self.renew_at_fraction}",
        )


@dataclass(frozen=True)
class LogConfig:
    """``[log]``: what the agent writes to its log."""

    level: str = "info"

    def __post_init__(self) -> None:
        _require(
            self.level in LOG_LEVELS,
            "log.level",
            f"must be one of {', '.join(LOG_LEVELS)}, got {self.level!r}",
        )


@dataclass(frozen=True)
class PlaybooksConfig:
    """``[playbooks]``: which vendor keys to trust and where the customer's policy is."""

    trusted_keys: tuple[str, ...] = ()  # vendor Ed25519 public keys (PEM files); none: no runs
    policy: str = "/etc/aftercare/policy.toml"  # the customer's policy file
    max_concurrent_runs: int = 2
    workdir: str = "/"  # working directory of exec steps

    def __post_init__(self) -> None:
        _require(
            1 <= self.max_concurrent_runs <= 16,
            "playbooks.max_concurrent_runs",
            f"must be between 1 and 16, got {self.max_concurrent_runs}",
        )
        _require(self.workdir.startswith("/"), "playbooks.workdir", "must be an absolute path")


@dataclass(frozen=True)
class ApprovalsConfig:
    """``[approvals]``: the customer's approval root pinned on this host (docs/approvals.md)."""

    root: str = ""  # "sha256:HEX" of the root public key; "" falls back to the enrolment's pin

    def __post_init__(self) -> None:
        _require(
            not self.root or bool(_FINGERPRINT.fullmatch(self.root)),
            "approvals.root",
            f"must be sha256: and 64 lower-case hex digits (as `aftercare approvers init` "
            f"prints), got {self.root!r}",
        )


@dataclass(frozen=True)
class SessionsConfig:
    """``[sessions]``: how an engineer's remote session logs in on this host.

    ``backend`` "none" serves no sessions; "sshd" logs in through the host's own
    sshd as ``user`` with ``key_file``; "pty" starts a login shell on a PTY. Empty
    strings mean "the default" (documented per key in docs/agent-config.md).
    """

    backend: str = "none"
    sshd_address: str = "127.0.0.1:22"  # HOST:PORT of this host's sshd
    user: str = ""  # the support account; pty: empty = the agent's own user
    key_file: str = ""  # sshd: private key authorised for ``user``
    host_key_files: tuple[str, ...] = ()  # sshd's public host keys; empty: /etc/ssh ones
    shell: str = ""  # pty: empty = the user's login shell
    sftp_server: str = ""  # pty: empty = /usr/lib/openssh/sftp-server if installed
    record_input: bool = False  # the customer's copy also records what is typed
    recordings_dir: str = ""  # empty: <state dir>/recordings

    def __post_init__(self) -> None:
        _require(
            self.backend in SESSION_BACKENDS,
            "sessions.backend",
            f"must be one of {', '.join(SESSION_BACKENDS)}, got {self.backend!r}",
        )
        split_address(self.sshd_address, "sessions.sshd_address")
        _require(
            self.user == "" or _USER_NAME.fullmatch(self.user) is not None,
            "sessions.user",
            f"{self.user!r} is not a user name",
        )
        if self.backend == "sshd":
            _require(bool(self.user), "sessions.user", 'is required with backend = "sshd"')
            _require(bool(self.key_file), "sessions.key_file", 'is required with backend = "sshd"')
        for key, value in (
            ("key_file", self.key_file),
            ("shell", self.shell),
            ("sftp_server", self.sftp_server),
            ("recordings_dir", self.recordings_dir),
            *(("host_key_files", path) for path in self.host_key_files),
        ):
            _require(
                value == "" or value.startswith("/"),
                f"sessions.{key}",
                f"must be an absolute path, got {value!r}",
            )

    @property
    def sshd_host(self) -> str:
        return split_address(self.sshd_address, "sessions.sshd_address")[0]

    @property
    def sshd_port(self) -> int:
        return split_address(self.sshd_address, "sessions.sshd_address")[1]


_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")


def split_address(address: str, key: str) -> tuple[str, int]:
    """``("host", port)`` from ``"HOST:PORT"`` or ``"[v6]:PORT"``; ConfigError naming ``key``."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"expected HOST:PORT such as 127.0.0.1:22, got {address!r}", key=key)
    return host, int(port)


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent reads from its config file; durations are in seconds."""

    interval: float = _DEFAULT_INTERVAL  # seconds between metric collections
    hostname: str = field(default_factory=socket.gethostname)  # shown to engineers
    check_timeout: float = _DEFAULT_CHECK_TIMEOUT  # time limit of one check
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    log: LogConfig = field(default_factory=LogConfig)
    playbooks: PlaybooksConfig = field(default_factory=PlaybooksConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    approvals: ApprovalsConfig = field(default_factory=ApprovalsConfig)

    def __post_init__(self) -> None:
        _require(1 <= self.interval <= 3600, "interval", "must be between 1s and 1h")
        _require(
            0 < self.check_timeout < self.interval,
            "check_timeout",
            f"must be shorter than interval ({self.interval:g}s)",
        )
        _require(
            self.spool.max_age > self.interval,
            "spool.max_age",
            f"must be longer than interval ({self.interval:g}s)",
        )
        _check_hostname(self.hostname)


def _check_hostname(hostname: str) -> None:
    _require(bool(hostname.strip()), "hostname", "must not be empty")
    _require(len(hostname) <= 253, "hostname", "must be at most 253 characters")
    _require(
        hostname.isprintable() and hostname == hostname.strip(),
        "hostname",
        f"{hostname!r} must not contain control characters or surrounding spaces",
    )


# --- reading the file ---------------------------------------------------------------

_Parser = Callable[[str, object], Any]


def _duration(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _wrong_type(key, value, 'a duration such as "15s"')
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(str(exc), key=key) from exc


def _size(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _wrong_type(key, value, 'a size such as "64MiB"')
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ConfigError(str(exc), key=key) from exc


def _integer(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(key, value, "an integer such as 64")
    return value


def _fraction(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type(key, value, "a number between 0 and 1 such as 0.67")
    return float(value)


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _wrong_type(key, value, 'a string such as "db01.example.com"')
    return value


def _string_list(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong_type(key, value, 'a list of strings such as ["/etc/aftercare/vendor.pub"]')
    return tuple(value)


def _boolean(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type(key, value, "true or false")
    return value


def _log_level(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _wrong_type(key, value, 'a log level such as "info"')
    return value.lower()


def _wrong_type(key: str, value: object, expected: str) -> ConfigError:
    return ConfigError(f"expected {expected}, got {_describe(value)}", key=key)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{type(value).__name__} {value}"


# Section name ("" for top level) -> key -> parser. Order matches the docs.
_SCHEMA: dict[str, dict[str, _Parser]] = {
    "": {"interval": _duration, "hostname": _string, "check_timeout": _duration},
    "spool": {"max_size": _size, "max_age": _duration},
    "stream": {
        "max_in_flight": _integer,
        "initial_backoff": _duration,
        "max_backoff": _duration,
        "renew_at_fraction": _fraction,
        "proxy": _string,
    },
    "log": {"level": _log_level},
    "playbooks": {
        "trusted_keys": _string_list,
        "policy": _string,
        "max_concurrent_runs": _integer,
        "workdir": _string,
    },
    "sessions": {
        "backend": _string,
        "sshd_address": _string,
        "user": _string,
        "key_file": _string,
        "host_key_files": _string_list,
        "shell": _string,
        "sftp_server": _string,
        "record_input": _boolean,
        "recordings_dir": _string,
    },
    "approvals": {"root": _string},
}
_SECTIONS = tuple(name for name in _SCHEMA if name)


def load_config(path: Path | None) -> AgentConfig:
    """Read and validate the TOML file at ``path``; None gives the defaults.

    Raises ConfigError naming the file and key for unreadable files, invalid TOML,
    unknown keys, wrong types and out-of-range values.
    """
    try:
        document = _read(path) if path is not None else {}
        return _build(document)
    except ConfigError as exc:
        raise exc.in_file(path) from exc.__cause__


def _read(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``, which only root or the agent's user may change."""
    try:
        problem = ownership_problem(path.stat())
        if problem:
            raise ConfigError(problem)
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from exc


def _build(document: Mapping[str, Any]) -> AgentConfig:
    top = _section(document, "")
    values = {name: _section(_table(document, name), name) for name in _SECTIONS}
    interval = top.get("interval", _DEFAULT_INTERVAL)
    if "check_timeout" not in top and interval <= _DEFAULT_CHECK_TIMEOUT:
        # Only the interval was lowered: keep the check limit inside it instead of failing.
        top["check_timeout"] = interval / 2
    return AgentConfig(
        **top,
        spool=SpoolConfig(**values["spool"]),
        stream=StreamConfig(**values["stream"]),
        log=LogConfig(**values["log"]),
        playbooks=PlaybooksConfig(**values["playbooks"]),
        sessions=SessionsConfig(**values["sessions"]),
        approvals=ApprovalsConfig(**values["approvals"]),
    )


def _table(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    table = document.get(name, {})
    if not isinstance(table, dict):
        raise _wrong_type(name, table, f"a table [{name}]")
    return table


def _section(table: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Parse the keys of one section, rejecting keys the schema does not know."""
    schema = _SCHEMA[name]
    known = list(schema) if name else [*schema, *_SECTIONS]
    parsed: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{name}.{key}" if name else key
        if key not in known:
            raise ConfigError(_unknown_key_problem(key, known), key=dotted)
        if key in schema:
            parsed[key] = schema[key](dotted, value)
    return parsed


def _unknown_key_problem(key: str, known: list[str]) -> str:
    import difflib  # only for a mistyped key: not kept by the running agent (memory)

    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}valid keys here: {', '.join(known)}"
