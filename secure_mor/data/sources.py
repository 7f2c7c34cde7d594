"""Adapters that turn a VQA source into a ``datasets.Dataset`` with the ``VQA_FEATURES`` schema.

Two adapters: easy-VQA from the ``easy-vqa`` PyPI package (it ships its images, so it works offline),
and any VQA dataset in Hugging Face format — a ``save_to_disk`` folder, parquet files, an image folder
with ``metadata.csv``/``metadata.jsonl``, or a hub id where the machine is online — with a column map.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import datasets

from secure_mor.data.config import ColumnMap, DataConfig
from secure_mor.data.schema import VQA_FEATURES, check_vqa, normalize_answer
from secure_mor.errors import DataError

EASY_VQA = "easy-vqa"
_YES_NO = frozenset({"yes", "no"})
_SHAPES = frozenset({"circle", "rectangle", "triangle"})


def load_vqa(config: DataConfig, split: str) -> datasets.Dataset:
    """Load ``split`` of the configured source as a VQA dataset."""
    if config.source == EASY_VQA:
        return load_easy_vqa(split)
    return load_hf_vqa(config.source, split, config.columns)


def easy_vqa_kind(answer: str) -> str:
    """Kind of an easy-VQA question, read off its answer: yes/no, a shape name, or else a colour."""
    if answer in _YES_NO:
        return "yesno"
    return "shape" if answer in _SHAPES else "color"


def load_easy_vqa(split: str) -> datasets.Dataset:
    """easy-VQA's ``train`` or ``test`` split (images are read lazily from the package's files)."""
    import easy_vqa

    getters = {
        "train": (easy_vqa.get_train_questions, easy_vqa.get_train_image_paths),
        "test": (easy_vqa.get_test_questions, easy_vqa.get_test_image_paths),
    }
    if split not in getters:
        raise DataError(f"easy-vqa has splits 'train' and 'test', not {split!r}")
    get_questions, get_paths = getters[split]
    questions, answers, image_ids = get_questions()
    paths = get_paths()
    return datasets.Dataset.from_dict(
        {
            "image": [paths[i] for i in image_ids],
            "question": list(questions),
            "answer": list(answers),
            "kind": [easy_vqa_kind(a) for a in answers],
            "image_id": [f"easy-vqa/{split}/{i}" for i in image_ids],
        },
        features=VQA_FEATURES,
    )


def load_hf_vqa(source: str, split: str, columns: ColumnMap) -> datasets.Dataset:
    """Load ``split`` of a Hugging Face-format dataset at ``source`` and map its columns onto the schema."""
    raw = _load_raw(source, split)
    return _map_columns(raw, columns, f"{source} [{split}]")


def _load_raw(source: str, split: str) -> datasets.Dataset:
    path = Path(source).expanduser()
    try:
        if path.exists():
            loaded = _load_local(path, split)
        elif _looks_like_hub_id(source):
            loaded = datasets.load_dataset(source, split=split)
        else:
            raise DataError(f"dataset not found: {source} (no such file or folder, and not a hub id)")
    except DataError:
        raise
    except (ValueError, KeyError) as error:
        raise DataError(f"{source}: {error}") from None
    except (OSError, ConnectionError) as error:
        raise DataError(f"{source}: cannot read the dataset ({error})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{source}: no split {split!r}; it has: {', '.join(loaded)}")
        loaded = loaded[split]
    if not isinstance(loaded, datasets.Dataset):
        raise DataError(f"{source}: expected a dataset, found {type(loaded).__name__}")
    return loaded


def _load_local(path: Path, split: str) -> datasets.Dataset | datasets.DatasetDict:
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        return datasets.load_from_disk(str(path))
    if path.is_file() and path.suffix == ".parquet":
        return datasets.load_dataset("parquet", data_files={split: str(path)}, split=split)
    if path.is_dir():
        split_files = sorted(path.glob(f"**/{split}*.parquet")) or sorted(path.glob(f"{split}/**/*.parquet"))
        if split_files:
            return datasets.load_dataset(
                "parquet", data_files={split: [str(f) for f in split_files]}, split=split
            )
        if any((path / name).exists() for name in ("metadata.csv", "metadata.jsonl")) or any(
            (path / split / name).exists() for name in ("metadata.csv", "metadata.jsonl")
        ):
            return datasets.load_dataset("imagefolder", data_dir=str(path))
        if list(path.glob("*.parquet")):
            raise DataError(
                f"{path}: has parquet files but none named for split {split!r} ({split}*.parquet)"
            )
    raise DataError(
        f"{path}: not a recognised dataset; expected a save_to_disk folder, a .parquet file or folder, "
        "or an image folder with metadata.csv / metadata.jsonl"
    )


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~"))


def _map_columns(raw: datasets.Dataset, columns: ColumnMap, where: str) -> datasets.Dataset:
    wanted = {"image": columns.image, "question": columns.question, "answer": columns.answer}
    if columns.kind is not None:
        wanted["kind"] = columns.kind
    if columns.image_id is not None:
        wanted["image_id"] = columns.image_id
    for field, column in wanted.items():
        if column not in raw.column_names:
            raise DataError(
                f"{where}: column {column!r} (columns.{field}) not in the dataset; "
                f"its columns are: {', '.join(raw.column_names)}"
            )
    image_column = raw.cast_column(columns.image, datasets.Image(decode=False))[columns.image]
    answers = [_one_answer(a, where) for a in raw[columns.answer]]
    mapped = {
        "image": list(image_column),
        "question": [str(q) for q in raw[columns.question]],
        "answer": answers,
        "kind": [str(k) for k in raw[columns.kind]] if columns.kind else ["vqa"] * len(raw),
        "image_id": (
            [str(i) for i in raw[columns.image_id]]
            if columns.image_id
            else [_image_digest(img, where) for img in image_column]
        ),
    }
    return check_vqa(datasets.Dataset.from_dict(mapped, features=VQA_FEATURES), where)


def _one_answer(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return Counter(normalize_answer(v) for v in value).most_common(1)[0][0]
    raise DataError(f"{where}: an answer must be a string or a list of strings, found {value!r}")


def _image_digest(image: dict[str, Any], where: str) -> str:
    if image.get("bytes"):
        data = image["bytes"]
    elif image.get("path"):
        try:
            data = Path(image["path"]).read_bytes()
        except OSError as error:
            raise DataError(f"{where}: cannot read image {image['path']}: {error}") from None
    else:
        raise DataError(f"{where}: an image has neither bytes nor a path")
    return "sha256:" + hashlib.sha256(data).hexdigest()[:32]
