"""Faults, each injected into a federation of separate ``secure-mor`` processes over mTLS on loopback.

One federation (key holder, three clients, server training for up to 400 steps) runs for the module;
each test injects one fault into it and polls the run's ``secure_steps.csv`` (written by the server after
every secure step) until the federation has recovered, with a deadline: a client killed mid-step and
restarted, a client stalled past the step deadline (SIGSTOP, as a network that stops forwarding would
look to the server), two stalled clients (the step is skipped under k_min, never decrypted), the key holder
killed and restarted, and last the server killed and resumed from its checkpoint. A key holder whose disk
fills mid-run and a server whose run folder cannot be written run on their own. After every fault the
key holder's decryption log must verify, hold each step id at most once and agree with the server's
steps.
"""

from __future__ import annotations

import csv
import resource
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from secure_mor.config import load_config
from secure_mor.crypto.ckks import PublicContext, SecretContext
from secure_mor.crypto.keyholder_config import KeyholderConfig
from secure_mor.crypto.kit import load_trust
from secure_mor.crypto.provision import Federation, create_federation
from secure_mor.crypto.signed_log import read_log
from secure_mor.simulate.processes import ProcessGroup
from secure_mor.simulate.runner import free_port

from ._federation import CLI, configure, poll, run_cli, start_federation, steps_of, update_toml
from .crypto.conftest import fetch_public, make_request, stub_for, uniform

DEADLINE = 3.0  # the server's step deadline, seconds
RUN = "faults"


@dataclass
class Live:
    """The running federation of this module: its kit, run folder and processes."""

    fed: Path
    run: Path
    processes: ProcessGroup

    def start_server(self, *extra: str) -> subprocess.Popen[bytes]:
        """Start ``server train`` on the kit (``extra``: e.g. ``--resume``)."""
        return self.processes.start("server", "server", "train", "--config", str(self.server_toml), *extra)

    @property
    def server_toml(self) -> Path:
        """The server's config."""
        return self.fed / "server/server.toml"

    def counter(self) -> int:
        """How many step ids the server has reserved (it persists the counter before sending a task)."""
        path = self.run / "step_counter"
        return int(path.read_text()) if path.exists() else 0

    def reserve_wait(self, timeout: float = 60.0) -> str:
        """Wait until the server reserves its next step id (the task goes out right after); return it."""
        before = self.counter()
        poll(lambda: self.counter() > before, timeout, "the server to start its next step")
        return f"{RUN}/{self.counter() - 1}"

    def row(self, step_id: str, timeout: float = 60.0) -> dict[str, str]:
        """The server's row for ``step_id``, once written."""
        return poll(
            lambda: next((r for r in steps_of(self.run) if r["step_id"] == step_id), None),
            timeout,
            f"the server to finish step {step_id}\n{self.processes.tail('server')}",
        )

    def next_row(
        self, accept: Callable[[dict[str, str]], bool], timeout: float = 90.0, what: str = "a step"
    ) -> dict[str, str]:
        """The first row written from now on for which ``accept(row)`` holds; the server must stay up."""
        seen = len(steps_of(self.run))

        def found() -> dict[str, str] | None:
            server = self.processes.started["server"]
            assert server.poll() is None, f"the server exited:\n{self.processes.tail('server', 40)}"
            return next((r for r in steps_of(self.run)[seen:] if accept(r)), None)

        return poll(found, timeout, f"{what}\n{self.processes.tail('server')}")


def number(step_id: str) -> int:
    """The counter value of a step id ``faults/<n>``."""
    return int(step_id.removeprefix(f"{RUN}/"))


def contributors(row: dict[str, str]) -> set[str]:
    """The clients whose scores a step fused (names without the ``client:`` prefix)."""
    return {c.removeprefix("client:") for c in row["contributors"].split()}


def decryptions(fed: Path) -> list[str]:
    """The step ids of the key holder's decryption log, which must verify entry by entry."""
    keys = {"keyholder": load_trust(fed / "server/trust.toml")["keyholder"]}
    return [e.payload["step_id"] for e in read_log(fed / "keyholder/logs/decryptions.jsonl", keys)]


