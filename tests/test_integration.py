"""The federation as separate processes on loopback over mTLS: key holder, server, three clients.

Every party runs its own ``secure-mor`` command, as in a deployment: ``init`` issues the kits, each client
trains its reward model under DP (``client train-rm``) and joins (``client join``), the key holder
serves, the server trains (``server train``). A client is killed mid-run; training goes on with the two
that remain (k_min = 2). The run is then resumed for one more step, and ``secure-mor audit`` passes.

That run is made once for the module (``finished``); the anchor tests then cut one party's log short in
a copy of it — the key holder's decryption log, a client's ledger, the server's own record — and the
audit must name what is missing, while the untouched copy passes and a copy without anchors (a run
from before they existed) passes with a warning that completeness could not be checked.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from secure_mor.anchors import ANCHORS_FILE
from secure_mor.audit import Auditor, AuditReport, Finding, Status
from secure_mor.cli import main
from secure_mor.simulate.processes import ProcessGroup

from ._federation import CLIENTS, configure, run_cli, start_federation, steps_of, update_toml

RUN = "mor"
# What the audit reads of a kit and a run folder: configs, trust files, public keys, logs; not the models.
EVIDENCE_ONLY = shutil.ignore_patterns("checkpoints", "policy", "tensorboard", "reward_model", "ckks")


@dataclass(frozen=True)
class Finished:
    """The module's run: its step rows after the first and the resumed server, and a copy of its logs."""

    run: Path
    first_steps: list[dict[str, str]]
    steps: list[dict[str, str]]
    stopped: bool
    snapshot: Path
    """``fed/`` and ``mor/`` as they were when the run ended (later tests append to the shared kit)."""

    def copy(self, to: Path) -> tuple[Path, Path]:
        """A fresh copy of the snapshot's kit and run folder under ``to``."""
        shutil.copytree(self.snapshot, to, dirs_exist_ok=True)
        return to / "fed", to / RUN


@pytest.fixture(scope="module")
def finished(deployment: Path, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    processes = ProcessGroup(tmp_path_factory.mktemp("integration-logs"))
    fed, _, _ = configure(deployment, RUN, steps=4)
    run = deployment / RUN
    try:
        start_federation(fed, processes)
        server = processes.start("server", "server", "train", "--config", str(fed / "server/server.toml"))
        deadline = time.monotonic() + 300
        while not steps_of(run) and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.5)
        assert steps_of(run), processes.tail("server")
        processes.started["yesno"].send_signal(signal.SIGKILL)  # a client lost mid-run
        assert server.wait(300) == 0, processes.tail("server")
        first_steps = steps_of(run)

        update_toml(fed / "server/server.toml", {"grpo": {"steps": 5}})
        resumed = processes.start(
            "resumed", "server", "train", "--config", str(fed / "server/server.toml"), "--resume"
        )
        assert resumed.wait(300) == 0, processes.tail("resumed")
        processes.stop_all()
        stopped = all(p.poll() is not None for p in processes.started.values())
    finally:
        processes.stop_all()
    snapshot = tmp_path_factory.mktemp("integration-snapshot")
    shutil.copytree(fed, snapshot / "fed", ignore=EVIDENCE_ONLY)
    shutil.copytree(run, snapshot / RUN, ignore=EVIDENCE_ONLY)
    return Finished(run, first_steps, steps_of(run), stopped, snapshot)


@pytest.mark.slow
def test_federation_of_processes_trains_survives_a_lost_client_resumes_and_audits(
    finished: Finished,
) -> None:
    assert [s["step_id"] for s in finished.first_steps] == [f"{RUN}/{i}" for i in range(4)]
    assert not any(s["skipped"] for s in finished.first_steps)
    assert len(finished.first_steps[-1]["contributors"].split()) == 2  # training went on with the two left
    assert (finished.run / "eval.json").exists()
    # one more step after the resume, under a fresh step id
    assert [s["step_id"] for s in finished.steps] == [f"{RUN}/{i}" for i in range(5)]
    assert finished.stopped
    output = run_cli("audit", str(finished.snapshot / "fed"), str(finished.snapshot / RUN))  # exits 0
    assert "decryption.policy" in output
    assert "anchors.receipt" in output


def findings_of(report: AuditReport, check: str, status: Status = Status.FAIL) -> list[Finding]:
    return [f for f in report.findings if f.check == check and f.status is status]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.slow
