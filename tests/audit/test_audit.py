"""``secure-mor audit`` on a real federation's logs, honest and altered: every alteration is named.

The honest run: a kit from ``create_federation``; privacy ledgers written by the client's own
``PrivacyLedger`` with ε from Opacus' PRV accountant; a decryption log written by a real key holder
serving real ``DecryptAggregate`` calls over mTLS, sent by the server's ``SecureFusion``, which keeps the
receipts in the run's anchors log beside each client's signed ledger head (as the server records them
at join). Each test copies the run and alters one thing. The same alterations on a run of separate
processes are in ``tests/test_integration.py``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from secure_mor.anchors import ANCHORS_FILE, ClientJoined, LedgerHead, RunStarted
from secure_mor.audit import Auditor, AuditReport, Finding, Status, load_budgets
from secure_mor.cli import main
from secure_mor.client.ledger import DpEvent, DpRun, PrivacyLedger, ledger_head, prv_epsilon
from secure_mor.config import load_config
from secure_mor.crypto.keyholder import start_keyholder
from secure_mor.crypto.keyholder_config import KeyholderConfig
from secure_mor.crypto.provision import create_federation
from secure_mor.crypto.signed_log import SignedLog, signed_bytes
from secure_mor.crypto.signing import SigningKey
from secure_mor.crypto.wire import sign_contribution
from secure_mor.server.anchors import RunAnchors
from secure_mor.server.fusion import EncryptedScores, SecureFusion

from ..crypto.conftest import client_key, fetch_public, stub_for

CLIENTS = ("alice", "bob", "carol")
LEDGER = "state/privacy_ledger.jsonl"
ANCHORS = f"server/run/{ANCHORS_FILE}"  # the server's default run folder lies in its kit


def signing_key(kit: Path, party: str, identity: str) -> SigningKey:
    return SigningKey.load(identity, kit / party / "signing" / "ed25519.key")


def record_runs(kit: Path, name: str, runs: list[tuple[float, float, int]], budget: float) -> None:
    ledger = PrivacyLedger(
        kit / "clients" / name / LEDGER, signing_key(kit, f"clients/{name}", f"client:{name}")
    )
    for sigma, rate, steps in runs:
        events = (DpEvent(sigma, rate, steps),)
        epsilon = prv_epsilon(events, 1e-5)
        ledger.record_dp(
            DpRun(
                dataset_size=800,
                events=events,
                max_grad_norm=1.0,
                delta=1e-5,
                epsilon=epsilon,
                epsilon_requested=round(epsilon + 0.05, 2),
                architecture="compact",
                grad_sample_mode="ghost",
            ),
            budget,
        )
    ledger.record_non_private(800, 10, "compact")
    ledger.close()


@pytest.fixture(scope="module")
def honest_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    federation = create_federation(tmp_path_factory.mktemp("run") / "fed", CLIENTS)
    kit = federation.root
    record_runs(kit, "alice", [(1.0, 0.05, 200), (1.2, 0.05, 100)], budget=8.0)
    record_runs(kit, "bob", [(1.1, 0.04, 250)], budget=8.0)
    config = load_config(KeyholderConfig, kit / "keyholder" / "keyholder.toml")
    config = dataclasses.replace(config, service=dataclasses.replace(config.service, listen="127.0.0.1:0"))
    anchors = RunAnchors(kit / ANCHORS, signing_key(kit, "server", "server"))
    anchors.record(RunStarted("run", resumed=False))
    for name in ("alice", "bob"):  # what the server records when their Hellos announce their ledgers
        identity = f"client:{name}"
        head = ledger_head(kit / "clients" / name / LEDGER, signing_key(kit, f"clients/{name}", identity))
        anchors.record(ClientJoined(identity, head))
    keyholder = start_keyholder(config)
    try:
        public = fetch_public(federation, keyholder.port)
        fusion = SecureFusion(public, stub_for(federation, "server", keyholder.port), anchors=anchors)
        for step in range(2):
            step_id = f"run/step-{step}"
            answers = []
            for name in CLIENTS:
                vector = public.encrypt(np.full(8, 0.5))
                contribution = sign_contribution(client_key(federation, name), step_id, vector)
                answers.append(EncryptedScores(f"client:{name}", vector, contribution))
            fusion.fuse(step_id, answers, np.full((8, 3), 1 / 3))
    finally:
        keyholder.stop(None)
        anchors.close()
    return kit


@pytest.fixture
def run(honest_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "fed"
    shutil.copytree(honest_run, copy)
    return copy


def failing(report: AuditReport, check: str) -> list[Finding]:
    return [f for f in report.findings if f.check == check and f.status is Status.FAIL]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_honest_logs_pass(run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = Auditor().run([run])
    assert report.passed, [f for f in report.findings if f.status is not Status.PASS]
    alice = next(c for c in report.clients if c.identity == "client:alice")
    assert alice.dp_runs == 2
    assert alice.non_private_runs == 1
    assert alice.epsilon_claimed == pytest.approx(alice.epsilon_prv, rel=1e-6)
    assert alice.epsilon_rdp > alice.epsilon_prv  # RDP is the looser bound
    assert alice.remaining == pytest.approx(8.0 - alice.epsilon_prv)
    (decryptions,) = report.decryptions
    assert decryptions.decryptions == 2
    assert decryptions.min_contributors == 3
    passed = {(f.check, f.subject) for f in report.findings if f.status is Status.PASS}
    assert {("anchors.receipt", "server"), ("anchors.requested", "run")} <= passed
    assert {("anchors.ledger_head", "client:alice"), ("anchors.ledger_head", "client:bob")} <= passed
    assert alice.announced_seq == 2  # her head: the non-private run after her two DP runs
    assert alice.epsilon_announced == pytest.approx(alice.epsilon_spent)
    assert (
        main(["audit", str(run), "--json", str(tmp_path / "a.json"), "--markdown", str(tmp_path / "a.md")])
        == 0
    )
    document = json.loads((tmp_path / "a.json").read_text())
    assert document["schema"] == 1
    assert document["passed"] is True
    assert {c["identity"] for c in document["clients"]} == {"client:alice", "client:bob"}
    assert {c["announced_seq"] for c in document["clients"]} == {2, 1}
    markdown = (tmp_path / "a.md").read_text()
    assert "**Result: PASSED**" in markdown
    assert f"| {alice.epsilon_announced:.4g} (seq 2) |" in markdown


def test_a_changed_number_is_caught(run: Path) -> None:
    ledger = run / "clients/alice" / LEDGER
    lines = lines_of(ledger)
    lines[1] = lines[1].replace(b'"dataset_size":800', b'"dataset_size":900')
    ledger.write_bytes(b"".join(lines))
    (finding,) = failing(Auditor().run([run]), "log.integrity")
    assert f"{ledger}:2: signature of 'client:alice' does not verify" in finding.message


def test_a_removed_line_is_caught(run: Path) -> None:
    ledger = run / "clients/alice" / LEDGER
    lines = lines_of(ledger)
    ledger.write_bytes(lines[0] + lines[2])
    (finding,) = failing(Auditor().run([run]), "log.integrity")
    assert f"{ledger}:2: seq is 2, expected 1" in finding.message


def test_two_swapped_lines_are_caught(run: Path) -> None:
    ledger = run / "clients/alice" / LEDGER
    lines = lines_of(ledger)
    ledger.write_bytes(lines[1] + lines[0] + lines[2])
    (finding,) = failing(Auditor().run([run]), "log.integrity")
    assert f"{ledger}:1: seq is 1, expected 0" in finding.message


def test_a_forged_signature_is_caught(run: Path) -> None:
    log = run / "keyholder/logs/decryptions.jsonl"
    lines = lines_of(log)
    entry = json.loads(lines[1])
    entry["payload"]["contributors"] = entry["payload"]["contributors"][:1]
    forger = SigningKey.generate("keyholder")  # the forger signs the edit with a key of its own
    body = {k: v for k, v in entry.items() if k != "sig"}
    entry["sig"] = base64.b64encode(forger.sign(signed_bytes(body))).decode()
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    log.write_bytes(b"".join(lines))
    report = Auditor().run([run])
    (finding,) = failing(report, "log.integrity")
    assert f"{log}:2: signature of 'keyholder' does not verify" in finding.message
    assert not failing(report, "anchors.receipt")  # a broken log is one failure, not a missing one too


def test_a_foreign_key_is_caught(run: Path) -> None:
    # An operator rewrites alice's ledger under a key of its own and swaps her public key in her kit.
    ledger = run / "clients/alice" / LEDGER
    foreign = SigningKey.generate("client:alice")
    ledger.unlink()
    rewritten = SignedLog(ledger, foreign)
    rewritten.append(
        "non_private_run",
        {
            "schema": 1,
            "privacy_unit": "preference_pair",
            "dataset_size": 1,
            "steps": 1,
            "architecture": "compact",
            "epsilon": None,
        },
    )
    rewritten.close()
    (run / "clients/alice/signing/ed25519.pub").write_text(foreign.public.to_text() + "\n")
    report = Auditor().run([run])
    findings = failing(report, "keys.consistent")
    assert findings  # every kit that pins alice's real key disagrees with the swapped one
    assert all("two different signing keys for 'client:alice'" in f.message for f in findings)
    assert not report.passed


def test_an_entry_appended_by_another_author_is_caught(run: Path) -> None:
    ledger_path = run / "clients/alice" / LEDGER
    bob = signing_key(run, "clients/bob", "client:bob")
    keys = {
        "client:alice": signing_key(run, "clients/alice", "client:alice").public,
        "client:bob": bob.public,
    }
    log = SignedLog(ledger_path, bob, keys)
    log.append(
        "non_private_run",
        {
            "schema": 1,
            "privacy_unit": "preference_pair",
            "dataset_size": 5,
            "steps": 1,
            "architecture": "compact",
            "epsilon": None,
        },
    )
    log.close()
    (finding,) = failing(Auditor().run([run]), "log.single_author")
    assert "entry by 'client:bob' in the log of 'client:alice'" in finding.message
    assert finding.location == f"{ledger_path}:4"


def test_a_budget_overrun_is_caught(run: Path, tmp_path: Path) -> None:
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[budgets]\nalice = 1.0\n"client:bob" = 10.0\n')
    assert main(["audit", str(run), "--budget", str(budgets)]) == 1
    report = Auditor(budgets=load_budgets(budgets)).run([run])
    (finding,) = failing(report, "ledger.budget")
    assert finding.subject == "client:alice"
    assert "exceeds the budget ε = 1" in finding.message


def test_an_epsilon_claim_below_the_recomputation_is_caught(run: Path) -> None:
    ledger = run / "clients/bob" / LEDGER
    bob = signing_key(run, "clients/bob", "client:bob")
    log = PrivacyLedger(ledger, bob)
    events = (DpEvent(0.6, 0.1, 300),)  # a weak mechanism …
    log.record_dp(DpRun(800, events, 1.0, 1e-5, 0.5, 0.5, "compact", "ghost"), 100.0)  # … claimed as ε = 0.5
    log.close()
    report = Auditor().run([run])
    (finding,) = failing(report, "ledger.epsilon_claim")
    assert finding.subject == "client:bob"
    assert "claimed ε = 0.5 is below the PRV recomputation" in finding.message
    assert finding.location == f"{ledger}:3"


def test_a_decryption_with_too_few_contributors_is_caught(run: Path) -> None:
    log_path = run / "keyholder/logs/decryptions.jsonl"
    keyholder = signing_key(run, "keyholder", "keyholder")
    log = SignedLog(log_path, keyholder)
    payload = dict(log.entries[-1].payload)
    payload.update(step_id="run/step-9", contributors=["client:alice"], max_weight=1.0)
    log.append("decryption", payload)
    log.close()
    report = Auditor().run([run])
    assert {f.check for f in report.findings if f.status is Status.FAIL} == {
        "decryption.k_min",
        "decryption.w_max",
        "anchors.requested",  # and the server never asked for it
    }
    (finding,) = failing(report, "decryption.k_min")
    assert finding.message == "1 contributor(s), policy needs ≥ 2"


def test_a_step_decrypted_twice_is_caught(run: Path) -> None:
    log = SignedLog(run / "keyholder/logs/decryptions.jsonl", signing_key(run, "keyholder", "keyholder"))
    log.append("decryption", dict(log.entries[0].payload))
    log.close()
    (finding,) = failing(Auditor().run([run]), "decryption.once")
    assert finding.subject == "run/step-0"


def test_garbage_and_empty_inputs_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x00\x01 not a log\n")
    (tmp_path / "empty").mkdir()
    for args, message in (
        ([str(garbage)], "not a secure-mor signed log"),
        ([str(tmp_path / "empty")], "no signed logs found under"),
        ([str(tmp_path / "absent")], "no such file or folder"),
    ):
        assert main(["audit", *args]) == 2
        err = capsys.readouterr().err
        assert message in err
        assert "Traceback" not in err


def test_logs_without_their_kit_cannot_be_verified(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(run / "clients/alice" / LEDGER)]) == 2
    assert "no pinned signing keys found" in capsys.readouterr().err


def test_strict_fails_on_a_warning(run: Path) -> None:
    # A legitimate small-ε run where the RDP bound is much looser than PRV: a warning, not a violation.
    record_runs(run, "carol", [(1.5, 0.02, 30)], budget=8.0)
    report = Auditor().run([run])
    assert report.passed
    warnings = {(f.check, f.subject) for f in report.findings if f.status is Status.WARN}
    # (her ledger's head was never announced to the server: its completeness is not known either)
    assert warnings == {("ledger.accountants_agree", "client:carol"), ("anchors.missing", "client:carol")}
    assert main(["audit", str(run)]) == 0
    assert main(["audit", str(run), "--strict"]) == 1


# --- anchors: the logs are whole --------------------------------------------------------------------


def test_a_ledger_cut_back_below_its_announced_head_is_caught(run: Path) -> None:
    ledger = run / "clients/alice" / LEDGER
    ledger.write_bytes(b"".join(lines_of(ledger)[:-1]))  # a shorter chain, valid on its own
    report = Auditor().run([run])
    assert not failing(report, "log.integrity")
    (finding,) = failing(report, "anchors.ledger_head")
    assert finding.subject == "client:alice"
    assert "client:alice announced its ledger head seq 2" in finding.message
    assert f"but {ledger} ends at seq 1: the ledger was cut back" in finding.message
    assert finding.location == f"{run / ANCHORS}:2"  # the server's record of the announcement


def test_a_ledger_rewritten_by_its_own_client_is_caught(run: Path) -> None:
    # alice rewrites her history under her own key (every signature verifies): the announced head is gone
    ledger = run / "clients/alice" / LEDGER
    ledger.unlink()
    record_runs(run, "alice", [(1.0, 0.05, 200), (1.4, 0.05, 100)], budget=8.0)  # her second run, changed
    (finding,) = failing(Auditor().run([run]), "anchors.ledger_head")
    assert f"but entry seq 2 of {ledger} has hash" in finding.message
    assert "the ledger was rewritten" in finding.message


def test_an_announcement_the_client_never_signed_is_caught(run: Path) -> None:
    forged = LedgerHead.sign(signing_key(run, "server", "server"), 0, "0" * 64)  # the server's own key
    anchors = RunAnchors(run / ANCHORS, signing_key(run, "server", "server"))
    anchors.record(ClientJoined("client:bob", forged))
    anchors.close()
    (finding,) = failing(Auditor().run([run]), "anchors.signature")
    assert finding.subject == "client:bob"
    assert "does not carry 'client:bob''s signature" in finding.message


def test_a_decryption_log_rewritten_from_an_entry_on_is_caught(run: Path) -> None:
    # The key holder replaces its last entry by another one under its own key: the chain verifies.
    path = run / "keyholder/logs/decryptions.jsonl"
    last = lines_of(path)[-1]
    path.write_bytes(b"".join(lines_of(path)[:-1]))
    log = SignedLog(path, signing_key(run, "keyholder", "keyholder"))
    payload = dict(json.loads(last)["payload"])
    log.append("decryption", {**payload, "count": 9})
    log.close()
    report = Auditor().run([run])
    (finding,) = failing(report, "anchors.receipt")
    assert finding.subject == "run/step-1"
    assert f"entry seq 1 of {path} is another" in finding.message
    assert finding.location == f"{run / ANCHORS}:7"


def test_a_run_without_anchors_still_audits_with_a_warning(run: Path) -> None:
    (run / ANCHORS).unlink()  # as a run made before anchors existed
    (run / "server/run/secure_steps.csv").write_text("step_id\nrun/step-0\nrun/step-1\n")
    report = Auditor().run([run])
    assert report.passed
    missing = [f for f in report.findings if f.check == "anchors.missing"]
    assert all(f.status is Status.WARN for f in missing)
    assert {f.subject for f in missing} == {
        str(run / "server/run"),
        "key holder",
        "client:alice",
        "client:bob",
    }
    assert any("completeness could not be checked" in f.message for f in missing)
