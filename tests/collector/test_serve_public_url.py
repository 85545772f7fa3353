"""``serve --public-url``: checked at start; the base of the links in customer notices."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import ServeConfig
from collector.errors import ConfigError
from collector.tickets.customer_notices import ticket_link


@pytest.mark.parametrize(
    "url", ["support.vendor.example", "ftp://support.vendor.example", "https://", "https://a b/"]
)
def test_a_public_url_that_is_not_http_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"--public-url .* must be an http"):
        ServeConfig(data_dir=tmp_path, public_url=url).validate()


@pytest.mark.parametrize(
    "url", ["", "https://support.vendor.example", "http://10.0.0.5:8080/aftercare/"]
)
def test_http_public_urls_are_accepted(tmp_path: Path, url: str) -> None:
    assert ServeConfig(data_dir=tmp_path, public_url=url).validate().public_url == url


def test_links_use_the_public_url_else_the_command() -> None:
    assert ticket_link(7, "https://s.example/x/") == "https://s.example/x/tickets/7"
    assert ticket_link(7, "") == "aftercare ticket show 7"
    assert ticket_link(7, "", "confirm") == "aftercare ticket confirm 7"
