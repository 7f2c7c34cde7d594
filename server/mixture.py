"""The MoR reward: router weights over the clients, their rewards, fused — encrypted or in one process.

``MixtureOfRewards`` is the TRL reward function. For one generation batch of N = B·G rollouts it
computes the router weights W (N × K) from the frozen reference's features of each prompt and hands W
and the rollouts to a ``Scorer``, which returns the N fused rewards Σ_k W[:, k] · r_k:

- ``FederatedScorer`` (a deployment, ``secure-mor simulate``): sends one ``ScoringTask`` under a fresh
  step id to every online client and waits for the deadline; if fewer than ``k_min`` answered it
  retries under a new step id, then skips (rewards ``None``, so TRL takes no step on them) — it never
  asks the key holder to decrypt fewer than ``k_min``; it renormalises W over the clients that
  answered, re-caps it at ``w_max``, fuses their ciphertexts and has the key holder decrypt only the
  fusion. Step ids come from ``StepIds``, a counter persisted before each use, so a resumed run never
  reuses one (the key holder would refuse it anyway).
- an in-process scorer over the clients' reward models in plaintext (``secure-mor experiment``'s grid,
  ``secure_mor.experiment.rewards.LocalScorer``): the same routing, weights and fusion arithmetic.

The mixture also keeps the router's mean weight per question kind and client (``mean_weights``).
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from secure_mor.data.schema import normalize_answer
from secure_mor.protocol import scoring as sp
from secure_mor.server.errors import RoutingError, ServerError
from secure_mor.server.federation import FederationService
from secure_mor.server.fusion import DecryptionRefusedError, SecureFusion
from secure_mor.server.rewards import completion_text
from secure_mor.server.routing import Routing, renormalise
from secure_mor.server.settings import MixtureReward, SecurePathSettings

LOGGER = logging.getLogger("secure_mor.server")

FeatureFn = Callable[[Sequence[Any], Sequence[str]], np.ndarray]
"""(images, questions) -> (n, H) features of the frozen reference (``secure_mor.models.features``)."""


class StepIds:
    """Step ids ``<run_id>/<n>`` from a counter persisted (atomically, fsynced) before each id is used."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path, self.run_id = path, run_id
        try:
            self._next = int(path.read_text().strip()) if path.exists() else 0
        except ValueError:
            raise ServerError(f"{path}: corrupt step counter (expected an integer)") from None

    def next(self) -> str:
        """Reserve and return the next step id."""
        n = self._next
        self._next += 1
        temporary = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("w") as file:
                file.write(f"{self._next}\n")
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(self.path)
        except OSError as error:  # the id is not used unless the counter is on disk
            raise ServerError(
                f"{self.path}: cannot save the step counter: {error.strerror or error}"
            ) from None
        return f"{self.run_id}/{n}"


@dataclass(frozen=True)
class StepRecord:
    """What one scoring step did, for the run's logs (no plaintext client score is in here)."""

    step_id: str
    rollouts: int
    contributors: tuple[str, ...]
    mean_weights: dict[str, float]
    reward_mean: float
    reward_std: float
    waiting_seconds: float  # from sending the task to the last answer (or the deadline)
    scoring_seconds: float  # the slowest contributor's own report
    encryption_seconds: float  # the slowest contributor's own report (encrypting and signing)
    transport_seconds: float  # waiting less the slowest contributor's scoring and encryption
    fusion_seconds: float
    decryption_seconds: float
    skipped: str = ""
    keyholder_seq: int | None = None  # the key holder's receipt: seq of its decryption-log entry …
    keyholder_entry_hash: str = ""  # … and that entry's hash (None and "" when nothing was decrypted)

    @property
    def secure_seconds(self) -> float:
        """The whole secure path of the step: waiting for the clients, fusion, decryption."""
        return self.waiting_seconds + self.fusion_seconds + self.decryption_seconds


