"""``secure-mor experiment``: the grid's config, its resumable results file, its table, a tiny real run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from secure_mor.cli import main
from secure_mor.config import from_mapping
from secure_mor.errors import ConfigError
from secure_mor.experiment.report import write_report
from secure_mor.experiment.results import Cell, CellResult, ResultsFileError, ResultStore
from secure_mor.experiment.runner import Experiment, ExperimentError
from secure_mor.experiment.settings import ExperimentConfig

from ._grids import tiny_grid_tables


def _result(method: str, epsilon: float | None, seed: int, overall: float) -> CellResult:
    accuracy = {"overall": overall, "color": overall}
    expected = {"overall": round(overall - 0.1, 4), "color": round(overall - 0.1, 4)}
    return CellResult(Cell(method, epsilon, seed), accuracy, 1.0, {}, expected)


@pytest.mark.parametrize(
    ("table", "field", "expected"),
    [
        ({"experiment": {"methods": ["router", "single:nobody"]}}, "experiment.methods", "single:nobody"),
        ({"experiment": {"methods": ["router", "router"]}}, "experiment.methods", "listed twice"),
        ({"experiment": {"epsilons": [3.0, 0.0]}}, "experiment.epsilons", "> 0"),
        ({"experiment": {"seeds": [0, 0]}}, "experiment.seeds", "listed twice"),
        ({"fedavg": {"rounds": 0}}, "fedavg.rounds", "≥ 1"),
        ({"grpo_steps": 3}, "grpo_steps", "unknown field"),
        ({"simulate": {"epsilon": 3.0}}, "simulate", "unknown table"),
    ],
)
def test_bad_grid_is_refused_naming_the_field(table: dict[str, object], field: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        from_mapping(ExperimentConfig, table)
    assert field in str(error.value)
    assert expected in str(error.value)


def test_grid_order_runs_shared_methods_once_and_private_ones_per_epsilon() -> None:
    config = from_mapping(
        ExperimentConfig,
        {
            "experiment": {
                "methods": ["base", "gold", "router", "single:color"],
                "epsilons": [math.inf, 3.0],
                "seeds": [0, 1],
            }
        },
    )
    cells = Experiment(config).cells()
    assert cells[0] == Cell("base", None, 0)  # deterministic: one cell
    assert [c for c in cells if c.method == "gold"] == [Cell("gold", None, 0), Cell("gold", None, 1)]
    private = [c for c in cells if c.epsilon is not None]
    assert len(private) == 2 * 2 * 2
    assert len(set(cells)) == len(cells)
    assert {c.name for c in cells} >= {"router_eps-inf_seed-0", "single-color_eps-3_seed-1"}


def test_results_file_round_trips_and_refuses_a_foreign_header(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.csv")
    written = [
        _result("router", 3.0, 0, 0.81),
        _result("gold", None, 1, 0.9),
        _result("uniform", math.inf, 2, 0.8),
    ]
    for result in written:
        store.append(result)
    assert store.load() == written
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ResultsFileError, match=r"other\.csv"):
        ResultStore(tmp_path / "other.csv").load()
    with (tmp_path / "results.csv").open("a") as file:
        file.write("router,3,notaseed,0.1,,,,1.0,{}\n")
    with pytest.raises(ResultsFileError, match=r"results.csv:5"):
        store.load()


def test_table_reports_mean_and_std_and_judges_the_claim_from_the_numbers(tmp_path: Path) -> None:
    config = from_mapping(
        ExperimentConfig,
        {
            "experiment": {
                "out": str(tmp_path),
                "methods": ["uniform", "single:color", "router", "gold"],
                "epsilons": [3.0, 1.0],
            }
        },
    )
    results = [
        *(_result("router", 3.0, s, v) for s, v in enumerate((0.80, 0.82, 0.84))),
        *(_result("uniform", 3.0, s, v) for s, v in enumerate((0.79, 0.79, 0.79))),
        *(_result("single:color", 3.0, s, v) for s, v in enumerate((0.70, 0.72, 0.74))),
        *(_result("router", 1.0, s, v) for s, v in enumerate((0.70, 0.70, 0.70))),
        *(_result("uniform", 1.0, s, v) for s, v in enumerate((0.75, 0.75, 0.75))),
        *(_result("gold", None, s, v) for s, v in enumerate((0.90, 0.90, 0.93))),
    ]
    text = write_report(config, results).read_text()
    assert "| router | 82.0 ± 2.0 | 70.0 ± 0.0 |" in text
    assert "| gold | 91.0 ± 1.7 | 91.0 ± 1.7 |" in text  # no ε: the same runs under every ε
    assert "greedy, ε = 3: MoR 82.0 %; it holds (beats uniform, single:color); gold 91.0 %" in text
    assert "greedy, ε = 1: MoR 70.0 %; it does not hold (beats none; not uniform)" in text
    assert "expected, ε = 3: MoR 72.0 %; it holds" in text
    assert (tmp_path / "accuracy_vs_epsilon.png").stat().st_size > 1000


@pytest.mark.slow
def test_tiny_grid_runs_every_method_and_resumes_without_recomputing(
    tmp_path: Path, quick_base_cache: Path
) -> None:
    config = tmp_path / "grid.toml"
    config.write_text(
        f"""[experiment]
