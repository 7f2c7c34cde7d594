"""What the scoring agent does with one message: score a task, answer a calibration request.

Inputs are checked here, at the wire boundary, before any model runs: the step id's form, the number
of rollouts (≤ ``max_rollouts``), each image (present, ≤ ``max_image_bytes``, decodable) and each text
(≤ ``MAX_TEXT`` characters). Scores must be finite and in [0, 1] or nothing is sent. The N scores are
encrypted as ONE vector under the verified public context and (step id, ciphertext digest) is signed.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from secure_mor.client.errors import TaskRefusedError
from secure_mor.client.reward_model import RewardModel
from secure_mor.crypto.ckks import PublicContext
from secure_mor.crypto.signing import SigningKey
from secure_mor.crypto.step_id import STEP_ID
from secure_mor.crypto.wire import sign_contribution, vector_to_proto
from secure_mor.protocol import scoring as sp

MAX_TEXT = 2048


class Refusal(TaskRefusedError):  # noqa: N818 (a refusal is a decision, not a fault)
    """A refused task: ``code`` is the wire code of the ``Error`` message sent back."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = message


def _image(item: Any, images: Mapping[str, bytes], max_bytes: int, where: str) -> Image.Image:
    kind = item.WhichOneof("image")
    if kind == "image_bytes":
        data = bytes(item.image_bytes)
    elif kind == "image_ref":
        if item.image_ref not in images:
            raise Refusal("MALFORMED", f"{where}: image_ref {item.image_ref[:64]!r} is not in the images map")
        data = images[item.image_ref]
    else:
        raise Refusal("MALFORMED", f"{where}: no image (expected image_bytes or image_ref)")
    if len(data) > max_bytes:
        raise Refusal("IMAGE_TOO_LARGE", f"{where}: image of {len(data)} bytes; at most {max_bytes}")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise Refusal("MALFORMED", f"{where}: image does not decode ({error})") from None
    return image.convert("RGB")


def _texts(values: Sequence[str], where: str) -> None:
    for value in values:
        if len(value) > MAX_TEXT:
            raise Refusal("MALFORMED", f"{where}: text of {len(value)} characters; at most {MAX_TEXT}")


def check_scores(scores: np.ndarray, count: int) -> np.ndarray:
    """Refuse scores that are not ``count`` finite numbers in [0, 1]."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (count,):
        raise Refusal("SCORE_INVALID", f"expected {count} scores, found shape {scores.shape}")
    bad = ~np.isfinite(scores) | (scores < 0.0) | (scores > 1.0)
    if bad.any():
        i = int(np.argmax(bad))
        raise Refusal(
            "SCORE_OUT_OF_RANGE", f"score {i} is {scores[i]!r}; every score must be finite, in [0, 1]"
        )
    return scores


def score_task(
    task: sp.ScoringTask,
    *,
    model: RewardModel,
    public: PublicContext,
    signer: SigningKey,
    max_rollouts: int,
    max_image_bytes: int,
) -> sp.ScoreReply:
    """Score a task's rollouts, encrypt them as one vector and sign; raise ``Refusal`` otherwise."""
    if not STEP_ID.match(task.step_id):
        raise Refusal("MALFORMED", f"step_id {task.step_id[:64]!r} must match {STEP_ID.pattern}")
    count = len(task.rollouts)
    if not 1 <= count <= max_rollouts:
        raise Refusal(
            "TASK_TOO_LARGE" if count else "MALFORMED", f"{count} rollouts; expected 1 to {max_rollouts}"
        )
    images = dict(task.images)
    decoded: dict[str, Image.Image] = {}  # each referenced image decoded once, shared by its rollouts
    pictures = []
    for i, rollout in enumerate(task.rollouts):
        ref = rollout.image_ref if rollout.WhichOneof("image") == "image_ref" else None
        if ref is None or ref not in decoded:
            picture = _image(rollout, images, max_image_bytes, f"rollout {i}")
            if ref is not None:
                decoded[ref] = picture
        pictures.append(picture if ref is None else decoded[ref])
    questions, answers = [r.question for r in task.rollouts], [r.answer for r in task.rollouts]
    _texts(questions + answers, "rollout")
    started = time.perf_counter()
    scores = check_scores(model.score(pictures, questions, answers), count)
    scored = time.perf_counter()
    vector = public.encrypt(scores)
    contribution = sign_contribution(signer, task.step_id, vector)
    return sp.ScoreReply(
        step_id=task.step_id,
        scores=vector_to_proto(vector),
        contribution=contribution,
        score_seconds=scored - started,
        encrypt_seconds=time.perf_counter() - scored,
    )


def answer_calibration(
    request: sp.CalibrationRequest, *, model: RewardModel, max_items: int, max_image_bytes: int
) -> sp.CalibrationReply:
    """Pairwise accuracy of ``model`` per cluster on the request's public pairs (no privacy cost)."""
    count = len(request.items)
    if not 1 <= count <= max_items:
        raise Refusal("TASK_TOO_LARGE" if count else "MALFORMED", f"{count} items; expected 1 to {max_items}")
    images = dict(request.images)
    pictures = [_image(item, images, max_image_bytes, f"item {i}") for i, item in enumerate(request.items)]
    items = list(request.items)
    _texts([t for it in items for t in (it.question, it.chosen, it.rejected)], "item")
    rewards = model.rewards(
        pictures, [it.question for it in items], [[it.chosen, it.rejected] for it in items]
    )
    wins = np.where(rewards[:, 0] > rewards[:, 1], 1.0, np.where(rewards[:, 0] == rewards[:, 1], 0.5, 0.0))
    if not np.all(np.isfinite(rewards)):
        raise Refusal("SCORE_INVALID", "the reward model produced non-finite rewards")
    clusters = []
    for cluster in sorted({it.cluster for it in items}):
        mask = np.array([it.cluster == cluster for it in items])
        accuracy = float(wins[mask].mean())
        assert math.isfinite(accuracy)
        clusters.append(sp.ClusterAccuracy(cluster=cluster, accuracy=accuracy, count=int(mask.sum())))
    return sp.CalibrationReply(request_id=request.request_id, clusters=clusters)
