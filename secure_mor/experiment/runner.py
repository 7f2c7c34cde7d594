"""``Experiment``: run every unfinished cell of the grid, then write the table and plots.

Order: the base and gold cells (they do not depend on ε), then for each (ε, seed) the clients' reward
models — trained once in that pair's own kit, with signed privacy ledgers — and every method that uses
them. Reward-based methods run the server's TRL GRPO through ``FederatedAlignment`` with the
in-process ``LocalScorer`` in place of the federation (same routing, weights and fusion); FedAvg-DPO
runs ``FedAvgDpo``. Every cell is evaluated on the same held-out
test questions. Finished cells are read back from ``results.csv`` and never recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

from secure_mor.errors import SecureMorError
from secure_mor.experiment.results import Cell, CellResult, ResultStore, finished, format_epsilon
from secure_mor.experiment.settings import ExperimentConfig
from secure_mor.simulate.runner import Progress

SETTINGS_FILE = "settings.json"


class ExperimentError(SecureMorError):
    """The experiment cannot go on as asked (the message says why and what to do)."""


def _differences(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted fields whose values differ between two JSON-shaped settings documents."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        return [
            d
            for key in sorted(set(recorded) | set(current))
            for d in _differences(recorded.get(key), current.get(key), f"{prefix}{key}.")
        ]
    if recorded != current:
        return [f"{prefix.rstrip('.')}: was {recorded!r}, now {current!r}"]
    return []


class Experiment:
    """The privacy–utility grid of one ``ExperimentConfig`` (entry object of ``secure-mor experiment``)."""

    def __init__(self, config: ExperimentConfig, progress: Progress | None = None) -> None:
        self.config = config
        self.out = config.out
        self.progress = progress or (lambda phase, done, total, detail: None)
        self.store = ResultStore(self.out / "results.csv")
        self._splits: Any = None
        self._base: Path | None = None
        self._reference: Any = None

    def cells(self) -> list[Cell]:
        """Every cell of the grid, in the order they run."""
        config = self.config
        shared = [m for m in config.methods if not config.depends_on_epsilon(m)]
        private = [m for m in config.methods if config.depends_on_epsilon(m)]
        cells = [Cell("base", None, config.seeds[0])] if "base" in shared else []
        cells += [Cell(m, None, seed) for seed in config.seeds for m in shared if m != "base"]
        cells += [Cell(m, eps, seed) for eps in config.epsilons for seed in config.seeds for m in private]
        return cells

    def run(self) -> list[CellResult]:
        """Run what is not finished yet; return every result (old and new)."""
        self._check_settings()
        results = self.store.load()
        done = finished(results)
        todo = [cell for cell in self.cells() if cell not in done]
        self.progress("grid", len(self.cells()) - len(todo), len(self.cells()), f"{len(todo)} cell(s) to run")
        with warnings.catch_warnings():
            # Opacus' PRV accountant takes log(0) on its grid edges (harmless); keep the display clean.
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="opacus")
            for cell in todo:
                self.progress("cell", 0, None, cell.name)
                result = self._run_cell(cell)
                self.store.append(result)
                results.append(result)
                overall = result.accuracy.get("overall", math.nan)
                self.progress(
                    "grid", len(finished(results)), len(self.cells()), f"{cell.name}: {overall:.3f}"
                )
        return results

    def _check_settings(self) -> None:
        """Refuse to add cells to a results folder made with other cell settings (results would mix).

        The grid itself (methods, ε, seeds) may grow between runs; everything else must match.
        """
        from secure_mor.config import to_mapping

        settings = to_mapping(self.config)
        settings.pop("experiment")  # the grid may grow; everything else must match
        settings = json.loads(json.dumps(settings, default=str))
        path = self.out / SETTINGS_FILE
        if not path.exists():
            self.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
            return
        recorded = json.loads(path.read_text())
        changed = sorted(_differences(recorded, settings))
        if changed:
            raise ExperimentError(
                f"{self.out} holds results made with other settings ({'; '.join(changed[:5])}); "
                f"run the changed grid with another --out, or restore the settings in {path}"
            )

    # -- cells -------------------------------------------------------------------------------------

    def _run_cell(self, cell: Cell) -> CellResult:
        started = time.monotonic()
        details: dict[str, Any] = {}
        if cell.method == "base":
            from secure_mor.models.evaluate import evaluate_held_out

            evaluation = evaluate_held_out(
                self.reference, self.splits, self.config.eval.limit, balanced=self.config.eval.balance_kinds
            )
        elif cell.method == "fedavg-dpo":
            evaluation, details = self._fedavg(cell)
        else:
            evaluation, details = self._grpo(cell)
        folder = self.out / "cells" / cell.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "eval.json").write_text(json.dumps(evaluation.to_json(), indent=2) + "\n")
        accuracy = {kind: score.accuracy for kind, score in evaluation.scores.items()}
        expected = {kind: score.expected_accuracy for kind, score in evaluation.scores.items()}
        return CellResult(cell, accuracy, time.monotonic() - started, details, expected)

    def _grpo(self, cell: Cell) -> tuple[Any, dict[str, Any]]:
        from secure_mor.server.config import RunSettings, ServerConfig
        from secure_mor.server.training import FederatedAlignment

        config = self.config
        server = ServerConfig(
            run=RunSettings(
                base_model=self.base,
                run_dir=self.out / "cells" / cell.name,
                run_id=cell.name.replace("_", "."),
                routing=cell.method,
                clients=config.client_names,
            ),
            router=dataclasses.replace(config.router, seed=cell.seed),
            grpo=dataclasses.replace(config.grpo, seed=cell.seed),
            eval=config.eval,
            data=config.data,
        )
        scorer = None if cell.method == "gold" else self._scorer(cell)

        def report(step: int, total: int, reward: float) -> None:
            self.progress("cell", step, total, f"{cell.name}: reward {reward:.3f}")

        result = FederatedAlignment(server, progress=report).run(scorer=scorer)
        details: dict[str, Any] = {"steps": result.steps}
        if scorer is not None:
            details["router_weights"] = result.router_weights
            details["reward_models"] = self._rm_summary(cell)
        return result.evaluation, details

    def _scorer(self, cell: Cell) -> Any:
        from secure_mor.experiment.rewards import LocalScorer

        assert cell.epsilon is not None
        return LocalScorer(self._reward_models(cell.epsilon, cell.seed))

    def _fedavg(self, cell: Cell) -> tuple[Any, dict[str, Any]]:
        from secure_mor.client.config import load_client_config
        from secure_mor.client.run import client_pairs
        from secure_mor.experiment.fedavg_dpo import FedAvgDpo
        from secure_mor.models.evaluate import evaluate_held_out
        from secure_mor.simulate.kits import client_toml

        assert cell.epsilon is not None
        kit = self._kit(cell.epsilon, cell.seed)
        pairs = {
            c.name: client_pairs(load_client_config(client_toml(kit, c.name)), self.splits).train
            for c in self.config.clients
        }

        def report(round_: int, rounds: int, detail: str) -> None:
            self.progress("cell", round_, rounds, f"{cell.name}: round {round_}/{rounds}, {detail}")

        work = self.out / "cells" / cell.name
        result = FedAvgDpo(self.base, self.config.fedavg, seed=cell.seed, work_dir=work).run(
            pairs, cell.epsilon, progress=report
        )
        evaluation = evaluate_held_out(
            result.policy, self.splits, self.config.eval.limit, balanced=self.config.eval.balance_kinds
        )
        norms = sorted(result.update_norms)
        return evaluation, {
            "noise_multiplier": result.noise_multiplier,
            "rounds": result.rounds,
            "median_update_norm": norms[len(norms) // 2],
        }

    # -- shared pieces -----------------------------------------------------------------------------

    @property
    def base(self) -> Path:
        """The shared pretrained base (made once, cached across experiments and simulations)."""
        if self._base is None:
            from secure_mor.simulate.runner import recipe_base

            def report(step: int, total: int, loss: float) -> None:
                self.progress("base model", step, total, f"loss {loss:.3f}")

            self._base = recipe_base(self.config, self.splits, report)
        return self._base

    @property
    def splits(self) -> Any:
        """The data split every cell shares."""
        if self._splits is None:
            from secure_mor.simulate.preflight import check_recipe_data

            self._splits = check_recipe_data(self.config)
        return self._splits

    @property
    def reference(self) -> Any:
        """The frozen base VLM (features for the router; the ``base`` method's policy)."""
        if self._reference is None:
            from secure_mor.models.factory import load_vlm

            self._reference = load_vlm(self.base)
        return self._reference

    def _kit(self, epsilon: float, seed: int) -> Path:
        """The (ε, seed) pair's federation kit, with every client's reward model trained in it."""
        from secure_mor.crypto.provision import create_federation
        from secure_mor.simulate.kits import train_reward_models

        kit = self.out / "kits" / f"eps-{format_epsilon(epsilon)}_seed-{seed}"
        summary = kit / "reward_models.json"
        if summary.exists():
            return kit
        create_federation(kit, self.config.client_names, force=True)

        def report(name: str, step: int, total: int, loss: float) -> None:
            self.progress("reward models", step, total, f"ε={format_epsilon(epsilon)} seed {seed} {name}")

        recipe = dataclasses.replace(
            self.config, reward_models=dataclasses.replace(self.config.reward_models, seed=seed)
        )
        trained = train_reward_models(
            kit,
            recipe,
            base=self.base,
            epsilon=epsilon,
            splits=self.splits,
            # one training per kit: its budget is that run's ε
            budget=max(epsilon, 10.0) if math.isfinite(epsilon) else None,
            progress=report,
        )
        summary.write_text(json.dumps(trained, indent=2) + "\n")
        return kit

    def _reward_models(self, epsilon: float, seed: int) -> dict[str, Any]:
        from secure_mor.client.config import load_client_config
        from secure_mor.client.reward_model import load_reward_model
        from secure_mor.simulate.kits import client_toml

        kit = self._kit(epsilon, seed)
        return {
            c.name: load_reward_model(load_client_config(client_toml(kit, c.name)).reward_model.out)
            for c in self.config.clients
        }

    def _rm_summary(self, cell: Cell) -> dict[str, Any]:
        assert cell.epsilon is not None
        trained = json.loads((self._kit(cell.epsilon, cell.seed) / "reward_models.json").read_text())
        return {name: round(info["heldout_accuracy"], 4) for name, info in trained.items()}
