"""The MoR reward end to end in one process: real agents, real Federation service, real key holder.

Two clients' scoring agents (real reward models, TenSEAL, Ed25519, mTLS on loopback) answer the
server's tasks; the reward that reaches TRL must equal the router-weighted mix of the scores each client
computed privately — which only the test, standing outside every role, can compute in plaintext.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from secure_mor.client.agent import ScoringAgent
from secure_mor.client.config import RewardModelConfig, load_client_config
from secure_mor.client.reward_model import RewardModel, build_reward_model
from secure_mor.config import load_config
from secure_mor.crypto.ckks import PublicContext
from secure_mor.crypto.keyholder import RunningKeyholder, start_keyholder
from secure_mor.crypto.keyholder_config import KeyholderConfig
from secure_mor.crypto.kit import load_trust
from secure_mor.crypto.provision import Federation, create_federation
from secure_mor.crypto.signed_log import read_log
from secure_mor.data import FederatedSplits
from secure_mor.server.federation import FederationService, RunningFederation, serve_federation
from secure_mor.server.fusion import SecureFusion, fetch_public_context
from secure_mor.server.mixture import (
    FederatedScorer,
    MixtureOfRewards,
    Rollouts,
    StepIds,
    StepRecord,
)
from secure_mor.server.routing import UniformRouting
from secure_mor.server.settings import MixtureReward, SecurePathSettings

from ..crypto.conftest import kit_tls, stub_for

CLIENTS = ("client:color", "client:shape", "client:yesno")


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return create_federation(tmp_path_factory.mktemp("kit") / "fed", ["color", "shape", "yesno"])


@pytest.fixture(scope="module")
def keyholder(kit: Federation) -> Iterator[RunningKeyholder]:
    config = load_config(KeyholderConfig, kit.root / "keyholder" / "keyholder.toml")
    running = start_keyholder(
        dataclasses.replace(config, service=dataclasses.replace(config.service, listen="127.0.0.1:0"))
    )
    yield running
    running.stop(None)


@pytest.fixture(scope="module")
def server(kit: Federation, keyholder: RunningKeyholder) -> Iterator[RunningFederation]:
    service = FederationService(
        run_id="mor-test",
        allowed=CLIENTS,
        public=server_public(kit, keyholder.port),
        pinned=load_trust(kit.root / "server" / "trust.toml"),
        heartbeat_seconds=1.0,
    )
    running = serve_federation(
        service,
        listen="127.0.0.1:0",
        tls=kit_tls(kit.root, "server"),
        max_message_bytes=16 << 20,
        max_clients=8,
    )
    yield running
    running.stop(None)


def server_public(kit: Federation, port: int) -> PublicContext:
    pinned = load_trust(kit.root / "server" / "trust.toml")["keyholder"]
    return fetch_public_context(stub_for(kit, "server", port), pinned)


def start_agent(
    kit: Federation, name: str, model: RewardModel, server_port: int, keyholder_port: int
) -> tuple[ScoringAgent, threading.Thread]:
    config = load_client_config(kit.root / "clients" / name / "client.toml")
    config = dataclasses.replace(
        config,
        federation=dataclasses.replace(
            config.federation,
            server_address=f"127.0.0.1:{server_port}",
            keyholder_address=f"127.0.0.1:{keyholder_port}",
        ),
        agent=dataclasses.replace(
            config.agent,
            heartbeat_seconds=0.3,
            reconnect_initial_seconds=0.05,
            reconnect_max_seconds=0.2,
            max_rollouts=64,
        ),
    )
    agent = ScoringAgent(config, model)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    return agent, thread


def private_model(seed: int) -> RewardModel:
    import torch

    torch.manual_seed(seed)
    model = build_reward_model(RewardModelConfig(architecture="compact", hidden=16, vocab_buckets=64))
    return dataclasses.replace(model, private=True, epsilon=3.0)


def png_roundtrip(image: Any) -> Image.Image:
    """What a client sees: the image as the PNG the server sends."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def test_mor_reward_is_the_router_weighted_mix_and_skips_below_k_min(
    kit: Federation,
    keyholder: RunningKeyholder,
    server: RunningFederation,
    easy_splits: FederatedSplits,
    tmp_path: Path,
) -> None:
    models = {"color": private_model(1), "shape": private_model(2)}
    agents = {n: start_agent(kit, n, m, server.port, keyholder.port) for n, m in models.items()}
    assert server.service.wait_for(2, timeout=30) == ("client:color", "client:shape")
    records: list[StepRecord] = []
    mor = MixtureOfRewards(
        routing=UniformRouting(),
        features=lambda images, questions: np.zeros((len(questions), 4)),
        scorer=FederatedScorer(
            clients=CLIENTS,
            federation=server.service,
            fusion=SecureFusion(server_public(kit, keyholder.port), stub_for(kit, "server", keyholder.port)),
            step_ids=StepIds(tmp_path / "step_counter", "mor-test"),
            settings=SecurePathSettings(deadline_seconds=30, retries=1),
            on_step=records.append,
        ),
    )
    prompts = easy_splits.prompts.select(range(2))
    group = 4
    images = [img for img in prompts["image"] for _ in range(group)]
    questions = [q for q in prompts["question"] for _ in range(group)]
    image_ids = [i for i in prompts["image_id"] for _ in range(group)]
    answers = ["red", "blue", "circle", "yes"] * 2
    completions = [[{"role": "assistant", "content": a}] for a in answers]
    rewards = mor(
        prompts=[None] * 8, completions=completions, image=images, question=questions, image_id=image_ids
    )
    seen = [png_roundtrip(i) for i in images]
    expected = np.mean([m.score(seen, questions, answers) for m in models.values()], axis=0)  # uniform over 2
    np.testing.assert_allclose(np.array(rewards, dtype=float), expected, atol=1e-4)
    (record,) = records
    assert record.contributors == ("client:color", "client:shape")
    assert record.mean_weights == pytest.approx({"client:color": 0.5, "client:shape": 0.5})
    assert record.scoring_seconds > 0  # the clients' own reports
    assert record.encryption_seconds > 0
    parts = record.scoring_seconds + record.encryption_seconds + record.transport_seconds
    assert parts == pytest.approx(record.waiting_seconds)

    # One client leaves: fewer than k_min = 2 answer, so the step is retried once, then skipped undecrypted.
    agent, thread = agents["shape"]
    agent.stop.set()
    thread.join(15)
    deadline = 30
    while server.service.online() != ("client:color",) and deadline:
        threading.Event().wait(0.2)
        deadline -= 1
    log, pinned = (
        kit.root / "keyholder/logs/decryptions.jsonl",
        load_trust(kit.root / "clients/color/trust.toml"),
    )
    decryptions_before = len(read_log(log, pinned))
    skipped = mor(
        prompts=[None] * 8, completions=completions, image=images, question=questions, image_id=image_ids
    )
    assert skipped == [None] * 8
    assert [r.skipped != "" for r in records[1:]] == [True, True]
    assert records[-1].step_id == "mor-test/2"  # every try used a fresh step id
    assert len(read_log(log, pinned)) == decryptions_before
    assert StepIds(tmp_path / "step_counter", "mor-test").next() == "mor-test/3"  # a resumed run goes on
    agents["color"][0].stop.set()
    agents["color"][1].join(15)


