"""``simulate`` and ``experiment`` on a user's own VQA set: not easy-VQA, written to disk by the test.

The set is what ``examples/make_squares.py`` writes (the README's "Your own data"): an image folder with
``metadata.jsonl``, 40 × 40 images, three kinds with their own names and disjoint answers, custom
column names. Everything downstream must follow the data: the shards, the base's tokenizer, the kinds
in reports and tables.
"""

from __future__ import annotations

import csv
import json
import runpy
from pathlib import Path

import pytest

from secure_mor.cli import main
from secure_mor.simulate.settings import load_simulate_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
write_square_vqa = runpy.run_path(str(EXAMPLES / "make_squares.py"))["write_square_vqa"]
KINDS = ("extent", "side", "tint")


DATA_TABLES = """
[data]
source = "{source}"
test_split = ""
[data.columns]
kind = "topic"
image_id = "picture"
[data.fractions]
foundation = 0.4
prompts = 0.15
calibration = 0.1
clients = 0.35
test = 0.2

[[clients]]
name = "tint"
architecture = "compact"

[[clients]]
name = "side"
architecture = "lora-vlm"

[[clients]]
name = "extent"
architecture = "compact"

[base]
cache = "{cache}"
steps = 150
"""


@pytest.fixture(scope="module")
def square_vqa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_square_vqa(tmp_path_factory.mktemp("own-data") / "squares")


def test_the_readme_example_config_loads_and_names_the_example_data() -> None:
    config = load_simulate_config(EXAMPLES / "own_data.toml")
    assert config.data.source == str((EXAMPLES.parent / "runs" / "squares").resolve())
    assert config.client_names == ("tint", "side", "extent")
    assert config.data.columns.kind == "topic"


def test_data_show_reads_the_folder_with_its_own_kinds(square_vqa: Path, tmp_path: Path) -> None:
    config = tmp_path / "data.toml"
    config.write_text(DATA_TABLES.format(source=square_vqa, cache=tmp_path / "cache").split("[[clients]]")[0])
    assert main(["data", "show", "--config", str(config)]) == 0


@pytest.mark.slow
def test_simulate_quick_runs_end_to_end_on_own_data(
    square_vqa: Path, tmp_path: Path, quick_base_cache: Path
) -> None:
    config = tmp_path / "own.toml"
    config.write_text(DATA_TABLES.format(source=square_vqa, cache=quick_base_cache))
    out = tmp_path / "sim"
    assert main(["simulate", "--quick", "--config", str(config), "--out", str(out)]) == 0

    report = (out / "report.md").read_text()
    assert f"Data: `{square_vqa}`" in report
    assert "## Audit: PASSED" in report
    for kind in KINDS:
        assert f"| {kind} |" in report  # the accuracy table and the router matrix use the data's kinds
    assert "color" not in report
    assert "yesno" not in report
    base, after = (json.loads((out / name).read_text()) for name in ("base_eval.json", "run/eval.json"))
    assert set(base) == set(after) == {*KINDS, "overall"}
    weights = json.loads((out / "run" / "router_weights.json").read_text())
    assert set(weights) == set(KINDS)
    assert all(set(per_client) == {"tint", "side", "extent"} for per_client in weights.values())
    clients = json.loads((out / "clients.json").read_text())
    assert {name: c["shard"] for name, c in clients.items()} == {
        "tint": "tint",
        "side": "side",
        "extent": "extent",
    }
    audit = json.loads((out / "audit.json").read_text())
    assert audit["passed"]
    assert sorted(c["identity"] for c in audit["clients"]) == ["client:extent", "client:side", "client:tint"]
    # the base was made from this data: its tokenizer knows its answer words
    server = (out / "fed" / "server" / "server.toml").read_text()
    assert str(square_vqa) in server  # the server's [data] table is the recipe's, written from it


@pytest.mark.slow
def test_tiny_experiment_grid_on_own_data(square_vqa: Path, tmp_path: Path, quick_base_cache: Path) -> None:
    config = tmp_path / "grid.toml"
    config.write_text(
        DATA_TABLES.format(source=square_vqa, cache=quick_base_cache)
        + f"""
[experiment]
out = "{tmp_path / "out"}"
methods = ["base", "single:tint", "router", "gold"]
epsilons = [3.0]
seeds = [0]

[reward_models]
pairs = 48
epochs = 2
public_pairs = 32

[eval]
limit = 30

[grpo]
steps = 2
prompts_per_step = 2
group_size = 2

[router]
clusters = 3
epochs = 20
calibration_items = 24
"""
    )
    assert main(["experiment", "--config", str(config)]) == 0
    out = tmp_path / "out"
    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert {r["method"] for r in rows} == {"base", "single:tint", "router", "gold"}
    assert all(set(json.loads(r["accuracy"])) == {*KINDS, "overall"} for r in rows)
    text = (out / "results.md").read_text()
    assert "| method | extent | side | tint | overall |" in text
    assert main(["audit", str(out / "kits" / "eps-3_seed-0")]) == 0
