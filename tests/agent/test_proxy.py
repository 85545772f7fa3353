"""Choosing and parsing the HTTP proxy (agent.rpc.proxy): config, environment, no_proxy.

Connections through a real proxy process are in test_rpc.py (the client) and
tests/e2e/test_proxy.py (agent and collector).
"""

from __future__ import annotations

import pytest

from agent.rpc.proxy import Proxy, parse_proxy, proxy_for

P = Proxy("proxy.example", 3128)


@pytest.mark.parametrize(
    ("url", "proxy"),
    [
        ("http://proxy.example:3128", P),
        ("http://proxy.example:3128/", P),
        ("proxy.example:3128", P),
        ("HTTP://proxy.example:3128", P),
        ("http://[::1]:8080", Proxy("::1", 8080)),
        ("http://bob:s%40cret@proxy.example:3128", Proxy("proxy.example", 3128, "bob", "s@cret")),
    ],
)
def test_parse_proxy(url: str, proxy: Proxy) -> None:
    assert parse_proxy(url) == proxy


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://bob:s3cret@proxy.example:3128", "not supported"),
        ("socks5://bob:s3cret@proxy.example:1080", "not supported"),
        ("http://bob:s3cret@proxy.example", "no port"),
        ("http://bob:s3cret@proxy.example:99999", "not a proxy URL"),
        ("http://bob:s3cret@:3128", "no host"),
        ("http://bob:s3cret@proxy.example:3128/path", "no path"),
    ],
)
def test_a_bad_proxy_url_says_why_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_proxy(url)
    assert problem in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_credentials_never_show_in_str_or_repr() -> None:
    proxy = parse_proxy("http://bob:s3cret@proxy.example:3128")
    assert str(proxy) == "http://proxy.example:3128"
    assert "s3cret" not in repr(proxy) and "bob" not in repr(proxy)
    assert b"Proxy-Authorization: Basic Ym9iOnMzY3JldA==\r\n" in proxy.connect_request("c", 1)
    assert b"Proxy-Authorization" not in P.connect_request("c", 1)
    assert P.connect_request("::1", 7443).startswith(b"CONNECT [::1]:7443 HTTP/1.1\r\n")


def test_the_configured_proxy_wins_over_the_environment_and_no_proxy() -> None:
    env = {"https_proxy": "http://other:1", "no_proxy": "*"}
    assert proxy_for("collector.example", "http://proxy.example:3128", env) == P


@pytest.mark.parametrize("name", ["grpc_proxy", "https_proxy", "HTTPS_PROXY"])
def test_each_standard_variable_is_followed(name: str) -> None:
    assert proxy_for("collector.example", "", {name: "http://proxy.example:3128"}) == P


def test_grpc_proxy_comes_first_and_http_proxy_is_not_used() -> None:
    env = {"grpc_proxy": "http://proxy.example:3128", "https_proxy": "http://other:1"}
    assert proxy_for("c.example", "", env) == P
    assert proxy_for("c.example", "", {"http_proxy": "http://other:1"}) is None
    assert proxy_for("c.example", "", {}) is None


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("collector.example.com", "*", True),
        ("collector.example.com", "collector.example.com", True),
        ("collector.example.com", "example.com", True),
        ("collector.example.com", ".example.com", True),
        ("collector.example.com", "*.example.com", True),
        ("collector.example.com", "other.com, example.com:7443", True),
        ("collector.example.com", "ample.com", False),
        ("collector.example.com", "other.com", False),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("10.1.2.3", "10.1.2.3", True),
        ("10.1.2.3", "192.168.0.0/16,localhost", False),
        ("::1", "::1", True),
        ("COLLECTOR.example.com", "Example.COM", True),
        ("collector.example.com", "", False),
    ],
)
def test_no_proxy_lists(host: str, no_proxy: str, bypassed: bool) -> None:
    for variable in ("no_proxy", "NO_PROXY", "no_grpc_proxy"):
        env = {"https_proxy": "http://proxy.example:3128", variable: no_proxy}
        assert proxy_for(host, "", env) == (None if bypassed else P), (variable, env)


def test_a_malformed_environment_proxy_names_the_variable() -> None:
    with pytest.raises(ValueError, match=r"environment variable https_proxy: .*no port"):
        proxy_for("c.example", "", {"https_proxy": "http://proxy.example"})
