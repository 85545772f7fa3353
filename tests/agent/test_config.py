"""Agent configuration: defaults, every key, errors naming file and key; durations and sizes."""

from __future__ import annotations

import dataclasses
import math
import socket
from pathlib import Path

import pytest

from agent.config import (
    AgentConfig,
    ApprovalsConfig,
    LogConfig,
    PlaybooksConfig,
    SessionsConfig,
    SpoolConfig,
    StreamConfig,
    load_config,
)
from agent.errors import ConfigError
from common.durations import parse_duration, parse_size

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert error.path == path
    assert str(path) in str(error)
    return error


SECTIONS = {
    "spool": SpoolConfig,
    "stream": StreamConfig,
    "log": LogConfig,
    "playbooks": PlaybooksConfig,
    "sessions": SessionsConfig,
    "approvals": ApprovalsConfig,
}


def dotted_keys() -> list[str]:
    """Every config key, from the dataclasses (so a new field must be documented)."""
    keys = []
    for field in dataclasses.fields(AgentConfig):
        if field.name in SECTIONS:
            keys += [f"{field.name}.{f.name}" for f in dataclasses.fields(SECTIONS[field.name])]
        else:
            keys.append(field.name)
    return keys


# --- defaults and every key ----------------------------------------------------------


def test_no_file_gives_the_documented_defaults() -> None:
    config = load_config(None)
    assert config == AgentConfig()
    assert config.interval == 15.0
    assert config.hostname == socket.gethostname()
    assert config.check_timeout == 5.0
    assert config.spool == SpoolConfig(max_size=64 * MIB, max_age=7 * 86400.0)
    assert config.stream == StreamConfig(
        max_in_flight=64, initial_backoff=1.0, max_backoff=60.0, renew_at_fraction=0.67
    )
    assert config.log == LogConfig(level="info")


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == AgentConfig()


