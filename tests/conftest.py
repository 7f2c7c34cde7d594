"""Shared fixtures: small VQA datasets written by the tests, and a tiny VLM built offline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from secure_mor.data import DataConfig, FederatedSplits, load_splits
from secure_mor.simulate.processes import ProcessGroup

from ._federation import CLIENTS, run_cli, update_toml

COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def make_image(color: str, size: int = 32, seed: int = 0) -> Image.Image:
    """A square image of one colour with a little seeded noise, so no two images are byte-identical."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(COLORS[color]) + rng.integers(-10, 10, (size, size, 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def _toy_rows(n_images: int = 12) -> dict[str, list[object]]:
    """Rows of a toy VQA set with custom column names: two questions per image (colour, yes/no)."""
    rows: dict[str, list[object]] = {"img": [], "q": [], "a": [], "type": []}
    names = list(COLORS)
    for i in range(n_images):
        color = names[i % len(names)]
        image = make_image(color, seed=i)
        for question, answer, kind in (
            ("what color is it?", color, "color"),
            ("is it red?", "yes" if color == "red" else "no", "yesno"),
        ):
            rows["img"].append(image)
            rows["q"].append(question)
            rows["a"].append(answer)
            rows["type"].append(kind)
    return rows


@pytest.fixture(scope="session")
def toy_hf_dataset() -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        _toy_rows(),
        features=datasets.Features(
            {
                "img": datasets.Image(),
                "q": datasets.Value("string"),
                "a": datasets.Value("string"),
                "type": datasets.Value("string"),
            }
        ),
    )


@pytest.fixture(scope="session")
def easy_splits() -> FederatedSplits:
    return load_splits(DataConfig())


@pytest.fixture(scope="session")
def tmp_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def quick_base_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One base-model cache for the session: the quick runs' 150-step base is pretrained only once."""
    return tmp_path_factory.mktemp("base-cache")


@pytest.fixture(scope="session")
def toy_rows() -> Callable[[int], dict[str, list[object]]]:
    """A function making toy VQA rows (custom column names) for ``n_images`` images."""
    return _toy_rows


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Parties started as ``secure-mor`` processes, logging to ``tmp_path``; all stopped at the end."""
    running = ProcessGroup(tmp_path)
    yield running
    running.stop_all()


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory, easy_splits: FederatedSplits) -> Path:
    """A kit whose three clients trained their reward models under DP, and a tiny base VLM beside it.

    One per session: the integration, fault and load tests share it (each run uses its own run folder,
    run id and ports, so their step ids never collide in the key holder's log).
    """
    from secure_mor.models.factory import build_tiny_vlm, save_vlm
    from secure_mor.models.presets import PRESETS

    root = tmp_path_factory.mktemp("deployment")
    fed = root / "fed"
    run_cli("init", str(fed), "--clients", ",".join(CLIENTS))
    foundation = easy_splits.foundation
    save_vlm(build_tiny_vlm(PRESETS["tiny"], [*foundation["question"], *foundation["answer"]]), root / "base")
    for name in CLIENTS:
        config = fed / "clients" / name / "client.toml"
        update_toml(
            config,
            {
                "reward_model": {
                    "limit": 48,
                    "hidden": 16,
                    "vocab_buckets": 64,
                    "public_epochs": 1,
                    "public_pairs_per_kind": 8,
                    "public_cache": str(root / "public"),
                },
                "training": {"epochs": 2, "batch_size": 16, "physical_batch_size": 16},
                "privacy": {"epsilon": 8.0},
                "agent": {
                    "heartbeat_seconds": 0.5,
                    "reconnect_initial_seconds": 0.2,
                    "reconnect_max_seconds": 1.0,
                },
            },
        )
        run_cli("client", "train-rm", "--config", str(config))
    return root
