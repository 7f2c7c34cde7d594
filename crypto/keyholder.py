"""The key holder's gRPC service: hands out the signed public context, decrypts only what policy allows.

Start it with ``start_keyholder(config)`` (``secure-mor keyholder serve --config FILE`` does). On start it
loads its Ed25519 key and pinned keys, loads — or, on first start, generates — the CKKS secret context,
verifies its decryption log and reads the step ids decrypted so far (so a replay is refused after a
restart too), then listens with mTLS only. Every call is authorised by the caller's certificate CN:
``GetPublicContext`` for identities on the allowlist, ``DecryptAggregate`` for the server identity only,
then the policy (``secure_mor.crypto.policy``). Refusals are answered with a precise status and written
to the service log; decryptions are appended to the signed decryption log before the values are sent.
When that append fails (disk full, file-size limit, read-only folder) no value is sent: the call is
answered ``RESOURCE_EXHAUSTED`` (no space) or ``UNAVAILABLE`` (any other write error) naming the log
file, the step id stays undecrypted (it may be retried once the disk is fixed) and the log is unchanged.
A service log that cannot be written never fails a call: the line goes to stderr instead.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from secure_mor import protocol as pb
from secure_mor.crypto.ckks import SecretContext
from secure_mor.crypto.errors import CryptoError, LogWriteError, PolicyRefusal
from secure_mor.crypto.keyholder_config import KeyholderConfig
from secure_mor.crypto.kit import load_trust
from secure_mor.crypto.policy import check_request
from secure_mor.crypto.signed_log import SignedLog
from secure_mor.crypto.signing import SigningKey
from secure_mor.crypto.transport import message_options, peer_identity, server_credentials
from secure_mor.crypto.wire import public_context_to_proto
from secure_mor.protocol.parsing import bounded

LOGGER = logging.getLogger("secure_mor.keyholder")
DECRYPTION = "decryption"
NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class ServiceLog:
    """Plain-text service log (starts, refusals, decryptions); never holds key material or values."""

    def __init__(self, config: KeyholderConfig) -> None:
        self.path = config.storage.service_log
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LogWriteError(
                f"{self.path.parent}: cannot create the log folder: {error.strerror}"
            ) from None
        self._lock = threading.Lock()

    def write(self, level: int, message: str) -> None:
        """Append one timestamped line and pass it on to the ``secure_mor.keyholder`` logger."""
        LOGGER.log(level, message)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as file:
                file.write(f"{stamp} {logging.getLevelName(level)} {message}\n")
        except OSError as error:  # the line reached stderr above; a full disk must not fail the call
            LOGGER.error("cannot write the service log %s: %s", self.path, error.strerror or error)


class KeyHolderService(pb.KeyHolderServicer):
    """The servicer; thread-safe (one lock serialises policy check, decryption and log append)."""

    def __init__(
        self, config: KeyholderConfig, secret: SecretContext, signing: SigningKey, log: SignedLog
    ) -> None:
        self.config, self._secret, self._log = config, secret, log
        self._signed_public = public_context_to_proto(secret.sign_public(signing))
        self._pinned = load_trust(config.federation.trust)
        self._decrypted = {e.payload["step_id"] for e in log.entries if e.kind == DECRYPTION}
        self._lock = threading.Lock()
        self.service_log = ServiceLog(config)

    def GetPublicContext(  # noqa: N802
        self, request: pb.GetPublicContextRequest | pb.Unparsable, context: grpc.ServicerContext
    ) -> Any:
        """Return the signed public context to any allowlisted identity."""
        identity = self._authorise(context, "GetPublicContext")
        if isinstance(request, pb.Unparsable):
            malformed = PolicyRefusal("INVALID_ARGUMENT", "malformed", request.describe())
            self._refuse(context, identity, malformed, method="GetPublicContext")
        return self._signed_public

    def DecryptAggregate(  # noqa: N802
        self, request: pb.DecryptAggregateRequest | pb.Unparsable, context: grpc.ServicerContext
    ) -> Any:
        """Decrypt a fused vector for the server identity if the policy allows; log it first."""
        identity = self._authorise(context, "DecryptAggregate")
        policy = self.config.policy
        step = request.step_id if isinstance(request, pb.DecryptAggregateRequest) else ""
        if identity != policy.server_identity:
            refusal = PolicyRefusal(
                "PERMISSION_DENIED", "caller", f"only {policy.server_identity!r} may decrypt"
            )
            self._refuse(context, identity, refusal, step)
        if isinstance(request, pb.Unparsable):
            self._refuse(
                context, identity, PolicyRefusal("INVALID_ARGUMENT", "malformed", request.describe())
            )
        with self._lock:
            try:
                approved = check_request(
                    request,
                    policy=policy,
                    fingerprint=self._secret.public.fingerprint,
                    slots=self._secret.params.slots,
                    pinned=self._pinned,
                    decrypted=self._decrypted,
                )
                values = self._secret.decrypt(approved.vector)
            except PolicyRefusal as refusal:
                self._refuse(context, identity, refusal, request.step_id)
            except CryptoError as error:
                malformed = PolicyRefusal("INVALID_ARGUMENT", "malformed", str(error))
                self._refuse(context, identity, malformed, request.step_id)
            payload = {
                "step_id": approved.step_id,
                "requested_by": identity,
                "contributors": [who for who, _ in approved.contributors],
                "ciphertext_digests": dict(approved.contributors),
                "max_weight": approved.max_weight,
                "count": approved.count,
                "policy": {"k_min": policy.k_min, "w_max": policy.w_max},
                "context_fingerprint": self._secret.public.fingerprint.hex(),
                "ckks": self._secret.params.to_json(),
            }
            try:
                entry = self._log.append(DECRYPTION, payload)
            except LogWriteError as error:
                code = "RESOURCE_EXHAUSTED" if error.errno in NO_SPACE else "UNAVAILABLE"
                failed = PolicyRefusal(code, "log", f"{error}; no value was released")
                self._refuse(context, identity, failed, request.step_id)
            self._decrypted.add(approved.step_id)
        self.service_log.write(
            logging.INFO,
            f"decrypted step={approved.step_id!r} for {identity!r}: {approved.count} values, "
            f"{len(approved.contributors)} contributors, max weight {approved.max_weight:.4g}, "
            f"log seq {entry.seq}",
        )
        return pb.DecryptAggregateResponse(
            step_id=approved.step_id,
            values=values.tolist(),
            log_seq=entry.seq,
            log_entry_hash=entry.line_hash,
        )

    def _authorise(self, context: grpc.ServicerContext, method: str) -> str:
        identity = peer_identity(context)
        if identity is None or identity not in self.config.policy.allowed_identities:
            refusal = PolicyRefusal(
                "PERMISSION_DENIED", "identity", f"identity {identity!r} is not on the allowlist"
            )
            self._refuse(context, identity, refusal, method=method)
        assert identity is not None
        return identity

    def _refuse(
        self,
        context: grpc.ServicerContext,
        identity: str | None,
        refusal: PolicyRefusal,
        step_id: str = "",
        method: str = "DecryptAggregate",
    ) -> NoReturn:
        details = bounded(str(refusal))
        self.service_log.write(
            logging.WARNING,
            f"refused {method} from {identity!r} step={step_id[:128]!r} rule={refusal.rule} "
            f"status={refusal.code}: {details}",
        )
        context.abort(grpc.StatusCode[refusal.code], details)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


@dataclass
class RunningKeyholder:
    """A started key holder: its gRPC server, bound port and servicer."""

    server: grpc.Server
    port: int
    service: KeyHolderService

    def stop(self, grace: float | None = None) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds) and close the decryption log."""
        self.server.stop(grace).wait()
        self.service._log.close()


