"""The scoring agent (``secure-mor client join``): connects OUT to the server and scores its rollouts.

Run: ``ScoringAgent(config, model).run()``. It

1. fetches the key holder's public CKKS context (``KeyHolder.GetPublicContext`` over mTLS) and verifies
   its signature against the key holder key pinned in ``trust.toml``; a context signed by anyone else,
   or altered, is refused and the agent stops — it never scores under an unverified context;
2. opens ONE outbound mTLS stream to the server's ``Federation.Connect`` (the client accepts no inbound
   connections), says ``Hello`` — announcing its privacy ledger's head, signed (read and verified again
   for every stream; a ledger that does not verify stops the agent; no ledger yet: no announcement) —
   and expects a ``Roster`` whose context fingerprint matches its own;
3. answers each ``ScoringTask`` with one encrypted, signed ``ScoreReply`` (or an ``Error`` naming the
   refused rule, see ``secure_mor.client.tasks``), each ``CalibrationRequest`` with per-cluster
   accuracy, and sends a ``Heartbeat`` every ``agent.heartbeat_seconds``;
4. reconnects after a lost stream with exponential backoff (``reconnect_initial_seconds`` doubling to
   ``reconnect_max_seconds``, with jitter), and stops cleanly when ``stop`` is set (SIGINT/SIGTERM in
   the CLI): the stream is cancelled and the channel closed.

A reward model trained without DP is refused unless ``agent.allow_non_private`` is set (loudly).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc

from secure_mor import protocol as pb
from secure_mor.client.config import ClientConfig
from secure_mor.client.errors import RewardModelError
from secure_mor.client.ledger import ledger_head
from secure_mor.client.reward_model import RewardModel
from secure_mor.client.tasks import Refusal, answer_calibration, score_task
from secure_mor.crypto.ckks import PublicContext
from secure_mor.crypto.errors import KitError
from secure_mor.crypto.kit import KEYHOLDER_IDENTITY, load_trust
from secure_mor.crypto.signing import SigningKey
from secure_mor.crypto.transport import secure_channel
from secure_mor.crypto.wire import public_context_from_proto
from secure_mor.protocol import scoring as sp

LOGGER = logging.getLogger("secure_mor.client.agent")
RPC_TIMEOUT = 30.0


class ScoringAgent:
    """One client's agent: holds its reward model, signing key, pinned keys and verified context."""

    def __init__(self, config: ClientConfig, model: RewardModel, stop: threading.Event | None = None) -> None:
        if not model.private:
            if not config.agent.allow_non_private:
                raise RewardModelError(
                    "the reward model was trained WITHOUT differential privacy (--epsilon inf); the agent "
                    "refuses to score with it. Train with a finite ε, or set agent.allow_non_private = true "
                    "for an experiment (insecure)."
                )
            LOGGER.warning("INSECURE: scoring with a reward model trained without differential privacy")
        self.config, self.model = config, model
        self.stop = stop or threading.Event()
        self.signer = SigningKey.load(config.federation.identity, config.federation.signing_key)
        pinned = load_trust(config.federation.trust)
        if KEYHOLDER_IDENTITY not in pinned:
            raise KitError(f"{config.federation.trust}: no pinned signing key for {KEYHOLDER_IDENTITY!r}")
        self.keyholder_key = pinned[KEYHOLDER_IDENTITY]
        self.public: PublicContext | None = None
        self.tasks_scored = 0

    def fetch_public_context(self) -> PublicContext:
        """Fetch the key holder's public context and verify it against the pinned key (raises if not)."""
        federation = self.config.federation
        channel = secure_channel(
            federation.keyholder_address, federation.tls, self.config.agent.max_message_bytes
        )
        try:
            message = pb.keyholder_stub(channel).GetPublicContext(
                pb.GetPublicContextRequest(), timeout=RPC_TIMEOUT
            )
        finally:
            channel.close()
        public = public_context_from_proto(message).verify(self.keyholder_key)
        LOGGER.info("verified the key holder's public context %s…", public.fingerprint.hex()[:16])
        return public

    def run(self, max_failures: int | None = None) -> None:
        """Serve until ``stop`` is set; reconnect with backoff; re-raise after ``max_failures`` in a row."""
        agent = self.config.agent
        delay, failures = agent.reconnect_initial_seconds, 0
        while not self.stop.is_set():
            try:
                if self.public is None:
                    self.public = self.fetch_public_context()  # a verification failure propagates: stop
                if self.session():
                    delay, failures = agent.reconnect_initial_seconds, 0
            except grpc.RpcError as error:
                failures += 1
                LOGGER.warning("connection failed (%s): %s", error.code(), error.details())
                if max_failures is not None and failures >= max_failures:
                    raise
            if self.stop.wait(delay * random.uniform(0.8, 1.2)):
                break
            delay = min(2 * delay, agent.reconnect_max_seconds)

    def session(self) -> bool:
        """One stream to the server until it ends or ``stop``; return whether the server sent a roster."""
        assert self.public is not None
        federation, agent = self.config.federation, self.config.agent
        hello = sp.Hello(
            identity=federation.identity,
            protocol_version=sp.PROTOCOL_VERSION,
            architecture=self.model.architecture,
            max_rollouts=agent.max_rollouts,
            context_fingerprint=self.public.fingerprint,
            private=self.model.private,
        )
        head = ledger_head(self.config.privacy.ledger, self.signer)
        if head is None:
            LOGGER.warning(
                "no privacy ledger at %s: joining without announcing its head", self.config.privacy.ledger
            )
        else:
            hello.ledger_head.CopyFrom(head.to_proto())
        channel = secure_channel(federation.server_address, federation.tls, agent.max_message_bytes)
        outgoing: queue.Queue[sp.ClientMessage | None] = queue.Queue()
        done = threading.Event()
        outgoing.put(sp.ClientMessage(hello=hello))

        def requests() -> Iterator[sp.ClientMessage]:
            while (item := outgoing.get()) is not None:
                yield item

        call = sp.federation_stub(channel).Connect(requests())
        threading.Thread(target=self._heartbeats, args=(outgoing, done), daemon=True).start()
        threading.Thread(target=self._cancel_on_stop, args=(call, done), daemon=True).start()
        got_roster = False
        try:
            for message in call:
                kind = message.WhichOneof("body")
                if kind == "roster":
                    got_roster = self._roster(message.roster, outgoing)
                    if not got_roster:
                        break
                elif kind == "task":
                    outgoing.put(self._task(message.task))
                elif kind == "calibration":
                    outgoing.put(self._calibration(message.calibration))
                elif kind == "error":
                    LOGGER.warning("server error %s: %s", message.error.code, message.error.message)
        except grpc.RpcError as error:
            if not (self.stop.is_set() and error.code() == grpc.StatusCode.CANCELLED):
                raise
        finally:
            done.set()
            outgoing.put(None)
            channel.close()
        return got_roster

    def _roster(self, roster: sp.Roster, outgoing: queue.Queue[sp.ClientMessage | None]) -> bool:
        assert self.public is not None
        if roster.context_fingerprint and roster.context_fingerprint != self.public.fingerprint:
            LOGGER.error("the server fuses under another public context than the key holder's: leaving")
            error = sp.Error(code="CONTEXT_MISMATCH", message="roster context fingerprint differs from ours")
            outgoing.put(sp.ClientMessage(error=error))
            return False
        LOGGER.info("joined run %r with %d client(s)", roster.run_id, len(roster.clients))
        return True

    def _task(self, task: sp.ScoringTask) -> sp.ClientMessage:
        assert self.public is not None
        agent = self.config.agent
        try:
            reply = score_task(
                task,
                model=self.model,
                public=self.public,
                signer=self.signer,
                max_rollouts=agent.max_rollouts,
                max_image_bytes=agent.max_image_bytes,
            )
        except Refusal as refusal:
            LOGGER.warning("refused task %r: %s", task.step_id[:128], refusal)
            return sp.ClientMessage(
                error=sp.Error(step_id=task.step_id[:128], code=refusal.code, message=refusal.detail)
            )
        self.tasks_scored += 1
        return sp.ClientMessage(score=reply)

    def _calibration(self, request: sp.CalibrationRequest) -> sp.ClientMessage:
        agent = self.config.agent
        try:
            reply = answer_calibration(
                request, model=self.model, max_items=agent.max_rollouts, max_image_bytes=agent.max_image_bytes
            )
        except Refusal as refusal:
            error = sp.Error(step_id=request.request_id[:128], code=refusal.code, message=refusal.detail)
            return sp.ClientMessage(error=error)
        return sp.ClientMessage(calibration=reply)

    def _heartbeats(self, outgoing: queue.Queue[sp.ClientMessage | None], done: threading.Event) -> None:
        while not done.wait(self.config.agent.heartbeat_seconds):
            outgoing.put(sp.ClientMessage(heartbeat=sp.Heartbeat(sent_unix_ms=int(time.time() * 1000))))

    def _cancel_on_stop(self, call: grpc.Future[Any], done: threading.Event) -> None:
        while not done.is_set():
            if self.stop.wait(0.1):
                call.cancel()
                return
