"""The playbooks package's exception tree: every error it raises on purpose.

Third-party errors (PyYAML, cryptography, json) are mapped to these at the boundary
with ``raise ... from exc``. Messages are complete sentences for the audit log and
say what to do where there is something to do. No message ever contains the value of
a ``secret`` parameter.

    PlaybookError
    ├── InvalidPlaybook          a playbook breaks the format (``problems``: FILE:LINE list)
    ├── InvalidParameter         a parameter value is refused (``parameter``, ``problems``)
    ├── VendorKeyError           a vendor key is unusable (not an Ed25519 PEM key, ...)
    └── CatalogueError           the signed catalogue cannot be trusted: nothing from it runs
        ├── UnsignedCatalogue    there is no signature (or no manifest) at all
        ├── BadSignature         the signature does not verify over the exact manifest bytes
        │   └── UnknownSigner    not signed by a trusted vendor key
        ├── InvalidManifest      signed, but not a manifest this version understands
        ├── ManifestExpired      the manifest's validity ended (``expires_at``)
        ├── ManifestNotYetValid  issued in the future (beyond the allowed clock skew)
        ├── DowngradeRefused     catalogue or playbook version older than one already accepted
        ├── NotInManifest        the playbook has no entry in the manifest
        ├── DigestMismatch       the file's sha256 differs from its manifest entry
        └── ManifestMismatch     the file contradicts its entry (name, version)
            └── ModeMismatch     ... its mode (read-only / mutating)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BadSignature",
    "CatalogueError",
    "DigestMismatch",
    "DowngradeRefused",
    "InvalidManifest",
    "InvalidParameter",
    "InvalidPlaybook",
    "ManifestExpired",
    "ManifestMismatch",
    "ManifestNotYetValid",
    "ModeMismatch",
    "NotInManifest",
    "PlaybookError",
    "UnknownSigner",
    "UnsignedCatalogue",
    "VendorKeyError",
]


class PlaybookError(Exception):
    """Base of every error the playbooks package raises on purpose."""


class InvalidPlaybook(PlaybookError):
    """A playbook breaks the format. ``problems`` lists each as ``FILE:LINE: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in playbook(s)"
        super().__init__("\n".join([f"{head}:", *self.problems]) if self.problems else head)


class InvalidParameter(PlaybookError):
    """A parameter value is refused. ``parameter`` names the first offending parameter
    (None when the problem is not about one); ``problems`` lists every problem found.
    Secret values are never part of the message."""

    def __init__(
        self, message: str, *, parameter: str | None = None, problems: Sequence[str] = ()
    ) -> None:
        self.parameter = parameter
        self.problems: tuple[str, ...] = tuple(problems) or (message,)
        super().__init__(message)


class VendorKeyError(PlaybookError):
    """A vendor key (private or public) cannot be used."""


class CatalogueError(PlaybookError):
    """The signed catalogue cannot be trusted; nothing from it may run."""


class UnsignedCatalogue(CatalogueError):
    """There is no signature (or no manifest): an unsigned catalogue is never trusted."""


class BadSignature(CatalogueError):
    """The signature does not verify over the exact manifest bytes (altered or corrupt)."""


class UnknownSigner(BadSignature):
    """The manifest is not signed by a trusted vendor key.

    Cryptographically this is a signature that does not verify with any pinned key;
    it is reported apart when the signature names a key id that is not pinned."""


class InvalidManifest(CatalogueError):
    """The manifest is signed but malformed, or of a format this version does not know."""


class ManifestExpired(CatalogueError):
    """The manifest's validity has ended; the vendor must sign a current catalogue."""


class ManifestNotYetValid(CatalogueError):
    """The manifest was issued in the future (beyond the allowed clock skew)."""


class DowngradeRefused(CatalogueError):
    """The catalogue (or one playbook in it) is older than a version already accepted."""


class NotInManifest(CatalogueError):
    """The playbook is not listed in the signed manifest."""


class DigestMismatch(CatalogueError):
    """The playbook file's sha256 differs from the one in the signed manifest."""


class ManifestMismatch(CatalogueError):
    """The playbook file contradicts its manifest entry (name or version)."""


class ModeMismatch(ManifestMismatch):
    """The playbook's mode differs from the mode in its manifest entry."""
