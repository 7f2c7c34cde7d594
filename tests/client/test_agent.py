"""The scoring agent against a real Federation servicer and a real key holder, over real mTLS on loopback."""

from __future__ import annotations

import dataclasses
import io
import queue
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secure_mor import protocol as pb
from secure_mor.client.agent import ScoringAgent
from secure_mor.client.config import ClientConfig, load_client_config
from secure_mor.client.errors import RewardModelError
from secure_mor.client.reward_model import RewardModel
from secure_mor.client.tasks import Refusal, check_scores
from secure_mor.config import load_config
from secure_mor.crypto.ckks import CkksParams, SecretContext
from secure_mor.crypto.errors import CryptoError
from secure_mor.crypto.keyholder import RunningKeyholder, start_keyholder
from secure_mor.crypto.keyholder_config import KeyholderConfig
from secure_mor.crypto.kit import TlsFiles, load_trust
from secure_mor.crypto.provision import Federation, create_federation
from secure_mor.crypto.signing import SigningKey, contribution_message
from secure_mor.crypto.transport import peer_identity, secure_channel, server_credentials
from secure_mor.crypto.wire import decrypt_request, public_context_to_proto, vector_from_proto
from secure_mor.protocol import scoring as sp


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return create_federation(tmp_path_factory.mktemp("kit") / "fed", ["color", "shape"])


@pytest.fixture(scope="module")
def keyholder(federation: Federation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningKeyholder]:
    state = tmp_path_factory.mktemp("keyholder")
    config = load_config(KeyholderConfig, federation.root / "keyholder" / "keyholder.toml")
    config = dataclasses.replace(
        config,
        service=dataclasses.replace(config.service, listen="127.0.0.1:0"),
        policy=dataclasses.replace(config.policy, k_min=1, w_max=1.0),  # one client: a test, not a run
        storage=dataclasses.replace(
            config.storage,
            secret_context=state / "secret.bin",
            decryption_log=state / "decryptions.jsonl",
            service_log=state / "service.log",
        ),
    )
    running = start_keyholder(config)
    yield running
    running.stop(None)


def tls(root: Path, party: str) -> TlsFiles:
    folder = root / party
    return TlsFiles(ca=folder / "tls/ca.crt", cert=folder / "tls/party.crt", key=folder / "tls/party.key")


class Server(sp.FederationServicer):
    """A minimal Federation server: roster on hello, then the tasks the test queues; records replies."""

    def __init__(self, fingerprint: bytes) -> None:
        self.fingerprint = fingerprint
        self.identities: list[str | None] = []
        self.hellos: list[sp.Hello] = []
        self.replies: queue.Queue[sp.ClientMessage] = queue.Queue()
        self.outbox: queue.Queue[sp.ServerMessage | None] = queue.Queue()

    def Connect(  # noqa: N802
        self, request_iterator: Iterator[sp.ClientMessage], context: Any
    ) -> Iterator[sp.ServerMessage]:
        identity = peer_identity(context)
        self.identities.append(identity)
        first = next(request_iterator)
        assert first.hello.identity == identity  # the server checks the claimed identity against the CN
        self.hellos.append(first.hello)
        yield sp.ServerMessage(
            roster=sp.Roster(run_id="test", clients=[identity or ""], context_fingerprint=self.fingerprint)
        )
        threading.Thread(target=self._read, args=(request_iterator,), daemon=True).start()
        while context.is_active():
            try:
                message = self.outbox.get(timeout=0.05)
            except queue.Empty:
                continue
            if message is None:
                return
            yield message

    def _read(self, request_iterator: Iterator[sp.ClientMessage]) -> None:
        try:
            for message in request_iterator:
                self.replies.put(message)
        except grpc.RpcError:
            pass  # the agent closed its stream (it stopped or reconnects)

    def reply(self, kind: str, timeout: float = 20.0) -> sp.ClientMessage:
        while True:
            message = self.replies.get(timeout=timeout)
            if message.WhichOneof("body") in (kind, "error"):
                return message


def serve(federation: Federation, servicer: Any, add: Any) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    add(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(tls(federation.root, "server")))
    server.start()
    return server, port