class RecordingScorer:
    """The experiment's in-process scorer over real reward models, keeping what each step asked."""

    def __init__(self, models: dict[str, RewardModel]) -> None:
        from secure_mor.experiment.rewards import LocalScorer

        self.inner = LocalScorer(models)
        self.clients = self.inner.clients
        self.asked: list[Rollouts] = []

    def fuse(self, rollouts: Rollouts, weights: np.ndarray) -> list[float] | None:
        self.asked.append(rollouts)
        return self.inner.fuse(rollouts, weights)

    def calibrate(self, request: Any) -> Any:
        return self.inner.calibrate(request)


@pytest.mark.parametrize("reward", ["top1", "fused"])
def test_every_candidate_answer_is_scored_once_per_prompt_and_rollouts_read_their_reward_off_it(
    easy_splits: FederatedSplits, reward: MixtureReward
) -> None:
    models = {"color": private_model(1), "shape": private_model(2)}
    scorer = RecordingScorer(models)
    candidates = {"color": ("blue", "green", "red"), "shape": ("circle", "triangle")}
    mor = MixtureOfRewards(
        routing=UniformRouting(),
        features=lambda images, questions: np.zeros((len(questions), 4)),
        scorer=scorer,
        candidates=candidates,
        reward=reward,
    )
    prompts = easy_splits.prompts.select(range(2))
    answers = ["Red.", "blue", "circle", "a dog", "triangle", "blue", "circle", "circle"]
    kinds = ["color"] * 4 + ["shape"] * 4
    columns = {
        "image": [img for img in prompts["image"] for _ in range(4)],
        "question": [q for q in prompts["question"] for _ in range(4)],
        "image_id": [i for i in prompts["image_id"] for _ in range(4)],
        "kind": kinds,
    }
    rewards = mor(prompts=[None] * 8, completions=answers, **columns)
    (asked,) = scorer.asked
    assert list(asked.answers) == ["blue", "green", "red", "circle", "triangle"]  # not the 8 rollouts
    fused: dict[int, dict[str, float]] = {}
    for p, options in ((0, candidates["color"]), (1, candidates["shape"])):
        image, question = prompts[p]["image"], prompts[p]["question"]
        n = len(options)
        mean = np.mean([m.score([image] * n, [question] * n, list(options)) for m in models.values()], axis=0)
        fused[p] = {a: float(v) for a, v in zip(options, mean, strict=True)}
    if reward == "fused":
        expected = [fused[0]["red"], fused[0]["blue"], 0.0, 0.0, fused[1]["triangle"], 0.0]
        expected += [fused[1]["circle"]] * 2
        np.testing.assert_allclose(np.array(rewards, dtype=float), expected, atol=1e-6)
    else:
        best = {p: max(scores.items(), key=lambda item: item[1])[0] for p, scores in fused.items()}
        expected = [float(a.lower().strip(".") == best[p // 4]) for p, a in enumerate(answers)]
        assert expected[2] == expected[3] == expected[5] == 0.0  # off-kind or not an answer
        assert rewards == expected
    assert mor.mean_weights() == {
        "color": {"color": 0.5, "shape": 0.5},
        "shape": {"color": 0.5, "shape": 0.5},
    }
