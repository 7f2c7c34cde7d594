"""``FederatedAlignment``: one server run — connect, calibrate the router, GRPO on the MoR reward, evaluate.

``run`` verifies the key holder's public context against its pinned key, starts the Federation service,
waits for at least ``secure.k_min`` clients, fits the router (for ``routing = "router"``), trains with
TRL's ``GRPOTrainer`` (checkpoints every ``grpo.save_steps``; ``resume=True`` continues from the last
one, and the persisted step counter means no step id is ever requested twice), saves the policy's
adapters and evaluates them on held-out test questions. Per-step logs go to ``run_dir``:
``secure_steps.csv`` (contributors, mean weight per client, fused reward, secure-path timings) and
``train_log.csv`` (TRL's reward, KL, loss), both also as TensorBoard scalars in ``run_dir/tensorboard``.
A federated run also keeps ``anchors.jsonl`` (``secure_mor.anchors``), signed with the server's key:
each start, each client's announced ledger head, each decryption request and the key holder's receipt
(also in ``secure_steps.csv``'s ``keyholder_seq`` and ``keyholder_entry_hash`` columns, for people;
the signed log is what ``secure-mor audit`` checks).

Faults: a run folder that cannot be written stops the run before any work with an error naming it, and
a log row that cannot be written names its file. A resume starts from the last *complete* checkpoint
(one whose ``trainer_state.json``, written last, exists: a server killed while saving leaves a partial
folder behind) and drops the ``train_log.csv`` rows of the steps after it, which the resumed run redoes,
so no training step is logged twice. ``secure_steps.csv`` keeps every row: each is a secure step that
happened (its step id was decrypted or skipped and is never reused).
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from transformers import TrainerCallback

from secure_mor.anchors import ANCHORS_FILE, RunStarted
from secure_mor.crypto.kit import SERVER_IDENTITY
from secure_mor.crypto.signing import SigningKey
from secure_mor.data import FederatedSplits, answer_candidates, load_splits
from secure_mor.models.evaluate import EvalResult, evaluate_held_out
from secure_mor.models.factory import Vlm, load_vlm
from secure_mor.models.features import prompt_features
from secure_mor.server.anchors import RunAnchors
from secure_mor.server.calibration import build_routing
from secure_mor.server.config import ServerConfig
from secure_mor.server.distributed import MainProcessReward
from secure_mor.server.endpoint import open_endpoint
from secure_mor.server.errors import ServerError
from secure_mor.server.federation import RunningFederation
from secure_mor.server.fusion import SecureFusion
from secure_mor.server.grpo import RewardFunc, build_grpo_trainer, grpo_prompts
from secure_mor.server.mixture import FederatedScorer, MixtureOfRewards, Scorer, StepIds, StepRecord
from secure_mor.server.rewards import GoldReward

PROBE_BYTES = 64 * 1024
StepProgress = Callable[[int, int, float], None]
"""Called after each logged GRPO step with (step, max steps, mean reward)."""


@dataclass(frozen=True)
class AlignmentResult:
    """Where the run left its outputs, and its held-out accuracy."""

    run_dir: Path
    steps: int
    seconds: float
    evaluation: EvalResult | None
    router_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    """The router's mean weight per question kind and client (empty for gold)."""


