"""The TOML config loader: unknown fields, wrong types and rule violations name the file and the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from secure_mor.config import load_config, to_mapping, write_config
from secure_mor.crypto.step_id import RUN_ID, STEP_ID, run_id_problem
from secure_mor.data import DataConfig
from secure_mor.errors import ConfigError
from secure_mor.models.pretrain import BaseConfig
from secure_mor.server.config import load_server_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_defaults_when_tables_are_absent(tmp_path: Path) -> None:
    config = load_config(BaseConfig, write(tmp_path, ""))
    assert config == BaseConfig()


def test_values_are_read_into_nested_frozen_dataclasses(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[data]\nseed = 7\nsource = "sets/vqa"\n[data.clients]\nmode = "dirichlet"\ncount = 4\n'
        "[pretrain]\nsteps = 10\nlearning_rate = 1\n",
    )
    config = load_config(BaseConfig, path)
    assert config.data.seed == 7
    assert config.data.clients.count == 4
    assert config.pretrain.learning_rate == 1.0
    assert Path(config.data.source) == Path("sets/vqa")  # strings stay as written
    with pytest.raises(AttributeError):
        config.data.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[data]\nsed = 1\n", "run.toml: data.sed: unknown field"),
        ("[data]\nseed = 'x'\n", "run.toml: data.seed: expected an integer, found a string"),
        ("[data.clients]\nmode = 'random'\n", "data.clients.mode: expected one of 'by-kind', 'dirichlet'"),
        ("[pretrain]\nsteps = 0\n", "run.toml: pretrain.steps: expected an integer ≥ 1, found 0"),
        ("[pretrain]\npreset = 'huge'\n", "unknown model preset 'huge'"),
        ("[data.fractions]\nfoundation = 0.9\n", "data.fractions.foundation: the four split fractions sum"),
        ("data = 3\n", "data: expected a table, found an integer"),
        ("[data\n", "run.toml: not valid TOML"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(BaseConfig, write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.toml"):
        load_config(BaseConfig, tmp_path / "nope.toml")


def test_single_table_ignores_other_tables(tmp_path: Path) -> None:
    path = write(tmp_path, "[data]\nseed = 3\n[server]\nanything = 1\n")
    assert load_config(DataConfig, path, table="data").seed == 3


def test_round_trip_through_mapping(tmp_path: Path) -> None:
    import tomli_w

    config = BaseConfig()
    path = write(tmp_path, tomli_w.dumps(to_mapping(config)))
    assert load_config(BaseConfig, path) == config


def test_example_config_documents_the_defaults() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "base.toml"
    assert load_config(BaseConfig, example) == BaseConfig()


@pytest.mark.parametrize("run_id", ["my run", "run/1", "", "é", "x" * 101])
def test_a_run_id_that_cannot_prefix_step_ids_is_refused_where_the_server_config_loads(
    tmp_path: Path, run_id: str
) -> None:
    path = tmp_path / "server.toml"
    path.write_text(tomli_w.dumps({"run": {"run_id": run_id, "clients": ["a", "b"]}}))
    with pytest.raises(ConfigError, match=r"server\.toml: run\.run_id: expected 1–100 characters"):
        load_server_config(path)


@given(st.from_regex(RUN_ID, fullmatch=True), st.integers(min_value=0, max_value=10**12))
def test_every_accepted_run_id_gives_step_ids_the_key_holder_and_clients_accept(run_id: str, n: int) -> None:
    assert run_id_problem(run_id) is None
    assert STEP_ID.match(f"{run_id}/{n}")


def test_a_recipe_written_as_a_kit_config_reads_back_equal_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from secure_mor.simulate.settings import SimulateConfig

    monkeypatch.chdir(tmp_path)
    config = dataclasses.replace(
        SimulateConfig().quick(),
        base=dataclasses.replace(SimulateConfig().base, cache=Path("relative/cache")),
    )
    write_config(config, tmp_path / "sim.toml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = load_config(SimulateConfig, tmp_path / "sim.toml")
    assert again.base.cache == tmp_path / "relative" / "cache"  # written absolute, read the same
    assert again.reward_models.public_cache == Path.home() / ".cache" / "secure-mor" / "compact"  # ~ expanded
    assert dataclasses.replace(again, base=config.base, reward_models=config.reward_models) == config


def test_a_relative_data_source_means_the_folder_beside_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sets" / "vqa").mkdir(parents=True)
    path = write(tmp_path, '[data]\nsource = "./sets/vqa"\n')
    assert load_config(BaseConfig, path).data.source == str(tmp_path / "sets" / "vqa")
    hub = write(tmp_path, '[data]\nsource = "owner/dataset"\n')
    assert load_config(BaseConfig, hub).data.source == "owner/dataset"  # a hub id stays as written


def test_a_clients_own_pairs_and_epochs_override_the_recipes_in_its_kit(tmp_path: Path) -> None:
    from secure_mor.client.config import load_client_config
    from secure_mor.crypto.provision import create_federation
    from secure_mor.recipe import ClientSpec
    from secure_mor.simulate.kits import configure_client
    from secure_mor.simulate.settings import SimulateConfig

    specs = (ClientSpec("color"), ClientSpec("yesno", "lora-vlm", pairs=40, epochs=2))
    recipe = dataclasses.replace(SimulateConfig(), clients=specs)
    fed = create_federation(tmp_path / "fed", recipe.client_names).root
    kits = {
        spec.name: load_client_config(configure_client(fed, spec, recipe, base=tmp_path, epsilon=3.0))
        for spec in specs
    }
    assert (kits["color"].reward_model.limit, kits["color"].training.epochs) == (
        recipe.reward_models.pairs,
        recipe.reward_models.epochs,
    )
    assert (kits["yesno"].reward_model.limit, kits["yesno"].training.epochs) == (40, 2)
    assert recipe.quick().clients == specs  # --quick keeps a client's own sizes (the LoRA-VLM needs them)
    with pytest.raises(ConfigError, match="epochs"):
        ClientSpec("yesno", epochs=0)


def test_a_recipe_table_changes_only_the_fields_it_names_of_the_benchmark_default(tmp_path: Path) -> None:
    from secure_mor.recipe import BENCHMARK_DATA
    from secure_mor.simulate.settings import load_simulate_config

    path = write(tmp_path, "[data]\nseed = 3\n[data.fractions]\nprompts = 0.1\n")
    data = load_simulate_config(path).data
    assert data.seed == 3
    assert data.fractions.prompts == 0.1
    assert (
        data.fractions.foundation == BENCHMARK_DATA.fractions.foundation != DataConfig().fractions.foundation
    )
    assert data.foundation_limits == BENCHMARK_DATA.foundation_limits != ()
    assert (
        load_config(DataConfig, path, table="data").fractions.foundation == DataConfig().fractions.foundation
    )
    cleared = write(tmp_path, "[data]\nfoundation_limits = []\n")
    assert load_simulate_config(cleared).data.foundation_limits == ()
    # The benchmark's split is easy-VQA's: a table naming another source starts from the plain defaults.
    own = write(tmp_path, '[data]\nsource = "someone/vqa"\n[data.fractions]\nprompts = 0.1\n')
    own_data = load_simulate_config(own).data
    assert own_data.foundation_limits == ()
    assert own_data.fractions == dataclasses.replace(DataConfig().fractions, prompts=0.1)
