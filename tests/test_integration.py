"""The federation as separate processes on loopback over mTLS: key holder, server, three clients.

Every party runs its own ``secure-mor`` command, as in a deployment: ``init`` issues the kits, each client
trains its reward model under DP (``client train-rm``) and joins (``client join``), the key holder
serves, the server trains (``server train``). A client is killed mid-run; training goes on with the two
that remain (k_min = 2). The run is then resumed for one more step, and ``secure-mor audit`` passes.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from secure_mor.data import FederatedSplits
from secure_mor.models.factory import build_tiny_vlm, save_vlm
from secure_mor.models.presets import PRESETS
from secure_mor.simulate.processes import ProcessGroup
from secure_mor.simulate.runner import free_port, update_toml

CLI = [sys.executable, "-m", "secure_mor"]
CLIENTS = ("color", "shape", "yesno")


def steps_of(run: Path) -> list[dict[str, str]]:
    path = run / "secure_steps.csv"
    if not path.exists():
        return []
    with path.open() as file:
        return list(csv.DictReader(file))


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    running = ProcessGroup(tmp_path)
    yield running
    running.stop_all()


def run_cli(*args: str, timeout: float = 300) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, easy_splits: FederatedSplits) -> Path:
    """A kit whose three clients trained their reward models under DP, and a tiny base VLM beside it."""
    root = tmp_path_factory.mktemp("deployment")
    fed = root / "fed"
    run_cli("init", str(fed), "--clients", ",".join(CLIENTS))
    foundation = easy_splits.foundation
    save_vlm(build_tiny_vlm(PRESETS["tiny"], [*foundation["question"], *foundation["answer"]]), root / "base")
    for name in CLIENTS:
        config = fed / "clients" / name / "client.toml"
        update_toml(
            config,
            {
                "reward_model": {
                    "limit": 48,
                    "hidden": 16,
                    "vocab_buckets": 64,
                    "public_epochs": 1,
                    "public_pairs_per_kind": 8,
                    "public_cache": str(root / "public"),
                },
                "training": {"epochs": 2, "batch_size": 16, "physical_batch_size": 16},
                "privacy": {"epsilon": 8.0},
                "agent": {
                    "heartbeat_seconds": 0.5,
                    "reconnect_initial_seconds": 0.2,
                    "reconnect_max_seconds": 1.0,
                },
            },
        )
        run_cli("client", "train-rm", "--config", str(config))
    return root


def configure(root: Path, run: str, **grpo: Any) -> tuple[Path, int, int]:
    """Point the kit at fresh loopback ports and a run folder; return the kit and the two ports."""
    fed, server_port, keyholder_port = root / "fed", free_port(), free_port()
    update_toml(fed / "keyholder/keyholder.toml", {"service": {"listen": f"127.0.0.1:{keyholder_port}"}})
    update_toml(
        fed / "server/server.toml",
        {
            "federation": {"keyholder_address": f"127.0.0.1:{keyholder_port}"},
            "service": {"listen": f"127.0.0.1:{server_port}", "heartbeat_seconds": 1.0},
            "run": {
                "base_model": str(root / "base"),
                "run_dir": str(root / run),
                "run_id": run,
                "calibration_items": 24,
                "eval_limit": 16,
            },
            "router": {"clusters": 2, "epochs": 20},
            "grpo": {"prompts_per_step": 2, "group_size": 4, "save_steps": 1, **grpo},
            "secure": {"deadline_seconds": 20.0},
        },
    )
    for name in CLIENTS:
        update_toml(
            fed / "clients" / name / "client.toml",
            {
                "federation": {
                    "server_address": f"127.0.0.1:{server_port}",
                    "keyholder_address": f"127.0.0.1:{keyholder_port}",
                }
            },
        )
    return fed, server_port, keyholder_port


def start_federation(fed: Path, processes: ProcessGroup, clients: Sequence[str] = CLIENTS) -> None:
    processes.start("keyholder", "keyholder", "serve", "--config", str(fed / "keyholder/keyholder.toml"))
    for name in clients:
        processes.start(name, "client", "join", "--config", str(fed / "clients" / name / "client.toml"))


@pytest.mark.slow
def test_federation_of_processes_trains_survives_a_lost_client_resumes_and_audits(
    deployment: Path, processes: ProcessGroup
) -> None:
    fed, _, _ = configure(deployment, "mor", steps=4)
    run = deployment / "mor"
    start_federation(fed, processes)
    server = processes.start("server", "server", "train", "--config", str(fed / "server/server.toml"))

    deadline = time.monotonic() + 300
    while not steps_of(run) and time.monotonic() < deadline and server.poll() is None:
        time.sleep(0.5)
    assert steps_of(run), processes.tail("server")
    processes.started["yesno"].send_signal(signal.SIGKILL)  # a client lost mid-run
    assert server.wait(300) == 0, processes.tail("server")

    steps = steps_of(run)
    assert [s["step_id"] for s in steps] == [f"mor/{i}" for i in range(4)]
    assert not any(s["skipped"] for s in steps)
    assert len(steps[-1]["contributors"].split()) == 2  # training went on with the two that remain
    assert (run / "eval.json").exists()

    update_toml(fed / "server/server.toml", {"grpo": {"steps": 5}})
    resumed = processes.start(
        "resumed", "server", "train", "--config", str(fed / "server/server.toml"), "--resume"
    )
    assert resumed.wait(300) == 0, processes.tail("resumed")
    steps = steps_of(run)
    assert [s["step_id"] for s in steps] == [f"mor/{i}" for i in range(5)]  # one more step, a fresh step id

    processes.stop_all()
    assert all(p.poll() is not None for p in processes.started.values())
    assert "decryption.policy" in run_cli("audit", str(fed))  # exits 0: every check passes


@pytest.mark.slow
def test_two_training_processes_share_one_secure_step(deployment: Path, processes: ProcessGroup) -> None:
    # torchrun starts two trainer processes; only the main one talks to the clients and the key holder,
    # and each step's rollouts of both processes are scored and decrypted together, under one step id.
    fed, _, _ = configure(deployment, "ddp", steps=2)
    start_federation(fed, processes, CLIENTS[:2])
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "-m", "secure_mor"]
    done = subprocess.run(
        [*torchrun, "server", "train", "--config", str(fed / "server/server.toml")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = steps_of(deployment / "ddp")
    assert [s["step_id"] for s in steps] == ["ddp/0", "ddp/1"]
    assert all(int(s["rollouts"]) == 2 * 2 * 4 for s in steps)  # both processes' B·G rollouts in one step
    assert all(not s["skipped"] for s in steps)
