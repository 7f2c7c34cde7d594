"""Benchmark: the secure path's share of a GRPO step, and how it grows with the number of clients K.

One process hosts a real key holder, the server's Federation service and K scoring agents (threads,
each with its own compact DP-style reward model), all over mTLS on loopback; TRL's GRPOTrainer runs
MoR GRPO on the tiny VLM with uniform routing. For each K it reports the median step wall time (TRL's
``step_time``) and the median secure path (task fan-out, the clients' scoring and encryption, transport,
fusion, decryption), split as the server sees it. The clients share this machine's two cores with the
trainer here; in a deployment they score on their own machines, so the scoring share is an upper bound.

    .venv/bin/python benchmarks/secure_path.py                    # K = 3, 8, 16; 6 steps each
    .venv/bin/python benchmarks/secure_path.py --clients 3 --steps 10 --base runs/base
    .venv/bin/python benchmarks/secure_path.py --clients 3 --steps 3 --json out.json   # make bench
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from secure_mor.client.agent import ScoringAgent
from secure_mor.client.config import RewardModelConfig, load_client_config
from secure_mor.client.reward_model import build_reward_model
from secure_mor.config import load_config
from secure_mor.crypto.keyholder import start_keyholder
from secure_mor.crypto.keyholder_config import KeyholderConfig
from secure_mor.crypto.kit import KEYHOLDER_IDENTITY, TlsFiles, load_trust
from secure_mor.crypto.provision import create_federation
from secure_mor.crypto.transport import secure_channel
from secure_mor.data import DataConfig, load_splits
from secure_mor.models.factory import build_tiny_vlm, save_vlm
from secure_mor.models.presets import PRESETS
from secure_mor.protocol import keyholder_stub
from secure_mor.server.federation import FederationService, serve_federation
from secure_mor.server.fusion import SecureFusion, fetch_public_context
from secure_mor.server.grpo import build_grpo_trainer, grpo_prompts
from secure_mor.server.mixture import FederatedScorer, MixtureOfRewards, StepIds, StepRecord
from secure_mor.server.routing import UniformRouting
from secure_mor.server.settings import GrpoSettings, SecurePathSettings


def tls(root: Path, party: str) -> TlsFiles:
    return TlsFiles(
        ca=root / party / "tls/ca.crt",
        cert=root / party / "tls/party.crt",
        key=root / party / "tls/party.key",
    )


def measure(k: int, steps: int, base: Path, work: Path) -> dict[str, float]:
    names = [f"c{i}" for i in range(k)]
    root = create_federation(work / f"fed{k}", names).root
    kh_config = load_config(KeyholderConfig, root / "keyholder/keyholder.toml")
    keyholder = start_keyholder(
        dataclasses.replace(kh_config, service=dataclasses.replace(kh_config.service, listen="127.0.0.1:0"))
    )
    pinned = load_trust(root / "server/trust.toml")
    stub = keyholder_stub(secure_channel(f"127.0.0.1:{keyholder.port}", tls(root, "server")))
    public = fetch_public_context(stub, pinned[KEYHOLDER_IDENTITY])
    identities = [f"client:{n}" for n in names]
    service = FederationService(run_id="bench", allowed=identities, public=public, pinned=pinned)
    running = serve_federation(
        service, listen="127.0.0.1:0", tls=tls(root, "server"), max_message_bytes=16 << 20, max_clients=k + 2
    )
    agents = []
    for i, name in enumerate(names):
        config = load_client_config(root / "clients" / name / "client.toml")
        config = dataclasses.replace(
            config,
            federation=dataclasses.replace(
                config.federation,
                server_address=f"127.0.0.1:{running.port}",
                keyholder_address=f"127.0.0.1:{keyholder.port}",
            ),
            agent=dataclasses.replace(config.agent, heartbeat_seconds=2.0, reconnect_initial_seconds=0.1),
        )
        torch.manual_seed(i)
        model = build_reward_model(RewardModelConfig(architecture="compact", hidden=64, vocab_buckets=256))
        agent = ScoringAgent(config, dataclasses.replace(model, private=True, epsilon=3.0))
        threading.Thread(target=agent.run, daemon=True).start()
        agents.append(agent)
    service.wait_for(k, timeout=120)
    records: list[StepRecord] = []
    mor = MixtureOfRewards(
        routing=UniformRouting(),
        features=lambda images, questions: np.zeros((len(questions), 1)),
        scorer=FederatedScorer(
            clients=identities,
            federation=service,
            fusion=SecureFusion(public, stub),
            step_ids=StepIds(work / f"steps{k}", f"bench{k}"),
            settings=SecurePathSettings(deadline_seconds=120, k_min=2, w_max=0.75),
            on_step=records.append,
        ),
    )
    splits = load_splits(DataConfig())
    trainer = build_grpo_trainer(
        base_model=base,
        processor=_processor(base),
        prompts=grpo_prompts(splits.prompts.select(range(256))),
        reward_funcs=[mor],
        settings=GrpoSettings(steps=steps + 1, prompts_per_step=8, group_size=8, save_steps=10_000),
        output_dir=work / f"grpo{k}",
    )
    trainer.train()
    for agent in agents:
        agent.stop.set()
    running.stop(None)
    keyholder.stop(None)
    step_times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h][1:]  # skip warm-up
    kept = records[1:]
    return {
        "K": k,
        "rollouts": kept[0].rollouts,
        "step": statistics.median(step_times),
        "secure": statistics.median(r.secure_seconds for r in kept),
        "waiting": statistics.median(r.waiting_seconds for r in kept),
        "plain_fusion": plaintext_fusion_seconds(k, kept[0].rollouts),
        "scoring": statistics.median(r.scoring_seconds for r in kept),
        "encryption": statistics.median(r.encryption_seconds for r in kept),
        "transport": statistics.median(r.transport_seconds for r in kept),
        "fusion": statistics.median(r.fusion_seconds for r in kept),
        "decryption": statistics.median(r.decryption_seconds for r in kept),
    }


def plaintext_fusion_seconds(k: int, n: int, repeats: int = 200) -> float:
    """Median time of the same fusion on plaintext scores: Σ_k W[k] ⊙ r_k in NumPy, shape (K, N)."""
    rng = np.random.default_rng(0)
    scores, weights = rng.random((k, n)), rng.dirichlet(np.ones(k), n).T
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        (weights * scores).sum(axis=0)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _processor(base: Path):  # type: ignore[no-untyped-def]
    from secure_mor.models.factory import load_vlm

    return load_vlm(base).processor


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[3, 8, 16])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--base", type=Path, help="a pretrained base (default: a fresh tiny VLM)")
    parser.add_argument(
        "--json", type=Path, help="also write the figures as JSON here (benchmarks/run_all.py)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        base = args.base
        if base is None:
            foundation = load_splits(DataConfig()).foundation
            base = save_vlm(
                build_tiny_vlm(PRESETS["tiny"], [*foundation["question"], *foundation["answer"]]),
                work / "base",
            )
        rows = [measure(k, args.steps, base, work) for k in args.clients]
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=2))
    print(
        f"\nMoR GRPO step, tiny VLM, 8 prompts × 8 completions = 64 rollouts; median of {args.steps} steps\n"
    )
    columns = [
        "clients K",
        "step (s)",
        "secure path (s)",
        "share of step",
        "scoring",
        "encryption",
        "transport",
        "fusion",
        "decryption",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        split = " | ".join(
            f"{r[k]:.4f}" for k in ("scoring", "encryption", "transport", "fusion", "decryption")
        )
        print(f"| {r['K']} | {r['step']:.3f} | {r['secure']:.3f} | {r['secure'] / r['step']:.0%} | {split} |")


if __name__ == "__main__":
    main()
