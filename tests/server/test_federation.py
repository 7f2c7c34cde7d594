"""The server's Federation service over real mTLS: roster, fan-out, verified answers, refusals.

The clients here speak the wire protocol directly (real TenSEAL encryption, real Ed25519 signatures)
so that each can misbehave in one precise way; the real scoring agent is tested in tests/client.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from secure_mor.anchors import ClientJoined, LedgerHead
from secure_mor.crypto.ckks import PublicContext
from secure_mor.crypto.keyholder import RunningKeyholder
from secure_mor.crypto.kit import load_trust
from secure_mor.crypto.provision import Federation
from secure_mor.crypto.transport import secure_channel
from secure_mor.crypto.wire import sign_contribution, vector_to_proto
from secure_mor.protocol import scoring as sp
from secure_mor.server.errors import ServerError
from secure_mor.server.federation import FederationService, RunningFederation, serve_federation

from ..crypto.conftest import client_key, fetch_public, kit_tls


class WireClient:
    """A client that connects, says Hello and answers tasks with ``scores`` (or misbehaves)."""

    def __init__(
        self,
        federation: Federation,
        party: str,
        port: int,
        public: PublicContext,
        identity: str,
        head: LedgerHead | None = None,
    ) -> None:
        self.federation, self.identity, self.public = federation, identity, public
        self.outbox: queue.Queue[sp.ClientMessage | None] = queue.Queue()
        channel = secure_channel(f"127.0.0.1:{port}", kit_tls(federation.root, party))
        self.stream = sp.federation_stub(channel).Connect(self._messages())
        hello = sp.Hello(
            identity=identity,
            protocol_version=1,
            architecture="test",
            max_rollouts=64,
            context_fingerprint=public.fingerprint,
            private=True,
        )
        if head is not None:
            hello.ledger_head.CopyFrom(head.to_proto())
        self.outbox.put(sp.ClientMessage(hello=hello))
        self.roster = next(self.stream).roster

    def _messages(self) -> Iterator[sp.ClientMessage]:
        while (message := self.outbox.get()) is not None:
            yield message

    def answer(
        self, scores: np.ndarray, *, sign_as: str | None = None, step: str | None = None
    ) -> threading.Thread:
        """Answer the next task in the background (with a wrong signer or step id if asked)."""

        def run() -> None:
            for message in self.stream:
                if message.WhichOneof("body") != "task":
                    continue
                vector = self.public.encrypt(scores)
                key = client_key(self.federation, (sign_as or self.identity).removeprefix("client:"))
                step_id = step or message.task.step_id
                self.outbox.put(
                    sp.ClientMessage(
                        score=sp.ScoreReply(
                            step_id=message.task.step_id,
                            scores=vector_to_proto(vector),
                            contribution=sign_contribution(key, step_id, vector),
                        )
                    )
                )
                return

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.outbox.put(None)


class Joins:
    """Stands in for the run's anchors log as ``on_join``: records joins, or fails for ``unwritable``."""

    def __init__(self) -> None:
        self.recorded: list[ClientJoined] = []
        self.unwritable: set[str] = set()

    def __call__(self, join: ClientJoined) -> None:
        if join.client in self.unwritable:
            raise ServerError("run/anchors.jsonl: cannot append entry seq 3: No space left on device")
        self.recorded.append(join)


@pytest.fixture
def joins() -> Joins:
    return Joins()


@pytest.fixture
def service(federation: Federation, keyholder: RunningKeyholder, joins: Joins) -> Iterator[RunningFederation]:
    public = fetch_public(federation, keyholder.port)
    pinned = load_trust(federation.root / "server" / "trust.toml")

    svc = FederationService(
        run_id="run-test",
        allowed=[f"client:{n}" for n in ("alice", "bob", "carol")],
        public=public,
        pinned=pinned,
        heartbeat_seconds=1.0,
        on_join=joins,
    )
    running = serve_federation(
        svc,
        listen="127.0.0.1:0",
        tls=kit_tls(federation.root, "server"),
        max_message_bytes=8 << 20,
        max_clients=8,
    )
    yield running
    running.stop(None)


def task(step: str, n: int = 6) -> sp.ScoringTask:
    return sp.ScoringTask(
        step_id=step,
        rollouts=[sp.Rollout(image_ref="0", question="q?", answer="a")] * n,
        images={"0": b"png"},
    )