def client_config(
    federation: Federation, server_port: int, keyholder_port: int, **agent: Any
) -> ClientConfig:
    config = load_client_config(federation.root / "clients" / "color" / "client.toml")
    settings = {"heartbeat_seconds": 0.2, "reconnect_initial_seconds": 0.05, "reconnect_max_seconds": 0.2}
    return dataclasses.replace(
        config,
        federation=dataclasses.replace(
            config.federation,
            server_address=f"127.0.0.1:{server_port}",
            keyholder_address=f"127.0.0.1:{keyholder_port}",
        ),
        agent=dataclasses.replace(config.agent, max_rollouts=8, **(settings | agent)),
    )


def png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def private_model(compact: RewardModel) -> RewardModel:
    return dataclasses.replace(compact, private=True, epsilon=3.0, temperature=0.5)


@pytest.fixture
def running(federation: Federation, keyholder: RunningKeyholder, private_model: RewardModel):
    public = keyholder.service._secret.public
    servicer = Server(public.fingerprint)
    server, port = serve(federation, servicer, sp.add_federation_servicer)
    agent = ScoringAgent(client_config(federation, port, keyholder.port), private_model)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    yield servicer, agent, thread
    agent.stop.set()
    thread.join(10)
    server.stop(None)


def test_agent_scores_encrypts_signs_and_stops_cleanly(
    running, federation: Federation, keyholder, pairs
) -> None:
    servicer, agent, thread = running
    rows = pairs.select(range(5))
    images = {"a": png(rows[0]["image"]), "b": png(rows[1]["image"])}
    rollouts = [sp.Rollout(image_ref="a" if i % 2 else "b", question=q, answer=a) for i, (q, a) in
                enumerate(zip(rows["question"][:3], rows["chosen"][:3], strict=True))]  # fmt: skip
    rollouts += [
        sp.Rollout(
            image_bytes=png(rows[i]["image"]), question=rows[i]["question"], answer=rows[i]["rejected"]
        )
        for i in (3, 4)
    ]
    servicer.outbox.put(
        sp.ServerMessage(task=sp.ScoringTask(step_id="step-1", rollouts=rollouts, images=images))
    )
    message = servicer.reply("score")
    assert message.WhichOneof("body") == "score", message
    reply = message.score
    hello = servicer.hellos[0]
    assert hello.identity == "client:color"
    assert hello.private
    assert servicer.identities == ["client:color"]
    # The signature covers (step id, digest of the ciphertext), under the client's pinned key.
    vector = vector_from_proto(reply.scores)
    pinned = load_trust(federation.root / "server" / "trust.toml")["client:color"]
    assert reply.contribution.ciphertext_digest == vector.digest()
    assert pinned.verify(reply.contribution.signature, contribution_message("step-1", vector.digest()))
    # The key holder (as the server asks it) decrypts exactly the agent's scores.
    channel = secure_channel(f"127.0.0.1:{keyholder.port}", tls(federation.root, "server"))
    request = decrypt_request("step-1", vector, [reply.contribution], np.ones((1, 5)))
    values = np.array(pb.keyholder_stub(channel).DecryptAggregate(request, timeout=10).values)
    channel.close()
    pictures = [rows[1]["image"], rows[0]["image"], rows[1]["image"], rows[3]["image"], rows[4]["image"]]
    answers = [*rows["chosen"][:3], rows["rejected"][3], rows["rejected"][4]]
    expected = agent.model.score(pictures, list(rows["question"]), answers)
    np.testing.assert_allclose(values, expected, atol=1e-4)
    assert np.all((values > -1e-4) & (values < 1 + 1e-4))
    # Calibration: per-cluster pairwise accuracy on public pairs.
    items = [
        sp.CalibrationItem(
            image_bytes=png(r["image"]), question=r["question"], chosen=r["chosen"], rejected=r["rejected"],
            cluster=i % 2,
        )
        for i, r in enumerate(rows)
    ]  # fmt: skip
    servicer.outbox.put(sp.ServerMessage(calibration=sp.CalibrationRequest(request_id="cal-1", items=items)))
    calibration = servicer.reply("calibration").calibration
    assert [c.cluster for c in calibration.clusters] == [0, 1]
    assert [c.count for c in calibration.clusters] == [3, 2]
    assert all(0.0 <= c.accuracy <= 1.0 for c in calibration.clusters)
    # A task above max_rollouts is refused with an error, not scored.
    big = [sp.Rollout(image_ref="a", question="q", answer="a")] * 9
    servicer.outbox.put(sp.ServerMessage(task=sp.ScoringTask(step_id="step-2", rollouts=big, images=images)))
    refused = servicer.reply("score")
    assert refused.WhichOneof("body") == "error"
    assert refused.error.code == "TASK_TOO_LARGE"
    assert refused.error.step_id == "step-2"
    broken = [sp.Rollout(image_bytes=b"not an image", question="q", answer="a")]
    servicer.outbox.put(sp.ServerMessage(task=sp.ScoringTask(step_id="step-3", rollouts=broken)))
    assert servicer.reply("score").error.code == "MALFORMED"
    assert servicer.reply("heartbeat").WhichOneof("body") == "heartbeat"
    agent.stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_agent_reconnects_after_the_stream_ends(running) -> None:
    servicer, _, _ = running
    servicer.replies.get(timeout=20)
    servicer.outbox.put(None)  # the server ends the stream
    for _ in range(200):
        if len(servicer.hellos) >= 2:
            break
        threading.Event().wait(0.05)
    assert len(servicer.hellos) >= 2