out = "{tmp_path / "out"}"
methods = ["base", "single:color", "router", "gold", "fedavg-dpo"]
epsilons = [3.0]
seeds = [0]

[base]
steps = 150
cache = "{quick_base_cache}"
"""
        + tiny_grid_tables(eval_limit=24, clusters=2)
        + """
[fedavg]
rounds = 1
local_steps = 1
batch_size = 4
"""
    )
    assert main(["experiment", "--config", str(config)]) == 0
    out = tmp_path / "out"
    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    expected = {("base", ""), ("gold", ""), ("single:color", "3"), ("router", "3"), ("fedavg-dpo", "3")}
    assert {(r["method"], r["epsilon"]) for r in rows} == expected
    assert len(rows) == len(expected)
    assert all(0 <= json.loads(r["accuracy"])["overall"] <= 1 for r in rows)
    assert all(0 <= json.loads(r["expected"])["overall"] <= 1 for r in rows)
    assert all(set(json.loads(r["accuracy"])) == {"color", "shape", "yesno", "overall"} for r in rows)
    router = next(r for r in rows if r["method"] == "router")
    weights = json.loads(router["details"])["router_weights"]  # mean weight per kind and client
    assert weights
    assert all(abs(sum(per_client.values()) - 1) < 1e-3 for per_client in weights.values())
    assert (out / "router_weights.png").stat().st_size > 1000
    # the clients' DP training left signed ledgers in each kit, and ε was respected
    assert (out / "kits" / "eps-3_seed-0" / "clients" / "color").is_dir()
    assert main(["audit", str(out / "kits" / "eps-3_seed-0")]) == 0
    # a second run recomputes nothing: the results file is unchanged
    before = (out / "results.csv").read_bytes()
    assert main(["experiment", "--config", str(config)]) == 0
    assert (out / "results.csv").read_bytes() == before
    text = (out / "results.md").read_text()
    assert "| router |" in text
    assert "text-only baseline" in text
    # what each client knows (its own kind from public start to trained) and the router's weight matrix
    knows = text.split("## What each client's reward model knows")[1].split("\n## ")[0]
    assert "### ε = 3" in knows
    assert "| color | " in knows
    assert " → " in knows
    matrix = text.split("## The router's mean weight per client")[1].split("\n## ")[0]
    assert all(f"| {kind} | " in matrix for kind in weights)


def test_resuming_with_other_cell_settings_is_refused_but_a_larger_grid_is_not(tmp_path: Path) -> None:
    def experiment(grid: dict[str, object] | None = None, **table: object) -> Experiment:
        document = {"experiment": {"out": str(tmp_path), "methods": ["base"], **(grid or {})}, **table}
        return Experiment(from_mapping(ExperimentConfig, document))

    experiment(grid={"seeds": [0]})._check_settings()
    experiment(grid={"seeds": [0, 1], "epsilons": [3.0]})._check_settings()  # the grid may grow
    was = ExperimentConfig().grpo.steps
    with pytest.raises(ExperimentError, match=rf"grpo\.steps: was {was}, now 7"):
        experiment(grpo={"steps": 7})._check_settings()
