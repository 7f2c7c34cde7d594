"""``Simulation``: provision, pretrain (or reuse) the base, DP reward models, MoR GRPO, eval, audit, report.

The key holder, the server and every client run as separate ``secure-mor`` processes talking gRPC over
mTLS on loopback ports, exactly as in a deployment; only the clients' reward-model training runs in this
process (each still writes its own signed privacy ledger in its own kit). Ctrl-C stops every process
this started and leaves a readable partial report.
"""

from __future__ import annotations

import csv
import hashlib
import json
import socket
import time
import tomllib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from secure_mor import __version__
from secure_mor.data import DataConfig, load_splits
from secure_mor.errors import SecureMorError
from secure_mor.simulate.processes import ProcessGroup
from secure_mor.simulate.settings import ClientSpec, SimulateConfig

EVAL_BALANCED = True
"""The base and the aligned policy are evaluated on the same number of questions of each kind."""

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


def update_toml(path: Path, tables: dict[str, dict[str, Any]]) -> None:
    """Merge ``tables`` into the TOML file at ``path``."""
    document = tomllib.loads(path.read_text())
    for table, values in tables.items():
        document.setdefault(table, {}).update(values)
    path.write_text(tomli_w.dumps(document))


class Simulation:
    """One simulated federated alignment run in ``out``."""

    def __init__(self, config: SimulateConfig, out: Path, progress: Progress | None = None) -> None:
        self.config, self.out = config, out
        self.progress = progress or (lambda phase, done, total, detail: None)
        self.state = SimulationState(out)
        self.group = ProcessGroup(out / "logs")

    def run(self) -> SimulationState:
        """Run every phase; on Ctrl-C stop all processes and return what was done."""
        from secure_mor.crypto.provision import create_federation

        self.out.mkdir(parents=True, exist_ok=True)
        try:
            fed = self._phase(
                "provision", lambda: create_federation(self.out / "fed", self._names(), force=True).root
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

    def _names(self) -> list[str]:
        return [c.name for c in self.config.clients]

    def _base(self) -> Path:
        def report(step: int, total: int, loss: float) -> None:
            self.progress("base model", step, total, f"loss {loss:.3f}")

        return cached_base(self.config.seed, self.config.base_steps, self.config.base_cache, report)

    def _reward_models(self, fed: Path, base: Path) -> None:
        for spec in self.config.clients:
            update_toml(fed / "clients" / spec.name / "client.toml", {"agent": {
                "heartbeat_seconds": 1.0, "reconnect_initial_seconds": 0.2, "reconnect_max_seconds": 2.0,
            }})  # fmt: skip

        def report(name: str, step: int, total: int, loss: float) -> None:
            self.progress("reward models", step, total, f"{name}: loss {loss:.3f}")

        self.state.clients.update(
            train_reward_models(
                fed,
                self.config.clients,
                base=base,
                data_seed=self.config.seed,
                seed=self.config.seed,
                epsilon=self.config.epsilon,
                pairs=self.config.rm_pairs,
                epochs=self.config.rm_epochs,
                public_pairs=self.config.rm_public_pairs,
                public_cache=self.config.base_cache.expanduser().parent / "compact",
                progress=report,
            )
        )
        (self.out / "clients.json").write_text(json.dumps(self.state.clients, indent=2) + "\n")

    def _federation(self, fed: Path, base: Path) -> None:
        config = self.config
        server_port, keyholder_port = free_port(), free_port()
        update_toml(fed / "keyholder/keyholder.toml", {"service": {"listen": f"127.0.0.1:{keyholder_port}"}})
        update_toml(fed / "server/server.toml", {
            "federation": {"keyholder_address": f"127.0.0.1:{keyholder_port}"},
            "service": {"listen": f"127.0.0.1:{server_port}", "heartbeat_seconds": 2.0},
            "run": {"base_model": str(base), "run_dir": str(self.out / "run"), "routing": config.routing,
                    "eval_limit": config.eval_limit, "eval_balance_kinds": EVAL_BALANCED,
                    "run_id": f"sim-{int(time.time())}"},
            "grpo": {"steps": config.grpo_steps, "prompts_per_step": config.prompts_per_step,
                     "group_size": config.group_size, "learning_rate": config.learning_rate,
                     "lora_rank": config.lora_rank, "balance_kinds": config.balance_kinds,
                     "seed": config.seed},
            "data": {"seed": config.seed},
        })  # fmt: skip
        for name in self._names():
            update_toml(
                fed / "clients" / name / "client.toml",
                {
                    "federation": {
                        "server_address": f"127.0.0.1:{server_port}",
                        "keyholder_address": f"127.0.0.1:{keyholder_port}",
                    }
                },
            )
        self.group.start("keyholder", "keyholder", "serve", "--config", str(fed / "keyholder/keyholder.toml"))
        for name in self._names():
            self.group.start(name, "client", "join", "--config", str(fed / "clients" / name / "client.toml"))
        server = self.group.start("server", "server", "train", "--config", str(fed / "server/server.toml"))
        started = time.monotonic()
        while server.poll() is None:
            steps = _rows(self.out / "run" / "train_log.csv")
            if steps:
                last = steps[-1]
                self.progress(
                    "federated GRPO", len(steps), config.grpo_steps, f"reward {float(last['reward']):.3f}"
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

        splits = load_splits(DataConfig(seed=self.config.seed))
        self.state.base_eval = evaluate_held_out(
            load_vlm(base), splits, self.config.eval_limit, balanced=EVAL_BALANCED
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


def cached_base(
    seed: int, steps: int, cache: Path, progress: Callable[[int, int, float], None] | None = None
) -> Path:
    """The pretrained base for (data seed, steps): reused from ``cache`` when a run already made it."""
    from secure_mor.models.pretrain import MANIFEST, BaseConfig, BasePretrainer, PretrainConfig

    settings = BaseConfig(data=DataConfig(seed=seed), pretrain=PretrainConfig(steps=steps, seed=seed))
    key = hashlib.sha256(json.dumps(asdict(settings), default=str, sort_keys=True).encode()).hexdigest()
    folder = cache.expanduser() / key[:16]
    if not (folder / MANIFEST).exists():
        BasePretrainer(settings).run(folder, progress=progress)
    return folder


def train_reward_models(
    fed: Path,
    clients: Sequence[ClientSpec],
    *,
    base: Path,
    data_seed: int,
    seed: int,
    epsilon: float,
    pairs: int,
    epochs: int,
    public_pairs: int,
    public_cache: Path,
    progress: Callable[[str, int, int, float], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train each client's reward model in its kit (``fed/clients/<name>``), as its own config says.

    ``data_seed`` picks the data split (the shard), ``seed`` the model's initialisation, pair order and
    DP noise. Writes the sizes into each client's ``client.toml`` first, so the kit records what was run; each
    training appends to that client's signed privacy ledger. Returns a summary per client.
    """
    from secure_mor.client.config import load_client_config
    from secure_mor.client.run import train_from_config

    summary: dict[str, dict[str, Any]] = {}
    for spec in clients:
        path = fed / "clients" / spec.name / "client.toml"
        model: dict[str, Any] = {"architecture": spec.architecture, "limit": pairs, "seed": seed}
        if spec.architecture == "lora-vlm":
            model["base_model"] = str(base)
        else:  # public pretraining (no privacy cost), cached across runs
            model["public_pairs_per_kind"] = public_pairs
            model["public_cache"] = str(public_cache)
        update_toml(path, {
            "data": {"seed": data_seed},
            "reward_model": model,
            "training": {"epochs": epochs},
            "privacy": {"epsilon": epsilon},
        })  # fmt: skip

        def report(step: int, total: int, loss: float, name: str = spec.name) -> None:
            if progress is not None:
                progress(name, step, total, loss)

        result, _ = train_from_config(load_client_config(path), progress=report)
        summary[spec.name] = {
            "architecture": spec.architecture,
            "heldout_accuracy": result.accuracy,
            "epsilon": result.epsilon,
            "seconds": result.seconds,
            "pairs": result.dataset_size,
        }
    return summary


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as file:
        return list(csv.DictReader(file))