def test_every_key_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        interval = "30s"
        hostname = "db01.example.com"
        check_timeout = "10s"

        [spool]
        max_size = "1GiB"
        max_age = "2d12h"

        [stream]
        max_in_flight = 8
        initial_backoff = "250ms"
        max_backoff = "5m"
        renew_at_fraction = 0.5
        proxy = "http://proxy.example:3128"

        [log]
        level = "DEBUG"
        """,
    )
    assert load_config(path) == AgentConfig(
        interval=30.0,
        hostname="db01.example.com",
        check_timeout=10.0,
        spool=SpoolConfig(max_size=1024 * MIB, max_age=2.5 * 86400),
        stream=StreamConfig(
            max_in_flight=8,
            initial_backoff=0.25,
            max_backoff=300.0,
            renew_at_fraction=0.5,
            proxy="http://proxy.example:3128",
        ),
        log=LogConfig(level="debug"),
    )


def test_durations_and_sizes_may_be_bare_numbers(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "interval = 20\ncheck_timeout = 2.5\n[spool]\nmax_size = 2097152\n")
    )
    assert (config.interval, config.check_timeout, config.spool.max_size) == (20.0, 2.5, 2 * MIB)


def test_the_example_file_is_valid_and_matches_the_defaults() -> None:
    assert load_config(REPO / "deploy" / "agent.example.toml") == AgentConfig()


@pytest.mark.parametrize("document", ["docs/agent-config.md", "deploy/agent.example.toml"])
def test_every_key_is_documented(document: str) -> None:
    text = (REPO / document).read_text(encoding="utf-8")
    for key in dotted_keys():
        short = key.rpartition(".")[2]
        wanted = f"`{key}`" if document.endswith(".md") else f"{short} ="
        assert wanted in text, f"{key} is missing from {document}"


# --- unknown keys and wrong types ------------------------------------------------------


def test_an_unknown_key_is_named_with_a_suggestion_and_the_valid_keys(tmp_path: Path) -> None:
    error = config_error(tmp_path, 'intervall = "30s"\n')
    assert error.key == "intervall"
    assert "did you mean 'interval'?" in str(error)
    assert "interval, hostname, check_timeout, spool, stream, log" in str(error)


def test_an_unknown_key_inside_a_section_is_named_with_its_section(tmp_path: Path) -> None:
    error = config_error(tmp_path, '[spool]\nmax_sise = "1GiB"\n')
    assert error.key == "spool.max_sise"
    assert "did you mean 'max_size'?" in str(error)
    assert "max_size, max_age" in str(error)


def test_an_unknown_section_is_an_unknown_key(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[spol]\nmax_size = 1\n")
    assert error.key == "spol"
    assert "did you mean 'spool'?" in str(error)


def test_a_section_that_is_not_a_table_is_a_type_error(tmp_path: Path) -> None:
    error = config_error(tmp_path, 'log = "debug"\n')
    assert error.key == "log"
    assert "expected a table [log], got string 'debug'" in str(error)


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        (
            '[stream]\nmax_in_flight = "64"\n',
            "stream.max_in_flight",
            "expected an integer such as 64, got string '64'",
        ),
        ("interval = true\n", "interval", 'expected a duration such as "15s", got boolean true'),
        (
            "[spool]\nmax_size = 1.5\n",
            "spool.max_size",
            'expected a size such as "64MiB", got number 1.5',
        ),
        (
            "hostname = 42\n",
            "hostname",
            'expected a string such as "db01.example.com", got number 42',
        ),
        (
            '[stream]\nrenew_at_fraction = "half"\n',
            "stream.renew_at_fraction",
            "expected a number between 0 and 1",
        ),
        (
            '[log]\nlevel = ["info"]\n',
            "log.level",
            'expected a log level such as "info", got an array',
        ),
    ],
)
def test_a_wrong_type_names_the_key_the_expected_type_and_an_example(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    error = config_error(tmp_path, text)
    assert error.key == key
    assert expected in str(error)


def test_a_bad_duration_names_file_key_and_syntax(tmp_path: Path) -> None:
    path = write(tmp_path, 'interval = "5x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: interval: invalid duration '5x': use a number with a unit: "
        'ms, s, m, h, d, w (e.g. "15s")'
    )


def test_a_bad_size_names_the_key(tmp_path: Path) -> None:
    error = config_error(tmp_path, '[spool]\nmax_size = "64QB"\n')
    assert error.key == "spool.max_size"
    assert "invalid size '64QB'" in str(error)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    error = config_error(tmp_path, "interval = \n")
    assert "not valid TOML" in str(error)


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file") as caught:
        load_config(tmp_path / "absent.toml")
    assert caught.value.path == tmp_path / "absent.toml"


# --- ranges and cross-field rules ------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "check_timeout"),
    [("4s", 2.0), ("5s", 2.5), ("1s", 0.5), ("6s", 5.0), ("15s", 5.0)],
)
def test_lowering_only_interval_clamps_check_timeout_to_half_of_it(
    tmp_path: Path, interval: str, check_timeout: float
) -> None:
    config = load_config(write(tmp_path, f'interval = "{interval}"\n'))
    assert config.check_timeout == check_timeout


def test_an_explicit_check_timeout_not_shorter_than_interval_is_an_error(tmp_path: Path) -> None:
    error = config_error(tmp_path, 'interval = "4s"\ncheck_timeout = "4s"\n')
    assert error.key == "check_timeout"
    assert "must be shorter than interval (4s)" in str(error)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('interval = "500ms"\n', "interval", "between 1s and 1h"),
        ('interval = "2h"\n', "interval", "between 1s and 1h"),
        ('check_timeout = "0s"\n', "check_timeout", "shorter than interval"),
        ('[spool]\nmax_size = "8KiB"\n', "spool.max_size", "at least 16KiB"),
        ('[spool]\nmax_age = "30s"\n', "spool.max_age", "at least 1m"),
        ('interval = "30m"\n[spool]\nmax_age = "20m"\n', "spool.max_age", "longer than interval"),
        ("[stream]\nmax_in_flight = 0\n", "stream.max_in_flight", "between 1 and 10000"),
        ('[stream]\ninitial_backoff = "0s"\n', "stream.initial_backoff", "at least 10ms"),
        ('[stream]\nmax_backoff = "500ms"\n', "stream.max_backoff", "initial_backoff"),
        ("[stream]\nrenew_at_fraction = 1\n", "stream.renew_at_fraction", "between 0.1 and 0.95"),
        ('[stream]\nproxy = "https://p.example:3128"\n', "stream.proxy", "not supported"),
        ('[stream]\nproxy = "http://p.example"\n', "stream.proxy", "names no port"),
        ('[stream]\nproxy = "http://:3128"\n', "stream.proxy", "names no host"),
        ('[stream]\nproxy = "http://p.example:3128/x"\n', "stream.proxy", "no path"),
        ('[log]\nlevel = "verbose"\n', "log.level", "debug, info, warning, error"),
        ('hostname = ""\n', "hostname", "must not be empty"),
        ('hostname = "db01\\n"\n', "hostname", "control characters"),
    ],
)
def test_out_of_range_values_name_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    error = config_error(tmp_path, text)
    assert error.key == key
    assert problem in str(error)


def test_a_bad_proxy_url_never_repeats_its_password(tmp_path: Path) -> None:
    error = config_error(tmp_path, '[stream]\nproxy = "ftp://bob:s3cret@p.example:21"\n')
    assert error.key == "stream.proxy"
    assert "s3cret" not in str(error)


def test_building_the_dataclass_directly_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"spool\.max_size"):
        SpoolConfig(max_size=10)
    with pytest.raises(ConfigError) as caught:
        AgentConfig(interval=10, check_timeout=10)
    assert caught.value.key == "check_timeout"
    assert caught.value.path is None


def test_the_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        AgentConfig().interval = 1  # type: ignore[misc]


# --- [sessions] ------------------------------------------------------------------------


def test_sessions_default_to_not_served() -> None:
    sessions = load_config(None).sessions
    assert sessions == SessionsConfig()
    assert sessions.backend == "none" and sessions.record_input is False
    assert (sessions.sshd_host, sessions.sshd_port) == ("127.0.0.1", 22)


def test_every_sessions_key_is_read(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
            [sessions]
            backend = "sshd"
            sshd_address = "[::1]:2022"
            user = "support"
            key_file = "/etc/aftercare/support_ed25519"
            host_key_files = ["/etc/ssh/ssh_host_ed25519_key.pub"]
            shell = "/bin/bash"
            sftp_server = "/usr/lib/sftp-server"
            record_input = true
            recordings_dir = "/var/log/aftercare/recordings"
            """,
        )
    )
    assert config.sessions == SessionsConfig(
        backend="sshd",
        sshd_address="[::1]:2022",
        user="support",
        key_file="/etc/aftercare/support_ed25519",
        host_key_files=("/etc/ssh/ssh_host_ed25519_key.pub",),
        shell="/bin/bash",
        sftp_server="/usr/lib/sftp-server",
        record_input=True,
        recordings_dir="/var/log/aftercare/recordings",
    )
    assert (config.sessions.sshd_host, config.sessions.sshd_port) == ("::1", 2022)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('backend = "ssh"\n', "sessions.backend", "must be one of none, sshd, pty"),
        ('backend = "sshd"\nkey_file = "/k"\n', "sessions.user", 'required with backend = "sshd"'),
        ('backend = "sshd"\nuser = "s"\n', "sessions.key_file", 'required with backend = "sshd"'),
        ('sshd_address = "localhost"\n', "sessions.sshd_address", "expected HOST:PORT"),
        ('sshd_address = "h:99999"\n', "sessions.sshd_address", "expected HOST:PORT"),
        ('user = "bob smith"\n', "sessions.user", "is not a user name"),
        ('key_file = "id_ed25519"\n', "sessions.key_file", "must be an absolute path"),
        ('host_key_files = ["k.pub"]\n', "sessions.host_key_files", "absolute path"),
        ('recordings_dir = "rec"\n', "sessions.recordings_dir", "absolute path"),
        ('record_input = "yes"\n', "sessions.record_input", "expected true or false"),
        ('backend = "pty"\nshel = "/bin/sh"\n', "sessions.shel", "did you mean 'shell'?"),
    ],
)
def test_bad_sessions_values_name_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    error = config_error(tmp_path, "[sessions]\n" + text)
    assert error.key == key
    assert problem in str(error)


