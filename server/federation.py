"""The server's ``Federation`` service: clients connect in over mTLS and hold one stream each.

``FederationService.Connect`` authenticates the caller by its certificate CN against the allowlist,
expects ``Hello`` first (same identity, same public-context fingerprint, protocol 1), answers with the
``Roster`` and then forwards whatever the server queues for that client (scoring tasks, calibration
requests, heartbeats). ``score`` sends one task to every online client and waits until each answered or
the deadline passed; every answer is verified before it counts — step id, ciphertext under the key
holder's context and of the right length, the contributor's identity and its Ed25519 signature over
(step id, digest of its own ciphertext). The server never sees a plaintext score.

A Hello may announce the client's privacy-ledger head (``Hello.ledger_head``): it must be well formed and
signed by the client's pinned key, or the Hello is refused. Each accepted Hello is passed to ``on_join``
(the run's anchors log records it, for the audit) before the client joins the roster; when that record
cannot be written the stream is refused with UNAVAILABLE and the roster stays as it was.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures as _futures
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import grpc

from secure_mor.anchors import ClientJoined, LedgerHead
from secure_mor.crypto.ckks import PublicContext
from secure_mor.crypto.errors import CryptoError
from secure_mor.crypto.kit import TlsFiles
from secure_mor.crypto.signing import VerifyKey, contribution_message
from secure_mor.crypto.transport import message_options, peer_identity, server_credentials
from secure_mor.crypto.wire import vector_from_proto
from secure_mor.protocol import scoring as sp
from secure_mor.protocol.parsing import Unparsable, bounded, excerpt
from secure_mor.server.errors import ServerError
from secure_mor.server.fusion import EncryptedScores

LOGGER = logging.getLogger("secure_mor.server")


@dataclass(frozen=True)
class ScoringOutcome:
    """The verified answers to one task, and why each other online client does not count."""

    step_id: str
    answers: tuple[EncryptedScores, ...]
    refused: Mapping[str, str] = field(default_factory=dict)
    client_seconds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Per contributor, its own report of (scoring, encryption + signing) seconds."""

    @property
    def contributors(self) -> tuple[str, ...]:
        """Identities whose verified answer counts."""
        return tuple(a.identity for a in self.answers)


@dataclass
class _Connection:
    identity: str
    hello: sp.Hello
    outbox: queue.Queue[sp.ServerMessage | None] = field(default_factory=queue.Queue)
    pending: dict[str, Future[Any]] = field(default_factory=dict)
    last_seen: float = field(default_factory=time.monotonic)
    closed: bool = False
    violation: tuple[grpc.StatusCode, str] | None = None
    """Set by the reader when the client sent a message that breaks the protocol: the status to end with."""


def _violation(message: sp.ClientMessage | Unparsable) -> tuple[grpc.StatusCode, str] | None:
    """The status that ends a stream on ``message`` after Hello, or ``None`` when the message is fine.

    Answers for unknown step or request ids (e.g. past their deadline) are fine: they are ignored.
    """
    if isinstance(message, Unparsable):
        return grpc.StatusCode.INVALID_ARGUMENT, message.describe()
    kind = message.WhichOneof("body")
    if kind is None:
        return grpc.StatusCode.INVALID_ARGUMENT, "a ClientMessage must carry one of its body fields"
    if kind == "hello":
        return grpc.StatusCode.FAILED_PRECONDITION, "Hello was already received on this stream"
    return None


def _announced_head(hello: sp.Hello) -> LedgerHead | None:
    """The ledger head a Hello announces (``None``: none); ``ValueError`` when it is malformed."""
    return LedgerHead.from_proto(hello.ledger_head) if hello.HasField("ledger_head") else None