def check_logs_agree(live: Live) -> list[str]:
    """The decryption log verifies, no step id twice; it holds exactly the run's fused steps."""
    logged = decryptions(live.fed)
    assert len(logged) == len(set(logged)), "a step id was decrypted twice"
    rows = steps_of(live.run)
    ids = [r["step_id"] for r in rows]
    assert len(ids) == len(set(ids)), "the server reused a step id"
    ours = {s for s in logged if s.startswith(f"{RUN}/")}
    fused = {r["step_id"] for r in rows if not r["skipped"]}
    assert fused <= ours, f"fused but not in the decryption log: {sorted(fused - ours)}"
    # a step skipped because the key holder died mid-call may have been logged before its answer was lost
    # (decrypted, released to no one); a step skipped for any other reason never reaches the key holder
    lost = {r["step_id"] for r in rows if r["skipped"].startswith("key holder refused")} & ours
    assert len(lost) <= 1, f"answers lost for {sorted(lost)}"
    refused = {r["step_id"] for r in rows if r["skipped"] and not r["skipped"].startswith("key holder")}
    assert not (refused & ours), f"skipped but decrypted: {sorted(refused & ours)}"
    return logged


@pytest.fixture(scope="module")
def live(deployment: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Key holder, three clients and a server training (up to 400 steps, a checkpoint every step)."""
    fed, _, _ = configure(deployment, RUN, steps=400)
    update_toml(
        fed / "server/server.toml",
        {
            "secure": {"deadline_seconds": DEADLINE, "retries": 1},
            "eval": {"limit": 0},
            # a silent client is dropped after 3 heartbeats = 15 s: a stalled one stays online past the
            # deadline, so a step must pass it over by the deadline alone
            "service": {"heartbeat_seconds": 5.0},
        },
    )
    processes = ProcessGroup(tmp_path_factory.mktemp("faults-logs"))
    federation = Live(fed, deployment / RUN, processes)
    try:
        start_federation(fed, processes)
        federation.start_server()
        federation.next_row(
            lambda r: len(contributors(r)) == 3, timeout=240, what="a first step by all three"
        )
        yield federation
    finally:
        processes.stop_all()


@pytest.mark.slow
@pytest.mark.timeout(180, func_only=True)
def test_a_client_killed_mid_step_rejoins_and_contributes_again(live: Live) -> None:
    yesno = live.processes.started["yesno"]
    yesno.send_signal(signal.SIGSTOP)  # hold it so that the next task is surely pending when it dies
    step = live.reserve_wait()
    yesno.send_signal(signal.SIGKILL)
    yesno.wait(10)
    row = live.row(step)
    assert contributors(row) == {"color", "shape"}, row
    assert not row["skipped"]
    # its stream closed with it: the step went on at once, without waiting for the deadline
    assert float(row["waiting_seconds"]) < DEADLINE, row

    live.processes.start("yesno", "client", "join", "--config", str(live.fed / "clients/yesno/client.toml"))
    back = live.next_row(lambda r: "yesno" in contributors(r), what="the restarted client to contribute")
    assert contributors(back) == {"color", "shape", "yesno"}
    assert not any(
        r["skipped"] for r in steps_of(live.run) if number(r["step_id"]) >= number(step)
    )  # k_min = 2 held
    check_logs_agree(live)


@pytest.mark.slow
@pytest.mark.timeout(180, func_only=True)
def test_a_stalled_client_is_passed_over_at_the_deadline_and_two_stalls_skip_the_step(live: Live) -> None:
    color, shape = live.processes.started["color"], live.processes.started["shape"]
    try:
        color.send_signal(signal.SIGSTOP)  # its TCP stream stays open but nothing comes back
        row = live.row(live.reserve_wait())
        assert contributors(row) == {"shape", "yesno"}, row
        assert DEADLINE - 0.5 <= float(row["waiting_seconds"]) < DEADLINE + 5, row  # waited, then went on

        shape.send_signal(signal.SIGSTOP)  # now only one client answers: below k_min = 2
        skipped = live.next_row(lambda r: bool(r["skipped"]), what="a step skipped under k_min")
        assert "k_min = 2" in skipped["skipped"], skipped
        assert skipped["step_id"] not in decryptions(live.fed)  # never sent to the key holder
    finally:
        color.send_signal(signal.SIGCONT)
        shape.send_signal(signal.SIGCONT)
    # resumed, they answer again (on their old streams, or on new ones if they were dropped meanwhile)
    live.next_row(lambda r: len(contributors(r)) == 3, what="all three clients to contribute again")
    check_logs_agree(live)


@pytest.mark.slow
@pytest.mark.timeout(180, func_only=True)
def test_the_key_holder_killed_and_restarted_never_decrypts_a_step_twice(live: Live) -> None:
    before = check_logs_agree(live)
    keyholder = live.processes.started["keyholder"]
    keyholder.send_signal(signal.SIGKILL)
    keyholder.wait(10)
    down = live.next_row(lambda r: bool(r["skipped"]), what="a step skipped while the key holder is down")
    assert "key holder refused" in down["skipped"], down
    assert "UNAVAILABLE" in down["skipped"], down

    live.processes.start(
        "keyholder", "keyholder", "serve", "--config", str(live.fed / "keyholder/keyholder.toml")
    )
    live.next_row(lambda r: not r["skipped"], what="a step decrypted by the restarted key holder")
    after = check_logs_agree(live)
    assert after[: len(before)] == before  # the log was only appended to
    assert "decryption(s) in the log" in live.processes.tail("keyholder", 40)  # it re-read its log


@pytest.mark.slow
@pytest.mark.timeout(300, func_only=True)
def test_the_server_killed_and_resumed_loses_and_duplicates_no_entry(live: Live) -> None:
    from secure_mor.server.training import last_complete_checkpoint

    live.next_row(lambda r: not r["skipped"], what="a step to checkpoint")
    server = live.processes.started["server"]
    server.send_signal(signal.SIGKILL)
    server.wait(10)
    reserved, rows_before = live.counter(), steps_of(live.run)
    checkpoint = last_complete_checkpoint(live.run / "checkpoints")
    assert checkpoint is not None
    update_toml(live.server_toml, {"grpo": {"steps": checkpoint[1] + 2}})
    resumed = live.start_server("--resume")
    assert resumed.wait(240) == 0, live.processes.tail("server", 40)

    # the secure steps: rows are only appended to, and the resumed run takes fresh step ids
    rows = steps_of(live.run)
    assert rows[: len(rows_before)] == rows_before
    new = [number(r["step_id"]) for r in rows[len(rows_before) :]]
    assert len(new) >= 2, new
    assert new == sorted(new), new
    assert new[0] >= reserved, new
    # the training log: each optimizer step once, none lost (the steps after the checkpoint were redone)
    with (live.run / "train_log.csv").open() as file:
        logged = [int(r["step"]) for r in csv.DictReader(file)]
    assert logged == list(range(1, checkpoint[1] + 3)), logged
    # the decryption log verifies and agrees; at most the step in flight at the kill has no server row
    decrypted = set(check_logs_agree(live))
    orphans = {s for s in decrypted if s.startswith(f"{RUN}/")} - {r["step_id"] for r in rows}
    assert orphans <= {f"{RUN}/{reserved - 1}"}, orphans
    # the offline audit passes (exit 0), its anchors included: a step whose answer was lost at a kill is a
    # warning (requested, decrypted, no receipt), never a failure
    output = run_cli("audit", str(live.fed), str(live.run))
    assert "decryption.policy" in output
    assert "anchors.receipt" in output


@pytest.mark.timeout(120, func_only=True)
def test_a_full_disk_refuses_the_decryption_and_keeps_the_log_whole(tmp_path: Path) -> None:
    """The key holder under a 3,000-byte file-size limit (as a full disk looks to it): once the
    decryption log cannot take another entry, each request is refused with RESOURCE_EXHAUSTED naming
    the log, no value is released, the log still verifies, and after the disk is freed the refused step
    is decrypted (it never was) while the earlier ones stay refused as replays."""
    federation = create_federation(tmp_path / "fed", ("alice", "bob", "carol"))
    toml = federation.root / "keyholder/keyholder.toml"
    port = free_port()
    update_toml(toml, {"service": {"listen": f"127.0.0.1:{port}"}})
    config = load_config(KeyholderConfig, toml)
    SecretContext.generate(config.ckks).save(config.storage.secret_context)  # before the limit: ~MBs
    log = config.storage.decryption_log

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    keyholder = subprocess.Popen(  # output to a pipe: a log *file* would hit the limit too
        [*CLI, "keyholder", "serve", "--config", str(toml)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=limited,
    )
    try:
        public = poll(lambda: _try_fetch(federation, port), 60, "the key holder to serve")
        server = stub_for(federation, "server", port)
        rng = np.random.default_rng(0)
        decrypted, refusal = [], None
        for i in range(12):
            request = make_request(federation, public, f"disk/{i}", rng.random((3, 16)), uniform(3, 16))
            try:
                server.DecryptAggregate(request, timeout=30)
                decrypted.append(request.step_id)
            except grpc.RpcError as error:
                refusal = error
                break
        assert decrypted, "the first decryption was already refused"
        assert refusal is not None, "the limit was never reached"
        assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.details()
        assert str(log) in (refusal.details() or "")
        assert "no value was released" in (refusal.details() or "")
        again = make_request(federation, public, "disk/again", rng.random((3, 16)), uniform(3, 16))
        with pytest.raises(grpc.RpcError) as second:
            server.DecryptAggregate(again, timeout=30)
        assert second.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # still serving, still refusing
        keys = {"keyholder": load_trust(federation.root / "server/trust.toml")["keyholder"]}
        assert [e.payload["step_id"] for e in read_log(log, keys)] == decrypted  # no torn line
    finally:
        keyholder.send_signal(signal.SIGTERM)
        output = keyholder.communicate(timeout=30)[0].decode(errors="replace")
    assert keyholder.returncode == 0, output
    assert "Traceback" not in output, output

    restarted = subprocess.Popen(
        [*CLI, "keyholder", "serve", "--config", str(toml)], stdout=subprocess.DEVNULL
    )
    try:
        poll(lambda: _try_fetch(federation, port), 60, "the restarted key holder to serve")
        server = stub_for(federation, "server", port)
        failed = make_request(
            federation, public, f"disk/{len(decrypted)}", rng.random((3, 16)), uniform(3, 16)
        )
        assert server.DecryptAggregate(failed, timeout=30).log_seq == len(decrypted)
        replay = make_request(federation, public, decrypted[0], rng.random((3, 16)), uniform(3, 16))
        with pytest.raises(grpc.RpcError) as info:
            server.DecryptAggregate(replay, timeout=30)
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(30)
    assert len(read_log(log, keys)) == len(decrypted) + 1


@pytest.mark.timeout(120, func_only=True)
def test_a_server_whose_run_folder_cannot_be_written_names_it_and_stops(tmp_path: Path) -> None:
    """``server train`` on a disk that takes no more than 1 KiB a file (libraries' own tiny temp files
    still fit) stops before any work: one line naming the run folder, exit status 2, no traceback."""
    toml = create_federation(tmp_path / "fed", ("alice", "bob")).root / "server/server.toml"
    run = tmp_path / "run"
    update_toml(toml, {"run": {"run_dir": str(run)}})

    def full() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    done = subprocess.run(
        [*CLI, "server", "train", "--config", str(toml)],
        capture_output=True,
        text=True,
        timeout=110,
        preexec_fn=full,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"run.run_dir {run}: cannot write to the run folder" in " ".join(done.stderr.split()), done.stderr
    assert not any(run.iterdir())  # nothing half-written


def _try_fetch(federation: Federation, port: int) -> PublicContext | None:
    """The key holder's verified public context, or ``None`` while it does not answer yet."""
    try:
        return fetch_public(federation, port)
    except grpc.RpcError:
        return None


def test_a_resume_starts_from_the_last_complete_checkpoint_and_drops_later_log_rows(tmp_path: Path) -> None:
    """A server killed while saving leaves ``checkpoint-N`` without ``trainer_state.json`` (TRL writes it
    last): the resume takes the newest complete one, and the training log forgets the steps after it."""
    from secure_mor.server.training import _CsvLog, last_complete_checkpoint

    checkpoints = tmp_path / "checkpoints"
    for step, complete in ((2, True), (3, True), (4, False), (10, False)):
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (checkpoints / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (checkpoints / "checkpoint-x").mkdir()
    assert last_complete_checkpoint(checkpoints) == (checkpoints / "checkpoint-3", 3)
    assert last_complete_checkpoint(tmp_path / "none") is None

    log = _CsvLog(tmp_path / "train_log.csv", ["step", "reward"], None, "grpo")
    for step in range(1, 6):
        log.write({"step": step, "reward": step / 10})
    assert log.keep_through(3) == 2
    log.write({"step": 4, "reward": 0.4})
    with (tmp_path / "train_log.csv").open() as file:
        assert [r["step"] for r in csv.DictReader(file)] == ["1", "2", "3", "4"]