@dataclass(frozen=True)
class Rollouts:
    """One generation batch as the scorers see it: N (image, question, answer) rollouts."""

    images: Sequence[Any]
    questions: Sequence[str]
    answers: Sequence[str]
    image_ids: Sequence[str] | None = None  # lets the G rollouts of a prompt share one image on the wire


class Scorer(Protocol):
    """Where the clients' rewards come from; ``clients`` are their identities, in W's column order."""

    clients: tuple[str, ...]

    def fuse(self, rollouts: Rollouts, weights: np.ndarray) -> list[float] | None:
        """The N fused rewards under router weights ``weights`` (N × K); None if the step was skipped."""
        ...

    def calibrate(self, request: sp.CalibrationRequest) -> Mapping[str, sp.CalibrationReply]:
        """Each client's answer to a public calibration request, by identity (clients that answered)."""
        ...


class MixtureOfRewards:
    """TRL reward function: the router-weighted mixture of the clients' rewards, fused by ``scorer``.

    With ``candidates`` (the public answers of each question kind), the clients score every candidate
    answer of each prompt once, not the G sampled answers, and a rollout's reward is read off its
    prompt's fused scores (``reward``): ``"top1"`` is 1 for the candidate the mixture scores highest
    and 0 otherwise, ``"fused"`` is the candidate's fused score. Either way an answer that is not a
    public answer of its question's kind gets 0: specialist reward models may score an answer of another
    kind above the gold one ("circle" to "what colour is the shape?"). ``"top1"`` gives every wrong
    answer the same 0, as an exact-match reward does: a graded reward that scores one wrong answer
    higher than the others on most images ("circle" as the runner-up shape) teaches a policy that
    cannot yet tell the images apart to give that answer everywhere. A prompt whose kind has no
    candidates gets its G sampled answers scored, and their fused scores as rewards.
    """

    __name__ = "mor"

    def __init__(
        self,
        *,
        routing: Routing,
        features: FeatureFn,
        scorer: Scorer,
        candidates: Mapping[str, Sequence[str]] | None = None,
        reward: MixtureReward = "top1",
    ) -> None:
        self.routing, self.features, self.scorer = routing, features, scorer
        self.clients = scorer.clients
        self.candidates = {kind: tuple(answers) for kind, answers in (candidates or {}).items()}
        self.reward = reward
        self._weight_sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(self.clients)))
        self._counts: dict[str, int] = defaultdict(int)

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        """Rewards for N rollouts; ``None`` for all of them when the step had to be skipped."""
        answers = [completion_text(c) for c in completions]
        kinds = [str(k) for k in columns.get("kind", ["all"] * len(answers))]
        plan = _ScoringPlan.of(columns, answers, kinds, self.candidates)
        firsts = plan.prompt_rows
        features = self.features(
            [plan.rollouts.images[i] for i in firsts], [plan.rollouts.questions[i] for i in firsts]
        )
        weights = self.routing.weights(features, self.clients)[list(plan.row_prompts)]
        for kind, row in zip(plan.kinds, weights, strict=True):
            self._weight_sums[kind] += row
            self._counts[kind] += 1
        values = self.scorer.fuse(plan.rollouts, weights)
        if values is None:
            return [None] * len(answers)
        return plan.rewards(values, self.reward)

    def mean_weights(self) -> dict[str, dict[str, float]]:
        """The router's mean weight per question kind and client (by name) over every rollout so far."""
        names = [identity.removeprefix("client:") for identity in self.clients]
        return {
            kind: dict(zip(names, (total / self._counts[kind]).round(4).tolist(), strict=True))
            for kind, total in sorted(self._weight_sums.items())
        }


