"""Write a small VQA set in Hugging Face's image-folder format: what "Your own data" in the README runs.

    .venv/bin/python examples/make_squares.py runs/squares

150 images of 40 × 40 pixels, each one coloured square on the left or right, large or small, and three
questions per image of three kinds with their own names and disjoint answers: ``tint`` (red, green,
blue, yellow), ``side`` (left, right), ``extent`` (large, small). ``metadata.jsonl`` names each image's
file (``file_name``) and carries the columns ``question``, ``answer``, ``topic`` (the kind) and
``picture`` (the image id): custom names, which ``examples/own_data.toml`` maps in ``[data.columns]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

TINTS = {"red": (220, 40, 40), "green": (40, 190, 40), "blue": (40, 40, 220), "yellow": (230, 210, 40)}


def write_square_vqa(folder: Path, images: int = 150, seed: int = 0) -> Path:
    """An image folder of ``images`` squares with three questions each; returns the folder."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(images):
        tint, side, extent = (
            list(TINTS)[i % 4],
            ("left", "right")[rng.integers(2)],
            ("large", "small")[rng.integers(2)],
        )
        pixels = np.full((40, 40, 3), 245, np.uint8) + rng.integers(0, 8, (40, 40, 3)).astype(np.uint8)
        width = 16 if extent == "large" else 6
        left = 2 if side == "left" else 38 - width
        top = int(rng.integers(2, 38 - width))
        pixels[top : top + width, left : left + width] = TINTS[tint]
        name = f"square-{i:04d}.png"
        Image.fromarray(pixels).save(folder / name)
        for topic, question, answer in (
            ("tint", "what tint is the square", tint),
            ("side", "which side is the square on", side),
            ("extent", "how big is the square", extent),
        ):
            rows.append({"file_name": name, "question": question, "answer": answer, "topic": topic,
                         "picture": f"sq-{i}"})  # fmt: skip
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/make_squares.py OUT_FOLDER")
    print(f"wrote {write_square_vqa(Path(sys.argv[1]))}")
