"""The exception hierarchy of ``secure_mor.crypto``: every failure the key holder and primitives raise.

Each error says the rule that failed, the value found and, where it helps, what to do. The CLI turns
them into one line and a non-zero exit; the key holder service turns a ``PolicyRefusal`` into a gRPC
status (its ``code`` names the ``grpc.StatusCode``) and logs it.
"""

from __future__ import annotations

from secure_mor.errors import ConfigError, SecureMorError


class CryptoError(SecureMorError):
    """Base class of the crypto package's errors: a key, certificate, context or ciphertext is unusable."""


class ParameterError(CryptoError, ConfigError):
    """CKKS parameters are malformed or below the 128-bit security bound for their ring dimension."""


class SignatureError(CryptoError):
    """A signature does not verify against the pinned public key, or the signer is not pinned."""

    exit_code = 1


class ContextMismatchError(CryptoError):
    """A ciphertext was made under another CKKS context than the one at hand (fingerprints differ)."""


class KitError(CryptoError):
    """A startup kit cannot be written or read (it exists already, a file is missing, a name is invalid)."""


class LogIntegrityError(CryptoError):
    """A signed hash-chained log does not verify: the message names the file, line and broken rule."""

    exit_code = 1


class LogWriteError(CryptoError):
    """A signed log cannot be opened or appended to (disk full, read-only, file too large).

    The message names the file and the operating system's reason; an append that fails is cut back, so
    the log on disk is left exactly as it was (it still verifies). ``errno`` is the OS error number.
    """

    exit_code = 1

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class PolicyRefusal(CryptoError):  # noqa: N818 (a refusal is a decision, not a fault)
    """The key holder refuses a request; ``code`` is the name of the ``grpc.StatusCode`` it answers with."""

    exit_code = 1

    def __init__(self, code: str, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.code = code
        self.rule = rule