class FederationService(sp.FederationServicer):
    """Roster, task fan-out and answer verification for one run."""

    def __init__(
        self,
        *,
        run_id: str,
        allowed: Sequence[str],
        public: PublicContext,
        pinned: Mapping[str, VerifyKey],
        heartbeat_seconds: float = 5.0,
        on_join: Callable[[ClientJoined], None] | None = None,
    ) -> None:
        self.run_id, self.allowed, self.public, self.pinned = run_id, frozenset(allowed), public, pinned
        self.heartbeat_seconds, self.on_join = heartbeat_seconds, on_join
        self._lock = threading.Lock()
        self._connections: dict[str, _Connection] = {}
        self._joined = threading.Condition(self._lock)

    # --- the stream ---------------------------------------------------------------------------------

    def Connect(  # noqa: N802
        self, request_iterator: Iterator[sp.ClientMessage | Unparsable], context: grpc.ServicerContext
    ) -> Iterator[sp.ServerMessage]:
        """Authenticate, take the client's ``Hello``, then stream it tasks until either side stops."""
        identity = peer_identity(context)
        if identity is None or identity not in self.allowed:
            LOGGER.warning("refused a connection from %r: not on the allowlist", identity)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"identity {identity!r} is not on the allowlist")
        try:
            first = next(request_iterator, None)
        except grpc.RpcError:  # the caller cancelled (or its deadline passed) before saying Hello
            LOGGER.warning("%r left before sending Hello", identity)
            return
        code, problem = self._check_hello(identity, first)
        if problem:
            LOGGER.warning("refused %r (%s): %s", identity, code.name, problem)
            context.abort(code, problem)
        assert isinstance(first, sp.ClientMessage)
        assert identity is not None
        if self.on_join is not None:
            try:
                self.on_join(ClientJoined(identity, _announced_head(first.hello)))
            except ServerError as error:
                LOGGER.error("refused %r: %s", identity, error)
                context.abort(grpc.StatusCode.UNAVAILABLE, bounded(str(error)))
        connection = self._register(identity, first.hello)
        # gRPC stops resuming this generator when the RPC dies between two messages (a cancel, a message
        # above the size cap): the ``finally`` below would then wait for garbage collection and the client
        # would stay on the roster. The termination callback always runs.
        context.add_callback(lambda: self._unregister(connection))
        reader = threading.Thread(target=self._read, args=(connection, request_iterator), daemon=True)
        reader.start()
        yield sp.ServerMessage(
            roster=sp.Roster(
                run_id=self.run_id,
                clients=sorted(self.online()),
                heartbeat_seconds=self.heartbeat_seconds,
                context_fingerprint=self.public.fingerprint,
            )
        )
        try:
            yield from self._forward(connection, context)
        finally:
            self._unregister(connection)
        if connection.violation is not None:  # the reader stopped at a message that breaks the protocol
            context.abort(*connection.violation)

    def _check_hello(
        self, identity: str | None, first: sp.ClientMessage | Unparsable | None
    ) -> tuple[grpc.StatusCode, str]:
        failed = grpc.StatusCode.FAILED_PRECONDITION
        if isinstance(first, Unparsable):
            return grpc.StatusCode.INVALID_ARGUMENT, first.describe()
        if first is None or first.WhichOneof("body") != "hello":
            return failed, "the first message of a stream must be Hello"
        hello = first.hello
        if hello.identity != identity:
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"Hello.identity {excerpt(hello.identity)} differs from the certificate's {identity!r}",
            )
        if hello.protocol_version != sp.PROTOCOL_VERSION:
            return failed, (
                f"protocol_version {hello.protocol_version} is not supported (expected {sp.PROTOCOL_VERSION})"
            )
        if hello.context_fingerprint != self.public.fingerprint:
            return failed, "the client encrypts under another public context than the server fuses under"
        try:
            head = _announced_head(hello)
        except ValueError as error:
            return grpc.StatusCode.INVALID_ARGUMENT, f"Hello.ledger_head.{error}"
        if head is not None:
            key = self.pinned.get(hello.identity)
            if key is None or not head.verifies(key):
                return grpc.StatusCode.PERMISSION_DENIED, (
                    f"Hello.ledger_head: the signature over (seq {head.seq}, hash {head.entry_hash[:16]}…) "
                    f"does not verify against the pinned key of {hello.identity!r}"
                )
        return grpc.StatusCode.OK, ""

    def _register(self, identity: str, hello: sp.Hello) -> _Connection:
        connection = _Connection(identity, hello)
        with self._lock:
            old = self._connections.get(identity)
            if old is not None:
                old.outbox.put(None)  # a reconnect replaces the previous stream
            self._connections[identity] = connection
            self._joined.notify_all()
        LOGGER.info(
            "client %s joined (%s, max %d rollouts)",
            identity,
            excerpt(hello.architecture),
            hello.max_rollouts,
        )
        return connection

    def _unregister(self, connection: _Connection) -> None:
        with self._lock:
            if connection.closed:
                return
            connection.closed = True
            if self._connections.get(connection.identity) is connection:
                del self._connections[connection.identity]
        connection.outbox.put(None)
        for future in connection.pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{connection.identity} disconnected"))
        LOGGER.info("client %s left", connection.identity)

    def _forward(self, connection: _Connection, context: grpc.ServicerContext) -> Iterator[sp.ServerMessage]:
        while context.is_active():
            try:
                message = connection.outbox.get(timeout=self.heartbeat_seconds)
            except queue.Empty:
                if time.monotonic() - connection.last_seen > 3 * self.heartbeat_seconds:
                    LOGGER.warning("client %s missed its heartbeats: dropped", connection.identity)
                    return
                yield sp.ServerMessage(heartbeat=sp.Heartbeat(sent_unix_ms=int(time.time() * 1000)))
                continue
            if message is None:
                return
            yield message

    def _read(
        self, connection: _Connection, request_iterator: Iterator[sp.ClientMessage | Unparsable]
    ) -> None:
        try:
            for message in request_iterator:
                connection.last_seen = time.monotonic()
                if violation := _violation(message):
                    connection.violation = violation
                    LOGGER.warning(
                        "client %s broke the protocol (%s): %s; its stream is closed",
                        connection.identity,
                        violation[0].name,
                        violation[1],
                    )
                    return
                assert isinstance(message, sp.ClientMessage)
                kind = message.WhichOneof("body")
                key = {
                    "score": message.score.step_id,
                    "calibration": message.calibration.request_id,
                    "error": message.error.step_id,
                }.get(kind or "", "")
                future = connection.pending.get(key)
                if future is not None and not future.done():
                    future.set_result(message)
        except grpc.RpcError:
            pass  # the stream ended; _forward notices and unregisters
        finally:
            connection.outbox.put(None)

    # --- what the trainer calls ---------------------------------------------------------------------

    def online(self) -> tuple[str, ...]:
        """Identities with an open stream, sorted."""
        with self._lock:
            return tuple(sorted(self._connections))

    def wait_for(self, count: int, timeout: float) -> tuple[str, ...]:
        """Block until at least ``count`` clients are online or ``timeout`` passes; return who is online."""
        deadline = time.monotonic() + timeout
        with self._joined:
            while len(self._connections) < count and (left := deadline - time.monotonic()) > 0:
                self._joined.wait(left)
            return tuple(sorted(self._connections))

    def score(self, task: sp.ScoringTask, deadline_seconds: float) -> ScoringOutcome:
        """Send ``task`` to every online client; return the verified answers received before the deadline."""
        replies = self._ask(task.step_id, sp.ServerMessage(task=task), deadline_seconds)
        answers, refused, seconds = [], {}, {}
        for identity, reply in replies.items():
            if isinstance(reply, str):
                refused[identity] = reply
                continue
            try:
                answers.append(self._verify(identity, task, reply))
                seconds[identity] = (reply.score.score_seconds, reply.score.encrypt_seconds)
            except ValueError as error:
                refused[identity] = str(error)
                LOGGER.warning("step %s: answer of %s refused: %s", task.step_id, identity, error)
        return ScoringOutcome(
            task.step_id, tuple(sorted(answers, key=lambda a: a.identity)), refused, seconds
        )

    def calibrate(
        self, request: sp.CalibrationRequest, deadline_seconds: float
    ) -> dict[str, sp.CalibrationReply]:
        """Ask every online client for its per-cluster accuracy on the public calibration pairs."""
        replies = self._ask(request.request_id, sp.ServerMessage(calibration=request), deadline_seconds)
        return {
            identity: reply.calibration
            for identity, reply in replies.items()
            if not isinstance(reply, str) and reply.WhichOneof("body") == "calibration"
        }

    def _ask(self, key: str, message: sp.ServerMessage, deadline_seconds: float) -> dict[str, Any]:
        with self._lock:
            connections = list(self._connections.values())
        futures: dict[str, Future[Any]] = {}
        for connection in connections:
            future: Future[Any] = Future()
            connection.pending[key] = future
            futures[connection.identity] = future
            connection.outbox.put(message)
        deadline = time.monotonic() + deadline_seconds
        out: dict[str, Any] = {}
        for connection in connections:
            future = futures[connection.identity]
            try:
                out[connection.identity] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                out[connection.identity] = f"no answer within {deadline_seconds:g} s"
            except ConnectionError as error:
                out[connection.identity] = str(error)
            finally:
                connection.pending.pop(key, None)
        return out

    def _verify(self, identity: str, task: sp.ScoringTask, reply: sp.ClientMessage) -> EncryptedScores:
        if reply.WhichOneof("body") == "error":
            raise ValueError(f"client refused the task: {reply.error.code}: {reply.error.message}")
        score = reply.score
        try:
            vector = vector_from_proto(score.scores)
        except CryptoError as error:
            raise ValueError(str(error)) from None
        if vector.fingerprint != self.public.fingerprint:
            raise ValueError("ciphertext is under another public context")
        if vector.length != len(task.rollouts):
            raise ValueError(f"{vector.length} scores for {len(task.rollouts)} rollouts")
        contribution = score.contribution
        if contribution.identity != identity or contribution.ciphertext_digest != vector.digest():
            raise ValueError("the contribution does not name this client and this ciphertext")
        key = self.pinned.get(identity)
        message = contribution_message(task.step_id, vector.digest())
        if key is None or not key.verify(bytes(contribution.signature), message):
            raise ValueError("the signature over (step id, ciphertext digest) does not verify")
        return EncryptedScores(identity, vector, contribution)


@dataclass
class RunningFederation:
    """A started federation endpoint: its gRPC server, bound port and service."""

    server: grpc.Server
    port: int
    service: FederationService

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; open streams end (clients reconnect with backoff to a restarted server)."""
        self.server.stop(grace).wait()


def serve_federation(
    service: FederationService, *, listen: str, tls: TlsFiles, max_message_bytes: int, max_clients: int
) -> RunningFederation:
    """Serve ``service`` with mTLS on ``listen``; every connected client holds one worker thread."""
    server = grpc.server(
        _futures.ThreadPoolExecutor(max_workers=max_clients + 4),
        options=message_options(max_message_bytes),
        maximum_concurrent_rpcs=max_clients,
    )
    sp.add_federation_servicer(service, server)
    try:
        port = server.add_secure_port(listen, server_credentials(tls))
    except RuntimeError:
        port = 0
    if port == 0:
        raise ServerError(f"service.listen: cannot listen on {listen} (in use or not local?)")
    server.start()
    LOGGER.info("federation service listening on %s (port %d)", listen, port)
    return RunningFederation(server, port, service)