# --- durations and sizes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("1.5s", 1.5),
        (".5h", 1800.0),
        (" 15s ", 15.0),
        ("1m 30s", 90.0),
        ("0", 0.0),
        (15, 15.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", ["5x", "", "s", "15", "1h30", "1 h x", "1..5s", "5S", "--1s", True, [1], None]
)
def test_parse_duration_rejects_garbage_with_the_syntax_in_the_message(bad: object) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(bad)  # type: ignore[arg-type]
    assert f"invalid duration {bad!r}" in str(caught.value)
    assert "ms, s, m, h, d, w" in str(caught.value) or "negative" in str(caught.value)


def test_parse_duration_message_is_exactly_as_documented() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("5x")
    assert str(caught.value) == (
        "invalid duration '5x': use a number with a unit: ms, s, m, h, d, w (e.g. \"15s\")"
    )


@pytest.mark.parametrize("bad", ["-1s", -1, -0.5, math.inf, math.nan])
def test_parse_duration_rejects_negative_and_non_finite(bad: str | float) -> None:
    with pytest.raises(ValueError, match=r"negative|finite"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MiB", 64 * MIB),
        ("1GiB", 1024 * MIB),
        ("500KB", 500_000),
        ("1024", 1024),
        (1024, 1024),
        ("1.5KiB", 1536),
        ("64mib", 64 * MIB),
        ("10 MB", 10_000_000),
        ("2TiB", 2 * 1024**4),
        ("7B", 7),
        ("0", 0),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["64QB", "", "MiB", "1.2.3MiB", "64 Mi B", "1e3", True, 1.5, None])
def test_parse_size_rejects_garbage_with_the_syntax_in_the_message(bad: object) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(bad)  # type: ignore[arg-type]
    assert f"invalid size {bad!r}" in str(caught.value)
    assert "KiB, MiB" in str(caught.value)


@pytest.mark.parametrize("bad", ["-1MiB", -5])
def test_parse_size_rejects_negative(bad: str | int) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_size(bad)
