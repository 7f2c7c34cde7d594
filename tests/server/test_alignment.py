"""A whole server run in one process: real agents, key holder, router calibration, TRL GRPO, resume."""

from __future__ import annotations

import csv
import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from secure_mor.client.agent import ScoringAgent
from secure_mor.client.config import load_client_config
from secure_mor.config import load_config
from secure_mor.crypto.keyholder import RunningKeyholder, start_keyholder
from secure_mor.crypto.keyholder_config import KeyholderConfig
from secure_mor.crypto.provision import Federation, create_federation
from secure_mor.data import FederatedSplits
from secure_mor.models.factory import build_tiny_vlm, save_vlm
from secure_mor.models.presets import PRESETS
from secure_mor.server.config import load_server_config
from secure_mor.server.training import FederatedAlignment
from secure_mor.simulate.runner import free_port

from .test_mixture import private_model


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return create_federation(tmp_path_factory.mktemp("kit") / "fed", ["color", "shape"])


@pytest.fixture(scope="module")
def keyholder(kit: Federation) -> Iterator[RunningKeyholder]:
    config = load_config(KeyholderConfig, kit.root / "keyholder" / "keyholder.toml")
    service = dataclasses.replace(config.service, listen="127.0.0.1:0")
    running = start_keyholder(dataclasses.replace(config, service=service))
    yield running
    running.stop(None)


def test_a_server_run_calibrates_trains_logs_evaluates_and_resumes(
    kit: Federation, keyholder: RunningKeyholder, easy_splits: FederatedSplits, tmp_path: Path
) -> None:
    foundation = easy_splits.foundation
    save_vlm(
        build_tiny_vlm(PRESETS["tiny"], [*foundation["question"], *foundation["answer"]]), tmp_path / "base"
    )
    port = free_port()
    config = load_server_config(kit.root / "server" / "server.toml")
    config = dataclasses.replace(
        config,
        federation=dataclasses.replace(config.federation, keyholder_address=f"127.0.0.1:{keyholder.port}"),
        service=dataclasses.replace(
            config.service, listen=f"127.0.0.1:{port}", heartbeat_seconds=1.0, wait_for_clients_seconds=60
        ),
        run=dataclasses.replace(
            config.run,
            base_model=tmp_path / "base",
            run_dir=tmp_path / "run",
        ),
        router=dataclasses.replace(config.router, clusters=2, epochs=20, calibration_items=24),
        eval=dataclasses.replace(config.eval, limit=16),
        grpo=dataclasses.replace(config.grpo, steps=2, prompts_per_step=2, group_size=4, save_steps=1),
    )
    agents = []
    for seed, name in enumerate(("color", "shape")):
        client = load_client_config(kit.root / "clients" / name / "client.toml")
        client = dataclasses.replace(
            client,
            federation=dataclasses.replace(
                client.federation,
                server_address=f"127.0.0.1:{port}",
                keyholder_address=f"127.0.0.1:{keyholder.port}",
            ),
            agent=dataclasses.replace(
                client.agent, heartbeat_seconds=0.3, reconnect_initial_seconds=0.1, reconnect_max_seconds=0.5
            ),
        )
        agent = ScoringAgent(client, private_model(seed))
        threading.Thread(target=agent.run, daemon=True).start()
        agents.append(agent)
    try:
        result = FederatedAlignment(config).run()
        assert result.steps == 2
        run = tmp_path / "run"
        competence = json.loads((run / "router" / "competence.json").read_text())
        assert competence["clients"] == ["client:color", "client:shape"]
        with (run / "secure_steps.csv").open() as file:
            steps = list(csv.DictReader(file))
        assert [s["step_id"] for s in steps] == ["mor/0", "mor/1"]
        assert all(s["contributors"] == "client:color client:shape" and not s["skipped"] for s in steps)
        assert all(
            abs(float(s["weight:client:color"]) + float(s["weight:client:shape"]) - 1) < 1e-9 for s in steps
        )
        with (run / "train_log.csv").open() as file:
            assert len(list(csv.DictReader(file))) == 2
        assert set(json.loads((run / "eval.json").read_text())) >= {"overall"}
        assert (run / "policy" / "adapter_config.json").exists()
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))

        resumed = dataclasses.replace(config, grpo=dataclasses.replace(config.grpo, steps=3))
        again = FederatedAlignment(resumed).run(resume=True)
        assert again.steps == 3
        with (run / "secure_steps.csv").open() as file:
            steps = list(csv.DictReader(file))
        # One more step, under a fresh step id: a resumed run never re-requests a decrypted step.
        assert [s["step_id"] for s in steps] == ["mor/0", "mor/1", "mor/2"]
        assert not any(s["skipped"] for s in steps)
    finally:
        for agent in agents:
            agent.stop.set()
