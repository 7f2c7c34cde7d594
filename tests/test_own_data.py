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
from collections.abc import Callable
from pathlib import Path

import pytest

from secure_mor.cli import main
from secure_mor.simulate.settings import load_simulate_config

from ._grids import tiny_grid_tables

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
write_square_vqa: Callable[..., Path] = runpy.run_path(str(EXAMPLES / "make_squares.py"))["write_square_vqa"]
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
    assert all(set(c["ranking_top1"]) == set(KINDS) for c in clients.values())  # K × the data's kinds
    audit = json.loads((out / "audit.json").read_text())
    assert audit["passed"]
    assert sorted(c["identity"] for c in audit["clients"]) == ["client:extent", "client:side", "client:tint"]
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
"""
        + tiny_grid_tables(eval_limit=30, clusters=3)
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


def _refused(config: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``simulate`` on ``config``: it must refuse in one line, before writing or starting anything."""
    assert main(["simulate", "--quick", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert not out.exists()
    return err


def test_by_kind_clients_on_data_without_a_kind_column_are_refused(
    square_vqa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "no-kind.toml"
    config.write_text(DATA_TABLES.format(source=square_vqa, cache=tmp_path).replace('kind = "topic"\n', ""))
    assert "needs a question-kind column; set data.columns.kind" in _refused(config, tmp_path / "o", capsys)


def test_a_client_naming_a_shard_that_does_not_exist_is_refused(
    square_vqa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad-shard.toml"
    config.write_text(
        DATA_TABLES.format(source=square_vqa, cache=tmp_path).replace('name = "side"', 'name = "sides"')
    )
    err = _refused(config, tmp_path / "o", capsys)
    assert "clients[1].name: no shard 'sides'" in err
    assert "its shards are: extent, side, tint" in err


def test_a_table_simulate_does_not_read_is_refused(
    square_vqa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "extra.toml"
    config.write_text(DATA_TABLES.format(source=square_vqa, cache=tmp_path) + "\n[experiment]\nseeds = [1]\n")
    assert "experiment: unknown table (it would be ignored)" in _refused(config, tmp_path / "o", capsys)


def test_a_kind_too_small_for_a_split_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_square_vqa(tmp_path / "squares", images=60)
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    rare = [r for r in rows if r["topic"] != "extent" or r["picture"] == "sq-0"]  # extent: one image
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rare))
    config = tmp_path / "rare.toml"
    config.write_text(DATA_TABLES.format(source=folder, cache=tmp_path))
    err = _refused(config, tmp_path / "o", capsys)
    assert "client shard 'extent' is empty: raise data.fractions.clients or use more data" in err


def test_images_that_do_not_decode_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_square_vqa(tmp_path / "squares")
    for image in folder.glob("*.png"):
        image.write_bytes(b"not a png")
    config = tmp_path / "broken.toml"
    config.write_text(DATA_TABLES.format(source=folder, cache=tmp_path))
    err = _refused(config, tmp_path / "o", capsys)
    assert "split 'foundation': row 0: the image (column 'image', data.columns.image) does not decode" in err


def test_a_rerun_into_the_same_folder_starts_from_a_clean_run(square_vqa: Path, tmp_path: Path) -> None:
    """A new kit's server cannot extend the old run's signed anchors log, so the old run goes first."""
    from secure_mor.simulate.runner import RUN_OUTPUTS, Simulation
    from secure_mor.simulate.settings import SimulateConfig

    out = tmp_path / "sim"
    (out / "run").mkdir(parents=True)
    (out / "run" / "anchors.jsonl").write_text("{}\n")  # signed by the previous kit's server
    (out / "report.md").write_text("old report\n")
    (out / "mine.png").write_text("not the simulation's\n")
    Simulation(SimulateConfig(), out, splits=None)._clear_previous_run()  # type: ignore[arg-type]
    assert not (out / "run").exists()
    assert not any((out / name).exists() for name in RUN_OUTPUTS)
    assert (out / "mine.png").exists()  # only what a run writes is removed