@dataclass(frozen=True)
class _ScoringPlan:
    """What one step asks the clients to score, and how each rollout's reward is read off the result.

    ``sources[i]`` is, for rollout i, (first row, rows, offset): with rows = 0, its own row ``first``
    in ``rollouts`` (a kind without candidates); else its prompt's candidate rows ``first`` to
    ``first + rows`` and its answer's offset among them (-1: not a candidate, reward 0).
    ``row_prompts`` maps each row to its prompt, one of ``prompt_rows`` (a row of each prompt), so
    router features are computed once per prompt.
    """

    rollouts: Rollouts
    kinds: tuple[str, ...]
    sources: tuple[tuple[int, int, int], ...]
    row_prompts: tuple[int, ...]
    prompt_rows: tuple[int, ...]

    @classmethod
    def of(
        cls,
        columns: Mapping[str, Any],
        answers: Sequence[str],
        kinds: Sequence[str],
        candidates: Mapping[str, tuple[str, ...]],
    ) -> _ScoringPlan:
        images, questions, ids = list(columns["image"]), list(columns["question"]), columns.get("image_id")
        rows: list[int] = []  # the rollout each row takes its image, question and id from
        row_answers: list[str] = []
        sources: list[tuple[int, int, int]] = []
        prompts: dict[tuple[str, str], int] = {}  # prompt -> its index
        candidate_rows: dict[int, int] = {}  # prompt index -> first of its candidate rows
        row_prompts: list[int] = []
        for i, (answer, kind) in enumerate(zip(answers, kinds, strict=True)):
            key = (str(ids[i]) if ids is not None else str(id(images[i])), questions[i])
            prompt = prompts.setdefault(key, len(prompts))
            options = candidates.get(kind, ())
            if not options:
                sources.append((len(rows), 0, 0))
                rows.append(i)
                row_answers.append(answer)
                row_prompts.append(prompt)
                continue
            if prompt not in candidate_rows:
                candidate_rows[prompt] = len(rows)
                rows.extend([i] * len(options))
                row_answers.extend(options)
                row_prompts.extend([prompt] * len(options))
            normalised = normalize_answer(answer)
            offset = options.index(normalised) if normalised in options else -1
            sources.append((candidate_rows[prompt], len(options), offset))
        rollouts = Rollouts(
            images=[images[i] for i in rows],
            questions=[questions[i] for i in rows],
            answers=row_answers,
            image_ids=[ids[i] for i in rows] if ids is not None else None,
        )
        prompt_rows = tuple(row_prompts.index(prompt) for prompt in range(len(prompts)))
        kinds_of_rows = tuple(str(kinds[i]) for i in rows)
        return cls(rollouts, kinds_of_rows, tuple(sources), tuple(row_prompts), prompt_rows)

    def rewards(self, values: Sequence[float], reward: MixtureReward) -> list[float | None]:
        """Each rollout's reward from the fused ``values`` of the plan's rows."""
        out: list[float | None] = []
        for first, count, offset in self.sources:
            if count == 0:
                out.append(float(values[first]))
            elif offset < 0:
                out.append(0.0)
            elif reward == "fused":
                out.append(float(values[first + offset]))
            else:
                block = values[first : first + count]
                out.append(float(offset == int(np.argmax(block))))
        return out


