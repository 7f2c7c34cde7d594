"""Checks of a recipe against its data, before any kit is written or process started.

What would otherwise fail minutes into a run, in another process's log, is refused here in one line
naming the table, the field and what was expected: by-kind clients on data without a kind column, a
client whose shard does not exist, a kind too small for a split or with one answer only, images that
do not decode.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import datasets

from secure_mor.data import answers_by_kind
from secure_mor.data.sources import EASY_VQA
from secure_mor.errors import DataError
from secure_mor.recipe import Recipe

if TYPE_CHECKING:
    from secure_mor.data import FederatedSplits

DECODE_SAMPLE = 8
"""Images decoded per split (the first ones): a column of undecodable bytes shows in any of them."""


def check_recipe_data(recipe: Recipe) -> FederatedSplits:
    """Load ``recipe.data``'s split and check that the recipe can run on it; raise ``DataError`` if not."""
    from secure_mor.data import load_splits

    data = recipe.data
    where = f"data.source = {data.source!r}"
    if data.clients.mode == "by-kind" and data.source != EASY_VQA and data.columns.kind is None:
        raise DataError(
            f"{where}: data.clients.mode = 'by-kind' needs a question-kind column; set data.columns.kind "
            "(or use data.clients.mode = 'dirichlet')"
        )
    splits = load_splits(data)
    for name, split in splits.named().items():
        _check_images(split, f"{where}, split {name!r}", data.columns.image)
    _check_shards(recipe, splits, where)
    _check_kinds(splits, where)
    return splits


def _check_shards(recipe: Recipe, splits: FederatedSplits, where: str) -> None:
    shards = list(splits.clients)
    for index, spec in enumerate(recipe.clients):
        if spec.data_shard not in splits.clients:
            field = "shard" if spec.shard else "name"
            raise DataError(
                f"clients[{index}].{field}: no shard {spec.data_shard!r} in the split of {where}; "
                f"its shards are: {', '.join(shards)} (set clients[{index}].shard to one of them)"
            )
        images = len(set(splits.clients[spec.data_shard]["image_id"]))
        if images < 2:
            raise DataError(
                f"clients[{index}]: shard {spec.data_shard!r} has {images} image(s); a reward model needs "
                "≥ 2 (one held out): raise data.fractions.clients or use more data"
            )


def _check_kinds(splits: FederatedSplits, where: str) -> None:
    """Every kind the clients judge must be in the public splits and the test set, with ≥ 2 answers."""
    kinds = sorted({k for shard in splits.clients.values() for k in shard["kind"]})
    for name in ("prompts", "calibration", "test"):
        counts = Counter(getattr(splits, name)["kind"])
        missing = [k for k in kinds if counts[k] == 0]
        if missing:
            fraction = "" if name == "test" else f": raise data.fractions.{name}"
            raise DataError(
                f"{where}: kind(s) {', '.join(map(repr, missing))} have no question in split {name!r}"
                f"{fraction} or use more data"
            )
    answers = answers_by_kind(datasets.concatenate_datasets(list(splits.clients.values())))
    single = sorted(k for k, a in answers.items() if len(a) < 2)
    if single:
        raise DataError(
            f"{where}: kind(s) {', '.join(map(repr, single))} take one answer only in the client shards: "
            "no wrong answer to build a preference pair from"
        )


def _check_images(split: datasets.Dataset, where: str, column: str) -> None:
    for row in range(min(DECODE_SAMPLE, len(split))):
        try:
            image = split[row]["image"]
            image.convert("RGB").load()
        except (OSError, ValueError, AttributeError) as error:
            raise DataError(
                f"{where}: row {row}: the image (column {column!r}, data.columns.image) does not decode: "
                f"{error}"
            ) from None
