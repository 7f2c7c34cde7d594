"""``secure-mor simulate --quick``: the whole federation as processes, audited, with a report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from secure_mor.cli import main
from secure_mor.simulate.settings import SimulateConfig


@pytest.mark.slow
def test_simulate_quick_trains_audits_and_reports(
    tmp_path: Path, quick_base_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the README runs it: relative --out and --config, from a folder that is not the repository's.
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "simulate.toml").write_text(f'[base]\ncache = "{quick_base_cache}"\n')
    monkeypatch.chdir(work)
    assert main(["simulate", "--quick", "--out", "runs/sim", "--config", "simulate.toml"]) == 0
    out = work / "runs" / "sim"

    report = (out / "report.md").read_text()
    for section in (
        "## Clients' reward models",
        "## Test accuracy per kind",
        "## GRPO on the MoR reward",
        "## Router",
        "## Secure path per step",
        "## Audit: PASSED",
    ):
        assert section in report
    plots = (
        "accuracy.png",
        "reward.png",
        "router.png",
        "router_by_kind.png",
        "secure_path.png",
        "privacy.png",
    )
    for plot in plots:
        assert (out / plot).stat().st_size > 1000
        assert f"]({plot})" in report
    accuracy_rows = [
        line for line in report.splitlines() if line.startswith(("| color", "| shape", "| yesno"))
    ]
    assert len(accuracy_rows) >= 3
    assert not any("–" in line for line in accuracy_rows)
    assert not (out / "fed" / "server" / "runs").exists()  # the run went where --out said
    audit = json.loads((out / "audit.json").read_text())
    assert audit["passed"]
    assert sorted(c["identity"] for c in audit["clients"]) == ["client:color", "client:shape", "client:yesno"]
    assert all(c["epsilon_prv"] <= 3.0 + 1e-6 for c in audit["clients"])  # each trained at ε = 3
    with (out / "run" / "secure_steps.csv").open() as file:
        steps = list(csv.DictReader(file))
    quick = SimulateConfig().quick()
    assert len(steps) == quick.grpo.steps
    assert all(not s["skipped"] and len(s["contributors"].split()) == 3 for s in steps)
    base, after = (json.loads((out / name).read_text()) for name in ("base_eval.json", "run/eval.json"))
    assert base["overall"]["questions"] == after["overall"]["questions"] == quick.eval.limit
    per_kind = quick.eval.limit // 3
    assert base["color"]["questions"] == base["shape"]["questions"] == base["yesno"]["questions"] == per_kind
    # The client with the best held-out accuracy taught its kind: the policy, answering as it does when
    # sampled, is right more often there than the base. (The quick run is too short to move greedy
    # answers reliably, even on the gold reward: the README's GRPO findings.)
    clients = json.loads((out / "clients.json").read_text())
    assert "What each reward model knows per kind" in report
    for name in ("color", "shape", "yesno"):
        ranking = clients[name]["ranking_top1"]
        assert set(ranking) == {"color", "shape", "yesno"}
        assert all(0.0 <= v <= 1.0 for v in ranking.values())
    assert clients["color"]["ranking_top1"]["color"] > 1 / 8  # the colour client beats chance on colours
    # Its public-only start is measured beside it, so the report shows what the private data added.
    assert set(clients["color"]["ranking_top1_start"]) == {"color", "shape", "yesno"}
    assert "| color | color | " in report.split("What the private data added")[1]
    # The router sends each kind to the client that knows it (the weight matrix per kind of prompt).
    weights = json.loads((out / "run" / "router_weights.json").read_text())
    print("router weights per kind:", weights)
    for kind in ("color", "shape", "yesno"):
        assert max(weights[kind], key=weights[kind].get).removeprefix("client:") == kind
        assert weights[kind][kind] >= 0.6  # w_max is 0.75
        assert all(w < 0.25 for name, w in weights[kind].items() if name != kind)
    best = max(clients, key=lambda name: clients[name]["heldout_accuracy"])
    assert f"Most accurate client: {best} " in report
    # The best client taught its kind (above), and no kind fell by 10 points or more (what cross-kind
    # reward hacking and collapse to one answer did before rewards were read off every public answer).
    print(
        "expected accuracy per kind, base → after:",
        {
            k: (base[k]["expected_accuracy"], after[k]["expected_accuracy"])
            for k in ("color", "shape", "yesno")
        },
    )
    assert after[best]["expected_accuracy"] > base[best]["expected_accuracy"] + 0.01
    for kind in ("color", "shape", "yesno"):
        assert after[kind]["expected_accuracy"] > base[kind]["expected_accuracy"] - 0.10
