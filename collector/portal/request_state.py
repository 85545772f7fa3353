"""What every portal handler shares: the request keys set by the sign-in middleware,
and the safe headers every answer carries (pages.py and run_pages.py use them).

Contracts: ``SIGNED_IN`` is set on every request but ``/login`` and ``/static/``;
``FORM`` on every POST whose CSRF token matched. ``safe_headers`` sets the CSP without
inline script (``default-src 'none'``), ``frame-ancestors 'none'`` and, except for
static files, ``Cache-Control: no-store``; a streamed answer calls it before
``prepare`` (the middleware's call comes too late for it).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from collector.portal.signin import SignedIn

__all__ = ["CSP", "FORM", "SIGNED_IN", "safe_headers"]

# script-src: our own files only; 'wasm-unsafe-eval' lets asciinema-player compile its
# terminal emulator (WebAssembly), nothing else (no eval, no inline script).
# connect-src: the player fetches a recording / follows a live session, same origin.
CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; "
    "style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

SIGNED_IN = web.RequestKey("signed_in", SignedIn)
FORM: web.RequestKey[Any] = web.RequestKey("form")


def safe_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Set the portal's safe headers on ``response``."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