def test_the_untouched_run_passes_with_every_anchor_checked(finished: Finished, tmp_path: Path) -> None:
    fed, run = finished.copy(tmp_path)
    report = Auditor().run([fed, run])
    assert report.passed, [f for f in report.findings if f.status is Status.FAIL]
    assert findings_of(report, "anchors.receipt", Status.PASS)
    requested = findings_of(report, "anchors.requested", Status.PASS)
    assert [f.message for f in requested if f.subject == RUN] == [
        f"all 5 decryption(s) of run '{RUN}' were requested by the server"
    ]
    heads = {f.subject for f in findings_of(report, "anchors.ledger_head", Status.PASS)}
    assert heads == {f"client:{name}" for name in CLIENTS}
    # (the shared kit's key holder also decrypted for other tests' runs, whose folders are not given)
    assert not any(f"'{RUN}'" in f.message for f in findings_of(report, "anchors.missing", Status.WARN))
    for client in report.clients:  # each trained once and announced that entry when it joined
        assert client.announced_seq == 0
        assert client.epsilon_announced == pytest.approx(client.epsilon_spent)
    steps = {row["step_id"]: row for row in finished.steps}  # the receipts are in the server's table too
    receipts = [json.loads(line) for line in lines_of(run / ANCHORS_FILE)]
    for entry in (e for e in receipts if e["kind"] == "decryption_receipt"):
        row = steps[entry["payload"]["step_id"]]
        assert int(row["keyholder_seq"]) == entry["payload"]["keyholder_seq"]
        assert row["keyholder_entry_hash"] == entry["payload"]["keyholder_entry_hash"]


@pytest.mark.slow
def test_a_decryption_cut_from_the_key_holders_log_is_named(finished: Finished, tmp_path: Path) -> None:
    fed, run = finished.copy(tmp_path)
    log = fed / "keyholder/logs/decryptions.jsonl"
    lines = lines_of(log)
    assert json.loads(lines[-1])["payload"]["step_id"] == f"{RUN}/4"  # the run's last decryption
    log.write_bytes(b"".join(lines[:-1]))  # a shorter chain that verifies on its own
    assert main(["audit", str(fed), str(run)]) == 1
    report = Auditor().run([fed, run])
    assert not findings_of(report, "log.integrity")
    (finding,) = findings_of(report, "anchors.receipt")
    assert finding.subject == f"{RUN}/4"
    assert (
        f"step {RUN}/4 was decrypted for the server (its receipt at {run / ANCHORS_FILE}:" in finding.message
    )
    assert f"but {log} ends at seq {len(lines) - 2}: the key holder's log was cut back" in finding.message


@pytest.mark.slow
def test_an_entry_cut_from_a_clients_ledger_is_named(finished: Finished, tmp_path: Path) -> None:
    fed, run = finished.copy(tmp_path)
    ledger = fed / "clients/color/state/privacy_ledger.jsonl"
    lines = lines_of(ledger)
    ledger.write_bytes(b"".join(lines[:-1]))  # its one DP run: the ledger is left empty
    assert main(["audit", str(fed), str(run)]) == 1
    report = Auditor().run([fed, run])
    failures = findings_of(report, "anchors.ledger_head")
    assert {f.subject for f in failures} == {"client:color"}
    head = json.loads(lines[-1])
    assert f"client:color announced its ledger head seq {head['seq']}" in failures[0].message
    assert "holds no ledger with entries: deleted or emptied" in failures[0].message
    assert failures[0].location.startswith(f"{run / ANCHORS_FILE}:")  # where the server recorded it


@pytest.mark.slow
def test_a_decryption_cut_from_the_servers_record_is_named(finished: Finished, tmp_path: Path) -> None:
    fed, run = finished.copy(tmp_path)
    anchors = run / ANCHORS_FILE
    lines = lines_of(anchors)
    last = [json.loads(line) for line in lines[-2:]]
    assert [(e["kind"], e["payload"]["step_id"]) for e in last] == [
        ("decryption_requested", f"{RUN}/4"),
        ("decryption_receipt", f"{RUN}/4"),
    ]
    anchors.write_bytes(b"".join(lines[:-2]))  # the server's whole record of its last decrypted step
    assert main(["audit", str(fed), str(run)]) == 1
    report = Auditor().run([fed, run])
    assert not findings_of(report, "log.integrity")
    (finding,) = findings_of(report, "anchors.requested")
    assert finding.subject == f"{RUN}/4"
    assert "never requested it: the server's record of it is missing" in finding.message
    assert str(anchors) in finding.message
    assert finding.location.startswith(f"{fed / 'keyholder/logs/decryptions.jsonl'}:")


@pytest.mark.slow
def test_a_run_from_before_anchors_still_audits_with_a_warning(finished: Finished, tmp_path: Path) -> None:
    fed, run = finished.copy(tmp_path)
    (run / ANCHORS_FILE).unlink()
    report = Auditor().run([fed, run])
    assert report.passed
    missing = findings_of(report, "anchors.missing", Status.WARN)
    assert str(run) in {f.subject for f in missing}
    assert {f"client:{name}" for name in CLIENTS} <= {f.subject for f in missing}
    assert all("completeness could not be checked" in f.message for f in missing)
    assert main(["audit", str(fed), str(run)]) == 0
    assert main(["audit", str(fed), str(run), "--strict"]) == 1


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