def load_or_create_secret(config: KeyholderConfig, service_log: ServiceLog) -> SecretContext:
    """Load the CKKS secret context, or generate and save one (0600) when the file does not exist yet."""
    path = config.storage.secret_context
    if path.exists():
        return SecretContext.load(path, config.ckks)
    secret = SecretContext.generate(config.ckks)
    secret.save(path)
    service_log.write(logging.WARNING, f"generated a new CKKS key pair in {path} ({config.ckks.to_json()})")
    return secret


def start_keyholder(config: KeyholderConfig) -> RunningKeyholder:
    """Load keys and logs, then serve the key holder with mTLS on ``config.service.listen``."""
    signing = SigningKey.load(config.federation.identity, config.federation.signing_key)
    service_log = ServiceLog(config)
    if config.policy.insecure:
        service_log.write(
            logging.WARNING,
            f"INSECURE POLICY: k_min={config.policy.k_min}, w_max={config.policy.w_max} let a single "
            "client's scores be decrypted; use k_min ≥ 2 and w_max < 1 outside experiments",
        )
    secret = load_or_create_secret(config, service_log)
    log = SignedLog(config.storage.decryption_log, signing)
    service = KeyHolderService(config, secret, signing, log)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.service.workers),
        options=message_options(config.service.max_message_bytes),
    )
    pb.add_keyholder_servicer(service, server)
    try:
        port = server.add_secure_port(config.service.listen, server_credentials(config.federation.tls))
    except RuntimeError:
        port = 0
    if port == 0:
        log.close()
        raise CryptoError(f"service.listen: cannot listen on {config.service.listen} (in use or not local?)")
    server.start()
    service.service_log.write(
        logging.INFO,
        f"key holder listening on {config.service.listen} (port {port}); public context "
        f"{secret.public.fingerprint.hex()[:16]}…; k_min={config.policy.k_min} w_max={config.policy.w_max}; "
        f"{len(log.entries)} decryption(s) in the log",
    )
    return RunningKeyholder(server, port, service)