def test_clients_join_and_verified_answers_are_collected(
    federation: Federation, keyholder: RunningKeyholder, service: RunningFederation
) -> None:
    public = fetch_public(federation, keyholder.port)
    alice = WireClient(federation, "clients/alice", service.port, public, "client:alice")
    bob = WireClient(federation, "clients/bob", service.port, public, "client:bob")
    assert alice.roster.run_id == "run-test"
    assert service.service.wait_for(2, timeout=10) == ("client:alice", "client:bob")
    alice.answer(np.full(6, 0.25))
    bob.answer(np.full(6, 0.75))
    outcome = service.service.score(task("run-test/0"), deadline_seconds=20)
    assert outcome.contributors == ("client:alice", "client:bob")
    assert not outcome.refused
    assert all(a.vector.length == 6 for a in outcome.answers)
    alice.close()
    bob.close()


def test_a_wrong_signature_or_step_does_not_count(
    federation: Federation, keyholder: RunningKeyholder, service: RunningFederation
) -> None:
    public = fetch_public(federation, keyholder.port)
    alice = WireClient(federation, "clients/alice", service.port, public, "client:alice")
    bob = WireClient(federation, "clients/bob", service.port, public, "client:bob")
    carol = WireClient(federation, "clients/carol", service.port, public, "client:carol")
    service.service.wait_for(3, timeout=10)
    alice.answer(np.full(6, 0.5))
    bob.answer(np.full(6, 0.5), sign_as="client:carol")  # bob signs with carol's key
    carol.answer(np.full(6, 0.5), step="run-test/other")  # a signature for another step
    outcome = service.service.score(task("run-test/1"), deadline_seconds=20)
    assert outcome.contributors == ("client:alice",)
    assert "does not name this client" in outcome.refused["client:bob"]
    assert "signature over (step id, ciphertext digest) does not verify" in outcome.refused["client:carol"]
    for c in (alice, bob, carol):
        c.close()


def test_a_silent_client_misses_the_deadline(
    federation: Federation, keyholder: RunningKeyholder, service: RunningFederation
) -> None:
    public = fetch_public(federation, keyholder.port)
    alice = WireClient(federation, "clients/alice", service.port, public, "client:alice")
    service.service.wait_for(1, timeout=10)
    outcome = service.service.score(task("run-test/2"), deadline_seconds=0.5)
    assert outcome.answers == ()
    assert outcome.refused == {"client:alice": "no answer within 0.5 s"}
    alice.close()


def test_a_party_that_is_not_an_allowed_client_is_refused(
    federation: Federation, keyholder: RunningKeyholder, service: RunningFederation
) -> None:
    public = fetch_public(federation, keyholder.port)
    with pytest.raises(grpc.RpcError) as refused:
        # The server's own certificate (it has clientAuth) is valid but "server" is not an allowed client.
        WireClient(federation, "server", service.port, public, "server")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'server' is not on the allowlist" in (refused.value.details() or "")


def test_a_certificate_from_another_ca_cannot_connect(
    foreign_federation: Federation,
    federation: Federation,
    keyholder: RunningKeyholder,
    service: RunningFederation,
) -> None:
    public = fetch_public(federation, keyholder.port)
    with pytest.raises(grpc.RpcError) as refused:
        WireClient(foreign_federation, "clients/alice", service.port, public, "client:alice")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails


def test_an_announced_ledger_head_is_recorded_at_join_and_an_unsigned_one_is_refused(
    federation: Federation,
    keyholder: RunningKeyholder,
    service: RunningFederation,
    joins: Joins,
) -> None:
    public = fetch_public(federation, keyholder.port)
    head = LedgerHead.sign(client_key(federation, "alice"), 4, "ab" * 32)
    alice = WireClient(federation, "clients/alice", service.port, public, "client:alice", head)
    bob = WireClient(federation, "clients/bob", service.port, public, "client:bob")  # an older client
    assert joins.recorded == [ClientJoined("client:alice", head), ClientJoined("client:bob", None)]
    for announced, code, fragment in (
        (head, grpc.StatusCode.PERMISSION_DENIED, "does not verify against the pinned key of 'client:bob'"),
        (LedgerHead(4, "AB" * 32, head.signature), grpc.StatusCode.INVALID_ARGUMENT, "entry_hash: expected"),
    ):
        bob.close()  # bob announces alice's head (signed by alice), then a malformed one
        with pytest.raises(grpc.RpcError) as refused:
            WireClient(federation, "clients/bob", service.port, public, "client:bob", announced)
        assert refused.value.code() == code
        assert fragment in (refused.value.details() or "")
    joins.unwritable.add("client:carol")
    with pytest.raises(grpc.RpcError) as unrecorded:  # the anchors log cannot take carol's join
        WireClient(federation, "clients/carol", service.port, public, "client:carol")
    assert unrecorded.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "No space left on device" in (unrecorded.value.details() or "")
    assert len(joins.recorded) == 2  # nothing refused was recorded …
    assert service.service.wait_for(1, timeout=5) == ("client:alice",)  # … nor joined the roster
    alice.close()
