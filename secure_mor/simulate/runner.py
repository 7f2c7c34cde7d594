"""``Simulation``: provision, pretrain (or reuse) the base, DP reward models, MoR GRPO, eval, audit, report.

It runs on the recipe's data as ``preflight`` loaded and checked it, so a bad dataset or client list
stops the command before anything is written or started. The key holder, the server and every client
run as separate ``secure-mor`` processes talking gRPC over mTLS on loopback ports, exactly as in a
deployment; only the clients' reward-model training runs in this process (each still writes its own
signed privacy ledger in its own kit). Every party's config is written from the recipe's settings
objects (``kits``). Ctrl-C stops every process this started and leaves a readable partial report.
"""

from __future__ import annotations

import csv
import json
import shutil
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secure_mor import __version__
from secure_mor.errors import SecureMorError
from secure_mor.recipe import Recipe
from secure_mor.simulate.kits import (
    client_toml,
    configure_keyholder,
    configure_server,
    connect_client,
    train_reward_models,
)
from secure_mor.simulate.processes import ProcessGroup
from secure_mor.simulate.report import PLOTS
from secure_mor.simulate.settings import SimulateConfig

if TYPE_CHECKING:
    from secure_mor.data import FederatedSplits

RUN_OUTPUTS = ("report.md", "clients.json", "base_eval.json", "audit.json", "audit.md", *PLOTS)
"""The files a run writes at the top of ``out``; nothing else there is touched by a rerun."""

Progress = Callable[[str, float, float | None, str], None]
"""Called with (phase, done, total or None, detail) as the run advances."""


class SimulationError(SecureMorError):
    """A phase of the simulation failed (the message names the phase and shows the party's log)."""

    exit_code = 1


