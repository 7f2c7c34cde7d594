"""The federation as separate processes on loopback over mTLS: key holder, server, three clients.

Every party runs its own ``secure-mor`` command, as in a deployment: ``init`` issues the kits, each client
trains its reward model under DP (``client train-rm``) and joins (``client join``), the key holder
serves, the server trains (``server train``). A client is killed mid-run; training goes on with the two
that remain (k_min = 2). The run is then resumed for one more step, and ``secure-mor audit`` passes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from secure_mor.simulate.processes import ProcessGroup

from ._federation import CLIENTS, configure, run_cli, start_federation, steps_of, update_toml


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