class FederatedScorer:
    """The secure path: encrypted scores from every online client, fused and decrypted as one value."""

    def __init__(
        self,
        *,
        clients: Sequence[str],
        federation: FederationService,
        fusion: SecureFusion,
        step_ids: StepIds,
        settings: SecurePathSettings,
        on_step: Callable[[StepRecord], None] | None = None,
    ) -> None:
        self.clients = tuple(clients)
        self.federation, self.fusion = federation, fusion
        self.step_ids, self.settings, self.on_step = step_ids, settings, on_step

    def fuse(self, rollouts: Rollouts, weights: np.ndarray) -> list[float] | None:
        """Score under a fresh step id, retrying when fewer than ``k_min`` answer; None if still short."""
        parts = _task_parts(rollouts.images, rollouts.questions, rollouts.answers, rollouts.image_ids)
        record = None
        for _ in range(self.settings.retries + 1):
            record, values = self._attempt(parts, weights)
            if self.on_step is not None:
                self.on_step(record)
            if values is not None:
                return values
        LOGGER.warning(
            "step skipped after %d tries: %s", self.settings.retries + 1, record.skipped if record else ""
        )
        return None

    def calibrate(self, request: sp.CalibrationRequest) -> Mapping[str, sp.CalibrationReply]:
        """Fan the request out to the online clients (at least a minute: they score every pair)."""
        return self.federation.calibrate(request, max(self.settings.deadline_seconds, 60.0))

    def _attempt(
        self, parts: tuple[list[sp.Rollout], dict[str, bytes]], weights: np.ndarray
    ) -> tuple[StepRecord, list[float] | None]:
        step_id = self.step_ids.next()
        rollouts, images = parts
        started = time.perf_counter()
        outcome = self.federation.score(
            sp.ScoringTask(step_id=step_id, rollouts=rollouts, images=images), self.settings.deadline_seconds
        )
        waited = time.perf_counter() - started
        by_identity = {a.identity: a for a in outcome.answers}
        answered = [c in by_identity for c in self.clients]

        def skipped(reason: str) -> tuple[StepRecord, None]:
            record = StepRecord(
                step_id,
                len(rollouts),
                outcome.contributors,
                {},
                0.0,
                0.0,
                waited,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                reason,
            )
            return record, None

        if sum(answered) < self.settings.k_min:
            return skipped(
                f"{sum(answered)} client(s) answered, k_min = {self.settings.k_min}: {dict(outcome.refused)}"
            )
        contributors = tuple(c for c, a in zip(self.clients, answered, strict=True) if a)
        try:
            kept = renormalise(weights, answered, self.settings.w_max)
            fused = self.fusion.fuse(step_id, [by_identity[c] for c in contributors], kept)
        except (RoutingError, DecryptionRefusedError) as error:
            return skipped(str(error))
        scoring, encryption = _slowest(
            waited, [outcome.client_seconds.get(c, (0.0, 0.0)) for c in contributors]
        )
        record = StepRecord(
            step_id=step_id,
            rollouts=len(rollouts),
            contributors=contributors,
            mean_weights={c: float(kept[:, i].mean()) for i, c in enumerate(contributors)},
            reward_mean=float(fused.values.mean()),
            reward_std=float(fused.values.std()),
            waiting_seconds=waited,
            scoring_seconds=scoring,
            encryption_seconds=encryption,
            transport_seconds=waited - scoring - encryption,
            fusion_seconds=fused.fuse_seconds,
            decryption_seconds=fused.decrypt_seconds,
            keyholder_seq=fused.log_seq,
            keyholder_entry_hash=fused.log_entry_hash,
        )
        return record, [float(v) for v in fused.values]


def _slowest(waited: float, reports: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The slowest contributor's own (scoring, encryption) report, clamped so that both fit in the wait."""
    score, encrypt = max(reports, key=sum, default=(0.0, 0.0))
    score = min(max(score, 0.0), waited)
    return score, min(max(encrypt, 0.0), waited - score)


def _task_parts(
    images: Sequence[Any], questions: Sequence[str], answers: Sequence[str], image_ids: Sequence[str] | None
) -> tuple[list[sp.Rollout], dict[str, bytes]]:
    """Rollouts referencing each distinct image once (the G answers of a prompt share its image)."""
    refs: dict[str, str] = {}
    blobs: dict[str, bytes] = {}
    rollouts = []
    for i, (image, question, answer) in enumerate(zip(images, questions, answers, strict=True)):
        key = str(image_ids[i]) if image_ids is not None else f"{id(image)}"
        if key not in refs:
            refs[key] = str(len(refs))
            blobs[refs[key]] = _png(image)
        rollouts.append(sp.Rollout(image_ref=refs[key], question=question, answer=answer))
    return rollouts, blobs


def _png(image: Any) -> bytes:
    if isinstance(image, bytes):
        return image
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
