"""A content fingerprint of a VQA split: what caches of models trained on it are keyed by.

Two splits with the same rows and the same image bytes have the same fingerprint wherever their files
lie; a different source, split seed or fraction, or one edited image or answer, changes it. So a base
model or a publicly pretrained reward model made from other data is never reused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import datasets

from secure_mor.errors import DataError

_MEMO = "_secure_mor_fingerprint"


def dataset_fingerprint(dataset: datasets.Dataset) -> str:
    """SHA-256 (hex) over every row's question, answer, kind, image id and image bytes, in order.

    Memoised on the (immutable) dataset object: a run asks for the same split's fingerprint often.
    """
    memo = getattr(dataset, _MEMO, None)
    if isinstance(memo, str):
        return memo
    digest = hashlib.sha256()
    images = dataset.cast_column("image", datasets.Image(decode=False))["image"]
    seen: dict[str, str] = {}  # image id -> digest of its bytes: an image carries several questions
    for row, image in zip(
        dataset.select_columns(["question", "answer", "kind", "image_id"]), images, strict=True
    ):
        image_id = str(row["image_id"])
        if image_id not in seen:
            seen[image_id] = hashlib.sha256(_image_bytes(image, image_id)).hexdigest()
        for value in (row["question"], row["answer"], row["kind"], image_id, seen[image_id]):
            digest.update(str(value).encode())
            digest.update(b"\0")
    setattr(dataset, _MEMO, digest.hexdigest())
    return digest.hexdigest()


def _image_bytes(image: dict[str, object], image_id: str) -> bytes:
    data = image.get("bytes")
    if isinstance(data, bytes) and data:
        return data
    path = image.get("path")
    if isinstance(path, str) and path:
        try:
            return Path(path).read_bytes()
        except OSError as error:
            raise DataError(f"image {image_id} ({path}): cannot read it: {error.strerror or error}") from None
    raise DataError(f"image {image_id}: has neither bytes nor a path")
