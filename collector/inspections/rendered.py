"""Renderings of published inspection reports, made once and kept on disk.

A published report is immutable (the signature binds its sha256), so each rendering of
it - one format in one language, with its sign-off block as it stands - is made once and
kept in a directory beside the store, named ``<sha256>.<signoff>.<lang>.<fmt>``, where
``<signoff>`` is ``unsigned`` or the first 16 hex digits of the sha256 of the sign-off
block shown. Rendering (the PDF above all) runs in a thread, off the event loop; requests
for the same rendering made while it runs wait for that one. A file is written whole
(a temporary file, then a rename), so a crash leaves no partial rendering. Without a
directory every request renders (tests of other parts).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from collector.inspections.render import FORMATS, LANGUAGES, canonical_bytes
from common.atomic import write_atomic

__all__ = ["Render", "RenderedReports", "rendering_name"]

Render = Callable[[Mapping[str, Any], str, str], bytes]
_SHA256 = re.compile(r"[0-9a-f]{64}")


def rendering_name(sha256: str, document: Mapping[str, Any], fmt: str, lang: str) -> str:
    """The file name of ``document`` (published as ``sha256``) rendered as ``fmt`` in
    ``lang``; ValueError for a value that cannot be part of one."""
    if not _SHA256.fullmatch(sha256) or fmt not in FORMATS or lang not in LANGUAGES:
        raise ValueError(f"no rendering of report {sha256[:70]!r} as {fmt!r} in {lang!r}")
    signoff = document.get("signoff")
    if signoff:
        signed = hashlib.sha256(canonical_bytes({"signoff": signoff})).hexdigest()[:16]
    else:
        signed = "unsigned"
    return f"{sha256}.{signed}.{lang}.{fmt}"


class RenderedReports:
    """Renderings of published reports, each made once (see module doc)."""

    def __init__(self, directory: Path | None, render: Render) -> None:
        self._directory = directory
        self._render = render
        self._locks: dict[str, asyncio.Lock] = {}
        self.rendered = 0  # renderings made by this process (tests, logs)

    async def get(self, sha256: str, document: Mapping[str, Any], fmt: str, lang: str) -> bytes:
        """``document`` (the published report ``sha256`` with its sign-off block) as
        ``fmt`` in ``lang``: the kept rendering, or a new one, kept. Raises what the
        renderer raises (ValueError for a format or language it does not have)."""
        if self._directory is None:
            return await self._make(document, fmt, lang)
        name = rendering_name(sha256, document, fmt, lang)
        path = self._directory / name
        lock = self._locks.setdefault(name, asyncio.Lock())
        try:
            async with lock:
                if path.exists():
                    return await asyncio.to_thread(path.read_bytes)
                content = await self._make(document, fmt, lang)
                await asyncio.to_thread(_write_whole, path, content)
                return content
        finally:
            if not lock.locked():
                self._locks.pop(name, None)

    async def _make(self, document: Mapping[str, Any], fmt: str, lang: str) -> bytes:
        content = await asyncio.to_thread(self._render, document, fmt, lang)
        self.rendered += 1
        return content


def _write_whole(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, content, 0o644)