class FakeKeyholder(pb.KeyHolderServicer):
    """Serves a public context as given (to present a tampered or wrongly signed one)."""

    def __init__(self, message: pb.PublicContext) -> None:
        self.message = message

    def GetPublicContext(self, request: Any, context: Any) -> pb.PublicContext:  # noqa: N802
        return self.message


@pytest.mark.parametrize("attack", ["wrong-signer", "tampered-context"])
def test_an_unverified_public_context_makes_the_agent_refuse(
    attack: str, federation: Federation, keyholder, private_model: RewardModel
) -> None:
    real = keyholder.service._signed_public
    if attack == "wrong-signer":  # a valid signature, by a key that is not the pinned key holder key
        message = public_context_to_proto(
            SecretContext.generate(CkksParams()).sign_public(SigningKey.generate("keyholder"))
        )
    else:  # the real key holder's signature over another context's bytes
        message = pb.PublicContext()
        message.CopyFrom(real)
        other = SecretContext.generate(CkksParams()).public
        message.context, message.fingerprint = other.data, other.fingerprint
    fake, fake_port = serve(federation, FakeKeyholder(message), pb.add_keyholder_servicer)
    servicer = Server(b"")
    server, port = serve(federation, servicer, sp.add_federation_servicer)
    agent = ScoringAgent(client_config(federation, port, fake_port), private_model)
    with pytest.raises(CryptoError, match=r"signature|pinned key"):
        agent.run(max_failures=1)
    assert servicer.identities == []  # it never connected to the server, so it scored nothing
    fake.stop(None)
    server.stop(None)


def test_an_agent_certified_by_another_ca_cannot_connect(
    federation: Federation, keyholder, private_model: RewardModel, tmp_path: Path
) -> None:
    foreign = create_federation(tmp_path / "foreign", ["color"])  # same identity, another CA
    servicer = Server(keyholder.service._secret.public.fingerprint)
    server, port = serve(federation, servicer, sp.add_federation_servicer)
    config = client_config(federation, port, keyholder.port)
    agent = ScoringAgent(config, private_model)
    agent.public = keyholder.service._secret.public  # skip the key holder: only the server is tested
    foreign_tls = tls(foreign.root, "clients/color")
    agent.config = dataclasses.replace(
        config, federation=dataclasses.replace(config.federation, tls=foreign_tls)
    )
    with pytest.raises(grpc.RpcError) as failed:
        agent.run(max_failures=2)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.identities == []  # no call reached the handler
    server.stop(None)


def test_a_non_private_model_is_refused_unless_allowed(federation: Federation, compact: RewardModel) -> None:
    config = client_config(federation, 1, 1)
    with pytest.raises(RewardModelError, match="WITHOUT differential privacy"):
        ScoringAgent(config, compact)
    allowed = dataclasses.replace(config, agent=dataclasses.replace(config.agent, allow_non_private=True))
    assert ScoringAgent(allowed, compact).model is compact


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=20))
def test_scores_outside_the_unit_interval_are_never_sent(values: list[float]) -> None:
    scores = np.array(values)
    valid = bool(np.all(np.isfinite(scores) & (scores >= 0) & (scores <= 1)))
    if valid:
        np.testing.assert_array_equal(check_scores(scores, len(values)), scores)
    else:
        with pytest.raises(Refusal, match="SCORE_OUT_OF_RANGE"):
            check_scores(scores, len(values))
