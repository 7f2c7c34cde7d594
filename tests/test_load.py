"""Load: 32 clients on loopback for 20 GRPO steps through the whole secure path.

The key holder and the server run as ``secure-mor`` processes, as in a deployment. The 32 clients are
32 scoring agents, each with its own kit from ``secure-mor init`` (its own certificate and common name,
its own Ed25519 key pinned by the key holder) and its own outbound mTLS stream, so the server sees 32
authenticated clients and verifies, fuses and has decrypted 32 signed ciphertexts per step. What is
cheaper than in a deployment, and why: 32 Python processes each importing torch would need ~18 GB and
minutes of start-up on a 2-core CI box, so four host processes (``tests/_agents.py``) run eight agents
each; and every agent scores with its own copy of one DP reward model trained for the shared deployment
(training 32 would measure DP training, not the secure path under load). Neither shortcut touches what
is measured: the server's process, its streams, fan-out, verification, fusion and decryption.

Checked: every one of the 20 steps is fused from all 32 clients (none lost or skipped), each step id is
decrypted exactly once, and the server's resident memory after any step from 5 to 20 exceeds its value
after step 5 by less than ``RSS_GROWTH_MB`` (a server that kept each step's 32 ciphertexts, ~10 MB,
would grow ~150 MB). The secure path's p50/p95 step latency is printed, never asserted: CI machines
differ.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from secure_mor.crypto.kit import load_trust
from secure_mor.crypto.provision import create_federation
from secure_mor.crypto.signed_log import read_log
from secure_mor.simulate.processes import ProcessGroup

from ._federation import configure, steps_of, update_toml

CLIENTS = 32
HOSTS = 4
STEPS = 20
RSS_GROWTH_MB = 64.0
AGENT_HOST = Path(__file__).with_name("_agents.py")


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.mark.slow
@pytest.mark.timeout(480, func_only=True)
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from Linux /proc")
def test_32_clients_for_20_steps_lose_no_step_and_keep_memory_bounded(
    deployment: Path, tmp_path: Path, processes: ProcessGroup, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [f"c{i:02d}" for i in range(CLIENTS)]
    root = tmp_path / "load"
    create_federation(root / "fed", names)
    (root / "base").symlink_to(deployment / "base")
    fed, _, _ = configure(root, "load", names, steps=STEPS, save_steps=STEPS)
    update_toml(fed / "server/server.toml", {"eval": {"limit": 0}, "secure": {"deadline_seconds": 60.0}})
    agent = {"heartbeat_seconds": 2.0, "reconnect_initial_seconds": 0.2, "reconnect_max_seconds": 1.0}
    configs = [fed / "clients" / name / "client.toml" for name in names]
    for config in configs:
        update_toml(config, {"agent": agent})
    model = deployment / "fed/clients/color/state/reward_model"  # a DP (ε = 8) compact model

    processes.start("keyholder", "keyholder", "serve", "--config", str(fed / "keyholder/keyholder.toml"))
    for host in range(HOSTS):
        with (processes.logs / f"agents{host}.log").open("ab") as log:
            processes.started[f"agents{host}"] = subprocess.Popen(
                [sys.executable, str(AGENT_HOST), "--model", str(model), *map(str, configs[host::HOSTS])],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    started = time.monotonic()
    server = processes.start("server", "server", "train", "--config", str(fed / "server/server.toml"))

    run, rss = root / "load", dict[int, float]()
    while server.poll() is None and time.monotonic() - started < 420:
        done = len(steps_of(run))
        if done and done not in rss:  # the server's memory right after each step was written
            rss[done] = rss_mb(server.pid)
        time.sleep(0.05)
    assert server.wait(30) == 0, processes.tail("server", 40)

    rows = steps_of(run)
    assert [r["step_id"] for r in rows] == [f"load/{i}" for i in range(STEPS)]  # no step lost or retried
    assert all(not r["skipped"] for r in rows)
    assert all(len(r["contributors"].split()) == CLIENTS for r in rows)  # every client, every step
    keys = {"keyholder": load_trust(fed / "server/trust.toml")["keyholder"]}
    entries = read_log(fed / "keyholder/logs/decryptions.jsonl", keys)  # verifies every entry
    assert [e.payload["step_id"] for e in entries] == [r["step_id"] for r in rows]  # each once
    assert all(len(e.payload["contributors"]) == CLIENTS for e in entries)

    waiting, fusion, decryption = (
        np.array([float(r[f"{part}_seconds"]) for r in rows]) for part in ("waiting", "fusion", "decryption")
    )
    secure = waiting + fusion + decryption  # StepRecord.secure_seconds
    first, last = min(k for k in rss if k >= 5), max(rss)
    growth = max(rss[k] for k in rss if k >= first) - rss[first]  # the peak after step 5, not the end
    with capsys.disabled():
        print(
            f"\nload: {CLIENTS} clients ({HOSTS} host processes), {STEPS} steps of "
            f"{rows[0]['rollouts']} rollouts in {time.monotonic() - started:.0f} s (incl. start-up)\n"
            f"  secure path per step: p50 {np.percentile(secure, 50):.3f} s, "
            f"p95 {np.percentile(secure, 95):.3f} s (fusion p50 {np.percentile(fusion, 50) * 1e3:.0f} ms, "
            f"decryption p50 {np.percentile(decryption, 50) * 1e3:.0f} ms)\n"
            f"  server RSS: {rss[first]:.0f} MiB after step {first}, {rss[last]:.0f} MiB after step {last} "
            f"(peak growth +{growth:.1f} MiB); samples {[round(rss[k]) for k in sorted(rss)]}"
        )
    assert growth < RSS_GROWTH_MB, rss
    assert (run / "policy").exists()
