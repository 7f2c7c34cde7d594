"""Writing a recipe into a federation kit: each party's config built as its own config object.

``secure-mor init`` writes the kit (identities, mTLS files, keys, trust); a simulation or an experiment
then sets each party's tables from the ``Recipe``: it loads the party's config, replaces the tables
with the recipe's settings objects and writes the whole config back with ``write_config`` (absolute
paths), so the kit records exactly what ran and every file reads the same from any working directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from secure_mor.config import write_config
from secure_mor.recipe import ClientSpec, Recipe
from secure_mor.server.settings import SecurePathSettings

KIT_NOTE = "# Written by secure-mor from its recipe; paths are absolute.\n"


def client_toml(fed: Path, name: str) -> Path:
    """The config file of client ``name`` in kit ``fed``."""
    return fed / "clients" / name / "client.toml"


def configure_client(
    fed: Path,
    spec: ClientSpec,
    recipe: Recipe,
    *,
    base: Path,
    epsilon: float,
    budget: float | None = None,
) -> Path:
    """Set client ``spec``'s data, reward model, training and privacy tables from ``recipe``."""
    from secure_mor.client.config import RewardModelConfig, load_client_config

    path = client_toml(fed, spec.name)
    kit = load_client_config(path)
    settings = recipe.reward_models
    reward_model = RewardModelConfig(
        architecture=spec.architecture,
        shard=spec.data_shard,
        base_model=base if spec.architecture == "lora-vlm" else None,
        public_pairs_per_kind=settings.public_pairs,
        public_cache=settings.public_cache.expanduser(),
        limit=settings.pairs if spec.pairs is None else spec.pairs,
        seed=settings.seed,
        out=kit.reward_model.out,
    )
    privacy = dataclasses.replace(kit.privacy, epsilon=epsilon)
    if budget is not None:
        privacy = dataclasses.replace(privacy, budget=budget)
    config = dataclasses.replace(
        kit,
        data=recipe.data,
        reward_model=reward_model,
        training=dataclasses.replace(kit.training, epochs=spec.epochs or settings.epochs),
        privacy=privacy,
    )
    write_config(config, path, KIT_NOTE)
    return path


def connect_client(fed: Path, name: str, *, server: str, keyholder: str) -> None:
    """Point client ``name`` at the server and key holder, as a loopback run wants.

    Quick reconnects, and one scoring thread: the K clients and the server share this machine's cores.
    """
    from secure_mor.client.config import load_client_config

    path = client_toml(fed, name)
    kit = load_client_config(path)
    config = dataclasses.replace(
        kit,
        federation=dataclasses.replace(kit.federation, server_address=server, keyholder_address=keyholder),
        agent=dataclasses.replace(
            kit.agent,
            heartbeat_seconds=1.0,
            reconnect_initial_seconds=0.2,
            reconnect_max_seconds=2.0,
            threads=1,
        ),
    )
    write_config(config, path, KIT_NOTE)


def configure_keyholder(fed: Path, *, listen: str) -> Path:
    """Set the key holder's listen address."""
    from secure_mor.config import load_config
    from secure_mor.crypto.keyholder_config import KeyholderConfig

    path = fed / "keyholder" / "keyholder.toml"
    kit = load_config(KeyholderConfig, path)
    write_config(
        dataclasses.replace(kit, service=dataclasses.replace(kit.service, listen=listen)), path, KIT_NOTE
    )
    return path


def configure_server(
    fed: Path,
    recipe: Recipe,
    *,
    base: Path,
    run_dir: Path,
    run_id: str,
    routing: str,
    secure: SecurePathSettings,
    listen: str,
    keyholder: str,
) -> Path:
    """Set every table of the server's config from ``recipe`` (GRPO, router, eval, data) and the run."""
    from secure_mor.server.config import RunSettings, load_server_config

    path = fed / "server" / "server.toml"
    kit = load_server_config(path)
    config = dataclasses.replace(
        kit,
        federation=dataclasses.replace(kit.federation, keyholder_address=keyholder),
        service=dataclasses.replace(kit.service, listen=listen, heartbeat_seconds=2.0),
        run=RunSettings(
            base_model=base, run_dir=run_dir, run_id=run_id, routing=routing, clients=recipe.client_names
        ),
        router=recipe.router,
        secure=secure,
        grpo=recipe.grpo,
        eval=recipe.eval,
        data=recipe.data,
    )
    write_config(config, path, KIT_NOTE)
    return path


def train_reward_models(
    fed: Path,
    recipe: Recipe,
    *,
    base: Path,
    epsilon: float,
    splits: Any,
    budget: float | None = None,
    progress: Callable[[str, int, int, float], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train each client's reward model in its kit, as its config (written from ``recipe``) says.

    ``splits`` is ``recipe.data``'s split, loaded once by the caller. Each training appends to that
    client's signed privacy ledger. Returns a summary per client, with the top-1 ranking accuracy per
    kind of the trained model and of the public-only model its training started from.
    """
    from secure_mor.client.config import load_client_config
    from secure_mor.client.run import start_model, train_from_config
    from secure_mor.simulate.competence import ranking_accuracy

    summary: dict[str, dict[str, Any]] = {}
    for spec in recipe.clients:
        path = configure_client(fed, spec, recipe, base=base, epsilon=epsilon, budget=budget)

        def report(step: int, total: int, loss: float, name: str = spec.name) -> None:
            if progress is not None:
                progress(name, step, total, loss)

        config = load_client_config(path)
        result, _ = train_from_config(config, progress=report, splits=splits)
        models = {"trained": result.model, "start": start_model(config, splits)}
        ranking = ranking_accuracy(models, splits)
        summary[spec.name] = {
            "architecture": spec.architecture,
            "shard": spec.data_shard,
            "heldout_accuracy": result.accuracy,
            "epsilon": result.epsilon,
            "seconds": result.seconds,
            "pairs": result.dataset_size,
            "ranking_top1": ranking["trained"],
            "ranking_top1_start": ranking["start"],
        }
    return summary