@dataclass
class SimulationState:
    """What the run has produced so far (a partial report is written from it after Ctrl-C)."""

    out: Path
    phases: dict[str, float] = field(default_factory=dict)
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    base_eval: dict[str, Any] | None = None
    policy_eval: dict[str, Any] | None = None
    audit: dict[str, Any] | None = None
    interrupted: bool = False


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Simulation:
    """One simulated federated alignment run in ``out`` (resolved to an absolute path once, here)."""

    def __init__(
        self,
        config: SimulateConfig,
        out: Path,
        splits: FederatedSplits,
        progress: Progress | None = None,
    ) -> None:
        """``splits``: the recipe's data as ``check_recipe_data`` loaded and checked it."""
        self.config, self.out, self.splits = config, out.expanduser().resolve(), splits
        self.progress = progress or (lambda phase, done, total, detail: None)
        self.state = SimulationState(self.out)
        self.group = ProcessGroup(self.out / "logs")

    def run(self) -> SimulationState:
        """Run every phase; on Ctrl-C stop all processes and return what was done."""
        from secure_mor.crypto.provision import create_federation

        self.out.mkdir(parents=True, exist_ok=True)
        self._clear_previous_run()
        try:
            fed = self._phase(
                "provision",
                lambda: create_federation(self.out / "fed", self.config.client_names, force=True).root,
            )
            base = self._phase("base model", self._base)
            self._phase("reward models", lambda: self._reward_models(fed, base))
            self._phase("federated GRPO", lambda: self._federation(fed, base))
            self._phase("evaluation", lambda: self._evaluate_base(base))
            self.group.stop_all()
            self._phase("audit", lambda: self._audit(fed))
        except KeyboardInterrupt:
            self.state.interrupted = True
        finally:
            self.group.stop_all()
        return self.state

    def _clear_previous_run(self) -> None:
        """Remove what an earlier run left in ``out``: its kit is replaced, so its run cannot go on.

        (Its server's signed anchors log would refuse the new server's key, and its CSV logs and plots
        would mix into this run's report.) The logs in ``out/logs`` are appended to, not removed.
        """
        shutil.rmtree(self.out / "run", ignore_errors=True)
        for name in RUN_OUTPUTS:
            (self.out / name).unlink(missing_ok=True)

    def _phase(self, name: str, work: Callable[[], Any]) -> Any:
        self.progress(name, 0, None, "")
        started = time.monotonic()
        with warnings.catch_warnings():
            # Opacus' PRV accountant takes log(0) on its grid edges (harmless); keep the display clean.
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="opacus")
            result = work()
        self.state.phases[name] = time.monotonic() - started
        self.progress(name, 1, 1, f"done in {self.state.phases[name]:.0f} s")
        return result

    def _base(self) -> Path:
        def report(step: int, total: int, loss: float) -> None:
            self.progress("base model", step, total, f"loss {loss:.3f}")

        return recipe_base(self.config, self.splits, report)

    def _reward_models(self, fed: Path, base: Path) -> None:
        def report(name: str, step: int, total: int, loss: float) -> None:
            self.progress("reward models", step, total, f"{name}: loss {loss:.3f}")

        self.state.clients.update(
            train_reward_models(
                fed,
                self.config,
                base=base,
                epsilon=self.config.simulate.epsilon,
                splits=self.splits,
                progress=report,
            )
        )
        (self.out / "clients.json").write_text(json.dumps(self.state.clients, indent=2) + "\n")

    def _federation(self, fed: Path, base: Path) -> None:
        config = self.config
        server_address, keyholder_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        keyholder_toml = configure_keyholder(fed, listen=keyholder_address)
        server_toml = configure_server(
            fed,
            config,
            base=base,
            run_dir=self.out / "run",
            run_id=f"sim-{int(time.time())}",
            routing=config.simulate.routing,
            secure=config.secure,
            listen=server_address,
            keyholder=keyholder_address,
        )
        for name in config.client_names:
            connect_client(fed, name, server=server_address, keyholder=keyholder_address)
        self.group.start("keyholder", "keyholder", "serve", "--config", str(keyholder_toml))
        for name in config.client_names:
            self.group.start(name, "client", "join", "--config", str(client_toml(fed, name)))
        server = self.group.start("server", "server", "train", "--config", str(server_toml))
        started = time.monotonic()
        while server.poll() is None:
            steps = _rows(self.out / "run" / "train_log.csv")
            if steps:
                last = steps[-1]
                self.progress(
                    "federated GRPO", len(steps), config.grpo.steps, f"reward {float(last['reward']):.3f}"
                )
            time.sleep(1.0)
            if time.monotonic() - started > 3600:
                raise SimulationError("federated GRPO: the server did not finish within an hour")
        if server.returncode != 0:
            raise SimulationError(
                f"federated GRPO: the server exited with {server.returncode}:\n{self.group.tail('server')}"
            )
        eval_file = self.out / "run" / "eval.json"
        self.state.policy_eval = json.loads(eval_file.read_text()) if eval_file.exists() else None

    def _evaluate_base(self, base: Path) -> None:
        from secure_mor.models.evaluate import evaluate_held_out
        from secure_mor.models.factory import load_vlm

        settings = self.config.eval
        self.state.base_eval = evaluate_held_out(
            load_vlm(base), self.splits, settings.limit, balanced=settings.balance_kinds
        ).to_json()
        (self.out / "base_eval.json").write_text(json.dumps(self.state.base_eval, indent=2) + "\n")

    def _audit(self, fed: Path) -> None:
        from secure_mor.audit import Auditor

        run = self.out / "run"  # its anchors show whether the key holder's log and the ledgers are whole
        report = Auditor().run([fed, run] if run.is_dir() else [fed])
        document = report.to_json(__version__)
        (self.out / "audit.json").write_text(json.dumps(document, indent=2) + "\n")
        (self.out / "audit.md").write_text(report.to_markdown(__version__))
        self.state.audit = document


def recipe_base(
    recipe: Recipe, splits: FederatedSplits, progress: Callable[[int, int, float], None] | None = None
) -> Path:
    """The recipe's pretrained base, reused from ``recipe.base.cache`` when a run already made it."""
    from secure_mor.models.pretrain import BaseConfig, PretrainConfig, cached_base

    base = recipe.base
    settings = BaseConfig(
        data=recipe.data, pretrain=PretrainConfig(preset=base.preset, steps=base.steps, seed=recipe.data.seed)
    )
    return cached_base(settings, base.cache, splits.foundation, progress)


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as file:
        return list(csv.DictReader(file))