class _CsvLog:
    """Appends rows with fixed columns to a CSV file (header once) and their numbers to TensorBoard."""

    def __init__(self, path: Path, fields: list[str], board: SummaryWriter | None, prefix: str) -> None:
        self.path, self.board, self.prefix = path, board, prefix
        self.fields = self._header() or fields  # a file from an older version keeps its own columns
        self._count = 0

    def _header(self) -> list[str] | None:
        try:
            with self.path.open(newline="") as file:
                return next(csv.reader(file), None)
        except FileNotFoundError:
            return None

    def write(self, row: dict[str, Any]) -> None:
        step = int(row.get("step", self._count))
        self._count += 1
        if self.board is not None:
            for key, value in row.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and key != "step":
                    self.board.add_scalar(f"{self.prefix}/{key}", value, step)
            self.board.flush()
        new = not self.path.exists()
        try:
            with self.path.open("a", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=self.fields, extrasaction="ignore", restval="")
                if new:
                    writer.writeheader()
                writer.writerow(row)
        except OSError as error:
            raise ServerError(f"{self.path}: cannot append a row: {error.strerror or error}") from None

    def keep_through(self, step: int) -> int:
        """Drop the rows of steps after ``step`` (a resumed run redoes them); return how many were dropped."""
        if not self.path.exists():
            return 0
        with self.path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        kept = [r for r in rows if not r.get("step", "").isdigit() or int(r["step"]) <= step]
        if len(kept) < len(rows):
            temporary = self.path.with_suffix(".tmp")
            with temporary.open("w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=self.fields, extrasaction="ignore", restval="")
                writer.writeheader()
                writer.writerows(kept)
            temporary.replace(self.path)
        return len(rows) - len(kept)


def last_complete_checkpoint(folder: Path) -> tuple[Path, int] | None:
    """The newest ``checkpoint-N`` in ``folder`` whose ``trainer_state.json`` (saved last) exists, and N."""
    found = [
        (int(path.name.removeprefix("checkpoint-")), path)
        for path in folder.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit() and (path / "trainer_state.json").is_file()
    ]
    if not found:
        return None
    step, path = max(found)
    return path, step


def require_writable(folder: Path) -> None:
    """Create ``folder`` and write a 64 KiB probe there, or raise ``ServerError`` naming it and the reason."""
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as file:  # a folder that cannot take this cannot take a checkpoint
            file.write(bytes(PROBE_BYTES))
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        raise ServerError(
            f"run.run_dir {folder}: cannot write to the run folder ({error.strerror or error}); "
            "free disk space or fix its permissions"
        ) from None
    finally:
        probe.unlink(missing_ok=True)


class _TrainLog(TrainerCallback):
    """Appends TRL's per-step metrics to ``train_log.csv``."""

    KEYS = ("reward", "reward_std", "kl", "loss", "frac_reward_zero_std", "entropy")

    def __init__(self, log: _CsvLog, progress: StepProgress | None) -> None:
        self.log, self.progress = log, progress

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        """Record one logged step."""
        if logs and "reward" in logs:
            self.log.write({"step": state.global_step, **{k: logs.get(k) for k in self.KEYS}})
            if self.progress is not None:
                self.progress(state.global_step, state.max_steps, float(logs["reward"]))


class FederatedAlignment:
    """The server's run: the entry object behind ``secure-mor server train``."""

    def __init__(self, config: ServerConfig, progress: StepProgress | None = None) -> None:
        self.config, self.progress = config, progress
        self.run_dir = config.run.run_dir
        self.anchors: RunAnchors | None = None

    def run(self, *, resume: bool = False, scorer: Scorer | None = None) -> AlignmentResult:
        """Train (or resume) and evaluate; services started here are stopped before returning.

        The clients' rewards come from the federation (encrypted) unless ``scorer`` gives them: how
        ``secure-mor experiment`` trains on in-process reward models (single process only). Either way
        the routing, the weights and the fusion arithmetic are ``MixtureOfRewards``'.
        """
        config, started = self.config, time.monotonic()
        require_writable(self.run_dir)
        splits = load_splits(config.data)
        reference = load_vlm(config.run.base_model)
        service: RunningFederation | None = None
        mixture: MixtureOfRewards | None = None
        # Under torchrun / accelerate launch only the main process talks to clients and the key holder.
        # (The trainer sets up the process group later; torchrun's RANK says who we are before that.)
        main = int(os.environ.get("RANK", "0")) == 0
        self.board = SummaryWriter(str(self.run_dir / "tensorboard")) if main else None
        train_log = _CsvLog(self.run_dir / "train_log.csv", ["step", *_TrainLog.KEYS], self.board, "grpo")
        logs = _TrainLog(train_log, self.progress)
        checkpoint = last_complete_checkpoint(self.run_dir / "checkpoints") if resume else None
        if checkpoint is not None and main:
            train_log.keep_through(checkpoint[1])
        try:
            reward: RewardFunc
            if not config.run.routing_spec.uses_clients:
                reward = GoldReward()
            else:
                if main and scorer is None:
                    service, scorer = self._federated_scorer(resume)
                if main and scorer is not None:
                    mixture = self._mixture(reference, splits, scorer)
                reward = MainProcessReward(mixture)
            trainer = build_grpo_trainer(
                base_model=config.run.base_model,
                processor=reference.processor,
                prompts=grpo_prompts(splits.prompts, balance_kinds=config.grpo.balance_kinds),
                reward_funcs=[reward],
                settings=config.grpo,
                output_dir=self.run_dir / "checkpoints",
                callbacks=[logs] if main else [],
                quiet=self.progress is not None,
            )
            trainer.train(resume_from_checkpoint=str(checkpoint[0]) if checkpoint else None)
            trainer.save_model(str(self.run_dir / "policy"))
        finally:
            if service is not None:
                service.stop(2.0)
            if self.anchors is not None:
                self.anchors.close()
                self.anchors = None
            if self.board is not None:
                self.board.close()
        weights = mixture.mean_weights() if mixture is not None else {}
        if weights:
            (self.run_dir / "router_weights.json").write_text(json.dumps(weights, indent=2) + "\n")
        policy: Any = trainer.model  # the PEFT-wrapped policy; generates like any PreTrainedModel
        evaluation = self._evaluate(Vlm(policy, reference.processor), splits) if main else None
        return AlignmentResult(
            self.run_dir, int(trainer.state.global_step), time.monotonic() - started, evaluation, weights
        )

    def _federated_scorer(self, resume: bool) -> tuple[RunningFederation, FederatedScorer]:
        config = self.config
        signer = SigningKey.load(SERVER_IDENTITY, config.federation.signing_key)
        self.anchors = anchors = RunAnchors(self.run_dir / ANCHORS_FILE, signer)
        anchors.record(RunStarted(config.run.run_id, resumed=resume))
        endpoint = open_endpoint(config, on_join=anchors.record)
        identities, service, running = config.run.identities, endpoint.service, endpoint.running
        try:
            wait = config.service.wait_for_clients_seconds
            online = service.wait_for(config.secure.k_min, wait)
            if len(online) < config.secure.k_min:
                raise ServerError(
                    f"only {len(online)} client(s) joined within {wait:g} s "
                    f"({', '.join(online) or 'none'}); k_min = {config.secure.k_min}"
                )
            fields = [f for f in StepRecord.__dataclass_fields__ if f != "mean_weights"]
            steps = _CsvLog(
                self.run_dir / "secure_steps.csv",
                fields + [f"weight:{c}" for c in identities],
                self.board,
                "secure",
            )
            scorer = FederatedScorer(
                clients=identities,
                federation=service,
                fusion=SecureFusion(endpoint.public, endpoint.keyholder, anchors=anchors),
                step_ids=StepIds(self.run_dir / "step_counter", config.run.run_id),
                settings=config.secure,
                on_step=lambda record: steps.write(_flat(record)),
            )
        except BaseException:
            running.stop(None)
            raise
        return running, scorer

    def _mixture(self, reference: Vlm, splits: FederatedSplits, scorer: Scorer) -> MixtureOfRewards:
        def features(images: Any, questions: Any) -> Any:
            return prompt_features(reference, images, questions)

        run = self.config.run
        routing = build_routing(
            run.routing_spec,
            self.config.router,
            scorer.clients,
            splits.calibration,
            features,
            scorer.calibrate,
            request_id=f"{run.run_id}/calibration",
            folder=self.run_dir / "router",
        )
        return MixtureOfRewards(
            routing=routing,
            features=features,
            scorer=scorer,
            candidates=answer_candidates(splits.public),
            reward=self.config.grpo.mixture_reward,
        )

    def _evaluate(self, policy: Vlm, splits: Any) -> EvalResult | None:
        settings = self.config.eval
        if not settings.limit:
            return None
        result = evaluate_held_out(policy, splits, settings.limit, balanced=settings.balance_kinds)
        (self.run_dir / "eval.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        return result


def _flat(record: StepRecord) -> dict[str, Any]:
    row = asdict(record)
    row["contributors"] = " ".join(record.contributors)
    row.update({f"weight:{k}": v for k, v in record.mean_weights.items()})
    del row["mean_weights"]
    return row
