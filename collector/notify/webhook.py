"""Generic JSON webhook: POST one JSON document to an http(s) URL.

Success is a 2xx answer. Redirects are not followed (a POST redirected by urllib
turns into a bodiless GET that would "succeed" without delivering anything) and no
proxy from the environment is used (only config code reads the environment): the
configured URL is the one that is called, directly. Error messages show the URL as
scheme://host:port only, since webhook paths and queries often embed secrets.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import IO, Any
from urllib.parse import urlsplit

from collector import __version__
from collector.notify.errors import DeliveryError

__all__ = ["send_webhook", "url_problem"]

USER_AGENT = f"aftercare-collector/{__version__}"
_MAX_RESPONSE_BYTES = 64 * 1024  # read (and discard) at most this much of an answer
_RETRYABLE_STATUS = frozenset({408, 425, 429})


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a webhook target, or None if it is usable.

    Config code turns a problem into ``ConfigError`` naming the field at start.
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"scheme must be http or https, not {parts.scheme or 'missing'!r}"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not supported; pass an Authorization header"
    if port == 0:
        return "port 0 is not a valid destination"
    return None


def send_webhook(
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout: float = 10,
    headers: Mapping[str, str] | None = None,
) -> None:
    """POST ``payload`` as UTF-8 JSON to ``url``; return once it answered 2xx.

    ``headers`` are added to (and may override) Content-Type and User-Agent, e.g. an
    ``Authorization`` header. Raises DeliveryError for a URL that is not http(s), a
    payload that is not plain JSON data, a network error or timeout, or a non-2xx
    answer (with the status and reason; ``retryable`` for 5xx, 408, 425 and 429).
    """
    target = _redacted(url)
    problem = url_problem(url)
    if problem is not None:
        raise DeliveryError(f"webhook {target}: {problem}", channel="webhook", target=target)
    request = urllib.request.Request(
        url, data=_encode(payload, target), headers=_headers(headers), method="POST"
    )
    status = _post(request, timeout, target)
    if not 200 <= status < 300:
        raise DeliveryError(
            f"webhook {target} answered {status}; expected a 2xx status",
            channel="webhook",
            target=target,
            status=status,
            retryable=_retryable(status),
        )


def _encode(payload: Mapping[str, Any], target: str) -> bytes:
    try:
        text = json.dumps(dict(payload), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DeliveryError(
            f"webhook {target}: payload is not plain JSON data: {exc}",
            channel="webhook",
            target=target,
        ) from exc
    return text.encode("utf-8")


def _headers(extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
    headers.update(extra or {})
    return headers


def _post(request: urllib.request.Request, timeout: float, target: str) -> int:
    """Send the request; the answer's status (non-2xx included). Maps driver errors."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    try:
        with opener.open(request, timeout=timeout) as response:
            _drain(response)
            return int(response.status)
    except urllib.error.HTTPError as exc:  # urllib raises for >= 300 once redirects stop
        try:
            error = _http_error(exc, target)
        finally:
            exc.close()
        raise error from exc
    except urllib.error.URLError as exc:
        raise _network_error(target, exc.reason) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(target, exc) from exc
    except ValueError as exc:  # e.g. a header value with a line break
        raise DeliveryError(
            f"webhook {target}: invalid request: {exc}", channel="webhook", target=target
        ) from exc


def _drain(response: IO[bytes]) -> None:
    response.read(_MAX_RESPONSE_BYTES)


def _http_error(exc: urllib.error.HTTPError, target: str) -> DeliveryError:
    status = int(exc.code)
    reason = str(exc.reason or http.client.responses.get(status, ""))
    detail = _snippet(exc)
    hint = "; redirects are not followed — configure the final URL" if 300 <= status < 400 else ""
    return DeliveryError(
        f"webhook {target} answered {status} {reason}{detail}{hint}",
        channel="webhook",
        target=target,
        status=status,
        retryable=_retryable(status),
    )


def _snippet(exc: urllib.error.HTTPError) -> str:
    """The start of the error body (receivers often say why), on one line."""
    try:
        body = exc.read(_MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException):
        return ""
    text = " ".join(body.decode("utf-8", "replace").split())[:200]
    return f": {text}" if text else ""


def _network_error(target: str, reason: object) -> DeliveryError:
    if isinstance(reason, TimeoutError):
        reason = "timed out"
    return DeliveryError(
        f"webhook {target} unreachable: {reason}", channel="webhook", target=target, retryable=True
    )


def _retryable(status: int) -> bool:
    return status >= 500 or status in _RETRYABLE_STATUS


def _redacted(url: str) -> str:
    """scheme://host[:port] of the URL: safe to log and to put in error messages."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not parts.hostname:
        return "<invalid URL>"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{port}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turn every redirect into an HTTPError (see the module docstring)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None
