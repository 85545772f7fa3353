"""Configuration of ``aftercare-collector serve``: one frozen dataclass, validated at start.

Every field is a command-line option (docs/collector-config.md lists them);
``validate`` names the offending option in its error.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from collector.errors import ConfigError
from collector.inspections.catalogue import CatalogueError, load_catalogue

DEFAULT_LISTEN = "127.0.0.1:7443"
DEFAULT_API_LISTEN = "127.0.0.1:7444"
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"
DEFAULT_SSH_LISTEN = "127.0.0.1:2222"
DEFAULT_WEB_LISTEN = "127.0.0.1:8443"


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``serve`` needs. Ports may be 0 (tests): the bound port is reported."""

    data_dir: Path
    listen: str = DEFAULT_LISTEN
    api_listen: str = DEFAULT_API_LISTEN
    metrics_listen: str = DEFAULT_METRICS_LISTEN
    host_samples_on_metrics: bool = True  # False: only on /metrics/hosts (large fleets)
    advertise: str = ""  # HOST:PORT agents dial; default: the bound agent address
    tls_names: tuple[str, ...] = field(default_factory=tuple)
    agent_cert_ttl: dt.timedelta = dt.timedelta(days=30)
    max_message_bytes: int = 4 * 1024 * 1024
    batch_retention: dt.timedelta = dt.timedelta(days=30)
    rules_path: Path | None = None  # None: the rules shipped with the collector
    tickets_config: Path | None = None  # None: defaults (SLA per SERVICE-COMMITMENTS)
    inspections_config: Path | None = None  # None: defaults (docs/inspections.md)
    evaluation_interval: dt.timedelta = dt.timedelta(seconds=5)
    recovery_delay: dt.timedelta = dt.timedelta(seconds=30)
    alertmanager_tokens: tuple[str, ...] = ()  # bearer tokens accepted on /alertmanager
    playbooks_dir: Path | None = None  # None: the catalogue shipped in the package
    inspection_catalogue: Path | None = None  # extends the shipped recommendation catalogue
    ssh_listen: str = DEFAULT_SSH_LISTEN  # the SSH gateway; "" serves none
    record_input: bool = False  # recordings also keep what engineers type
    session_warning: dt.timedelta = dt.timedelta(minutes=5)  # warn before the window ends
    web_listen: str = DEFAULT_WEB_LISTEN  # the portal (HTTPS); "" serves none
    public_url: str = ""  # the portal's address people reach; default https://WEB_LISTEN
    store_url: str | None = None  # None: the embedded SQLite store (docs/store-postgresql.md)
    relay_listen: str = ""  # the replica relay (PostgreSQL replicas, docs/replicas.md); "": none
    relay_advertise: str = ""  # HOST:PORT other replicas dial; default: the bound address

    def link_base(self) -> str:
        """Where notifications link to: ``public_url``, else the portal's own address
        (unless it listens on port 0), else "" (notices name CLI commands instead)."""
        if self.public_url:
            return self.public_url
        if self.web_listen and not self.web_listen.endswith(":0"):
            return f"https://{self.web_listen}"
        return ""

    def validate(self) -> ServeConfig:
        """Return self if every field is usable, else raise ConfigError naming the option."""
        for option, value in (
            ("--listen", self.listen),
            ("--api-listen", self.api_listen),
            ("--metrics-listen", self.metrics_listen),
        ):
            split_host_port(value, option)
        if self.ssh_listen:
            split_host_port(self.ssh_listen, "--ssh-listen")
        if self.advertise:
            split_host_port(self.advertise, "--advertise")
        if self.web_listen:
            split_host_port(self.web_listen, "--web-listen")
        if self.relay_listen:
            split_host_port(self.relay_listen, "--relay-listen")
        if self.relay_advertise:
            split_host_port(self.relay_advertise, "--relay-advertise")
        if not dt.timedelta(0) <= self.session_warning <= dt.timedelta(hours=1):
            raise ConfigError("--session-warning must be between 0s and 1h")
        if self.public_url and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", self.public_url):
            raise ConfigError(
                f"--public-url {self.public_url!r} must be an http(s) URL, "
                "e.g. https://support.vendor.example"
            )
        if self.agent_cert_ttl < dt.timedelta(seconds=10):
            raise ConfigError("--agent-cert-ttl must be at least 10s")
        if not 64 * 1024 <= self.max_message_bytes <= 256 * 1024 * 1024:
            raise ConfigError("--max-message-size must be between 64KiB and 256MiB")
        if (
            not dt.timedelta(milliseconds=100)
            <= self.evaluation_interval
            <= dt.timedelta(minutes=5)
        ):
            raise ConfigError("--evaluation-interval must be between 100ms and 5m")
        if self.inspection_catalogue is not None:
            try:
                load_catalogue(self.inspection_catalogue)
            except CatalogueError as exc:
                raise ConfigError(f"--inspection-catalogue: {exc}") from exc
        return self


def split_host_port(value: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` to (host, port); ConfigError naming ``option`` if malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{option} {value!r}: use HOST:PORT, e.g. 127.0.0.1:7443")
    return host.strip("[]"), int(port)
