"""Exceptions of the sampler package.

    SamplerError              base; never escapes ``Sampler.collect`` from a check
     ├── SamplerClosed        collect() called after close()
     └── SystemctlError       systemctl failed, timed out or could not start

Errors raised inside checks (these or any other) become ``CheckFailure`` values;
only ``SamplerClosed`` reaches callers of ``collect``.
"""

from __future__ import annotations


class SamplerError(Exception):
    """Base class of the sampler's own errors."""


class SamplerClosed(SamplerError):
    """The sampler was closed; create a new one to collect again."""


class SystemctlError(SamplerError):
    """``systemctl`` gave no usable answer; the message says why."""
