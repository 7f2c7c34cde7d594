"""``RunAnchors``: the server's signed anchors log in its run folder (format: ``secure_mor.anchors``).

The server appends what the other parties told it — each client's signed ledger head at join, each
decryption it requests and the key holder's receipt for it — so that ``secure-mor audit`` can later
tell a truncated or withheld log from a whole one. Every append is one fsynced line (``SignedLog``); a
log that does not verify is never appended to, and a failed append stops what depended on it.
"""

from __future__ import annotations

from pathlib import Path

from secure_mor.anchors import Anchor
from secure_mor.crypto.errors import LogIntegrityError, LogWriteError
from secure_mor.crypto.signed_log import SignedLog
from secure_mor.crypto.signing import SigningKey
from secure_mor.server.errors import ServerError


class RunAnchors:
    """The anchors log at ``path``, signed by the server's key ``signer``; thread-safe."""

    def __init__(self, path: Path, signer: SigningKey) -> None:
        self.path = path
        try:
            self._log = SignedLog(path, signer)
        except LogIntegrityError as error:
            raise ServerError(
                f"{error}; the server never appends to an anchors log that does not verify: restore "
                f"{path} from a backup, or start a new run folder"
            ) from None
        except LogWriteError as error:
            raise ServerError(str(error)) from None

    def record(self, anchor: Anchor) -> None:
        """Append ``anchor`` (signed, fsynced); ``ServerError`` naming the file when it cannot be written."""
        try:
            self._log.append(anchor.KIND, anchor.payload())
        except (LogWriteError, LogIntegrityError) as error:
            raise ServerError(f"cannot record {anchor.KIND} in the anchors log: {error}") from None

    def close(self) -> None:
        """Close the log file."""
        self._log.close()
