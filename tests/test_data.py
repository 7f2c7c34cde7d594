"""Data adapters, the image-disjoint seeded splits and the preference-pair builder."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest

from secure_mor.data import (
    VQA_COLUMNS,
    ClientSplit,
    ColumnMap,
    DataConfig,
    FederatedSplits,
    KindLimit,
    build_preference_pairs,
    load_hf_vqa,
    load_splits,
    make_splits,
)
from secure_mor.data.sources import load_easy_vqa
from secure_mor.errors import ConfigError, DataError

TOY_COLUMNS = ColumnMap(image="img", question="q", answer="a", kind="type")


def image_sets(splits: FederatedSplits) -> dict[str, set[str]]:
    return {name: set(split["image_id"]) for name, split in splits.named().items()}


def test_easy_vqa_schema_and_kinds() -> None:
    test = load_easy_vqa("test")
    assert tuple(test.column_names) == VQA_COLUMNS
    assert len(test) == 9673
    assert set(test["kind"]) == {"color", "shape", "yesno"}
    row = test[0]
    assert row["image"].size == (64, 64)
    assert row["kind"] == {"yes": "yesno", "no": "yesno", "circle": "shape"}.get(row["answer"], row["kind"])


def test_splits_are_pairwise_disjoint_by_image(easy_splits: FederatedSplits) -> None:
    sets = image_sets(easy_splits)
    for (a, images_a), (b, images_b) in itertools.combinations(sets.items(), 2):
        assert not images_a & images_b, f"{a} and {b} share images"
    assert all(len(split) > 0 for split in easy_splits.named().values())


def test_by_kind_gives_one_client_per_kind(easy_splits: FederatedSplits) -> None:
    assert sorted(easy_splits.clients) == ["color", "shape", "yesno"]
    for name, shard in easy_splits.clients.items():
        assert set(shard["kind"]) == {name}
    sizes = [len(shard) for shard in easy_splits.clients.values()]
    assert max(sizes) < 1.5 * min(sizes), f"shards should hold similar numbers of questions: {sizes}"


def test_shared_images_give_each_client_every_question_of_its_kind(easy_splits: FederatedSplits) -> None:
    shared = load_splits(DataConfig(clients=ClientSplit(images="shared")))
    pool = set().union(*(set(shard["image_id"]) for shard in shared.clients.values()))
    assert pool >= set().union(*(image_sets(easy_splits)[f"client:{k}"] for k in easy_splits.clients))
    public_and_test = set().union(
        *(image_sets(shared)[s] for s in ("foundation", "prompts", "calibration", "test"))
    )
    assert not pool & public_and_test
    questions = [
        {(i, q) for i, q in zip(s["image_id"], s["question"], strict=True)} for s in shared.clients.values()
    ]
    assert all(not a & b for a, b in itertools.combinations(questions, 2)), "no question in two shards"
    for name, shard in shared.clients.items():
        assert set(shard["kind"]) == {name}
        assert len(shard) > 2 * len(easy_splits.clients[name])  # its kind on every pool image, not a third


def test_foundation_limits_cap_only_the_named_kinds(easy_splits: FederatedSplits) -> None:
    capped = load_splits(DataConfig(foundation_limits=(KindLimit("color", 40), KindLimit("shape", 0))))
    counts = Counter(capped.foundation["kind"])
    assert counts == {"color": 40, "yesno": Counter(easy_splits.foundation["kind"])["yesno"]}
    assert set(capped.foundation["image_id"]) <= set(easy_splits.foundation["image_id"])
    for name in ("prompts", "calibration", "test", *(f"client:{k}" for k in capped.clients)):
        assert list(capped.named()[name]["question"]) == list(easy_splits.named()[name]["question"])
    with pytest.raises(DataError, match=r"names kind\(s\) 'colour'"):
        load_splits(DataConfig(foundation_limits=(KindLimit("colour", 40),)))
    with pytest.raises(ConfigError, match="questions"):
        KindLimit("color", -1)
    with pytest.raises(ConfigError, match="limited twice"):
        DataConfig(foundation_limits=(KindLimit("color", 4), KindLimit("color", 5)))


def test_splits_are_deterministic_and_depend_on_the_seed(easy_splits: FederatedSplits) -> None:
    again = load_splits(DataConfig())
    assert image_sets(again) == image_sets(easy_splits)
    assert list(again.clients["shape"]["question"]) == list(easy_splits.clients["shape"]["question"])
    other = load_splits(DataConfig(seed=1))
    assert image_sets(other)["foundation"] != image_sets(easy_splits)["foundation"]


def test_dirichlet_clients_are_disjoint_and_skewed() -> None:
    config = DataConfig(clients=ClientSplit(mode="dirichlet", count=4, alpha=0.3), seed=3)
    splits = load_splits(config)
    assert sorted(splits.clients) == [f"client-{i}" for i in range(4)]
    sets = image_sets(splits)
    for a, b in itertools.combinations(sets, 2):
        assert not sets[a] & sets[b]
    mixtures = [Counter(shard["kind"]) for shard in splits.clients.values()]
    shares = [max(m.values()) / sum(m.values()) for m in mixtures]
    assert max(shares) > 0.8, f"alpha=0.3 should give at least one client a dominant kind: {mixtures}"


def test_client_names_must_match_client_count() -> None:
    config = DataConfig(clients=ClientSplit(names=("hospital", "bank")))
    with pytest.raises(DataError, match=r"clients\.names has 2 name"):
        load_splits(config)


def test_preference_pairs_never_pair_an_answer_with_itself(easy_splits: FederatedSplits) -> None:
    for name, shard in easy_splits.clients.items():
        pairs = build_preference_pairs(shard, seed=0)
        assert len(pairs) == len(shard)
        assert all(c != r for c, r in zip(pairs["chosen"], pairs["rejected"], strict=True))
        assert list(pairs["chosen"]) == list(shard["answer"]), name
        kinds_answers: dict[str, set[str]] = {}
        for kind, answer in zip(shard["kind"], shard["answer"], strict=True):
            kinds_answers.setdefault(kind, set()).add(answer)
        assert all(r in kinds_answers[k] for r, k in zip(pairs["rejected"], pairs["kind"], strict=True))


def test_label_noise_swaps_about_that_share_of_pairs(easy_splits: FederatedSplits) -> None:
    shard = easy_splits.clients["color"]
    pairs = build_preference_pairs(shard, seed=5, label_noise=0.2)
    swapped = sum(c != a for c, a in zip(pairs["chosen"], shard["answer"], strict=True)) / len(shard)
    assert 0.15 < swapped < 0.25
    assert all(c != r for c, r in zip(pairs["chosen"], pairs["rejected"], strict=True))
    again = build_preference_pairs(shard, seed=5, label_noise=0.2)
    assert list(again["rejected"]) == list(pairs["rejected"])


def test_preference_pairs_refuse_a_kind_with_one_answer(toy_hf_dataset: datasets.Dataset) -> None:
    shard = load_hf_vqa_from(toy_hf_dataset).filter(lambda row: row["answer"] == "red")
    with pytest.raises(DataError, match="no answer other than 'red'"):
        build_preference_pairs(shard, seed=0)
    with pytest.raises(DataError, match="label_noise must be in"):
        build_preference_pairs(shard, seed=0, label_noise=0.7)


def load_hf_vqa_from(dataset: datasets.Dataset) -> datasets.Dataset:
    rows = dataset.rename_columns({"img": "image", "q": "question", "a": "answer", "type": "kind"})
    return rows.add_column("image_id", [str(i // 2) for i in range(len(rows))])


# --- the Hugging Face-format loader, on datasets the tests write to disk ---------------------------


def check_toy(loaded: datasets.Dataset, expected: datasets.Dataset) -> None:
    assert tuple(loaded.column_names) == VQA_COLUMNS
    assert list(loaded["question"]) == list(expected["q"])
    assert list(loaded["answer"]) == list(expected["a"])
    assert list(loaded["kind"]) == list(expected["type"])
    assert len(set(loaded["image_id"])) == len(expected) // 2  # two questions per distinct image
    assert loaded[0]["image"].size == (32, 32)


def test_loads_a_save_to_disk_folder(tmp_path: Path, toy_hf_dataset: datasets.Dataset) -> None:
    datasets.DatasetDict({"train": toy_hf_dataset}).save_to_disk(str(tmp_path / "dd"))
    check_toy(load_hf_vqa(str(tmp_path / "dd"), "train", TOY_COLUMNS), toy_hf_dataset)
    with pytest.raises(DataError, match="no split 'test'; it has: train"):
        load_hf_vqa(str(tmp_path / "dd"), "test", TOY_COLUMNS)


def test_loads_parquet(tmp_path: Path, toy_hf_dataset: datasets.Dataset) -> None:
    (tmp_path / "pq").mkdir()
    toy_hf_dataset.to_parquet(str(tmp_path / "pq" / "train-00000.parquet"))
    check_toy(load_hf_vqa(str(tmp_path / "pq"), "train", TOY_COLUMNS), toy_hf_dataset)
    check_toy(load_hf_vqa(str(tmp_path / "pq" / "train-00000.parquet"), "train", TOY_COLUMNS), toy_hf_dataset)


def test_loads_an_image_folder_with_metadata(tmp_path: Path, toy_hf_dataset: datasets.Dataset) -> None:
    folder = tmp_path / "imgs" / "train"
    folder.mkdir(parents=True)
    lines = ["file_name,q,a,type"]
    for i, row in enumerate(toy_hf_dataset):
        name = f"{i // 2}.png"
        if i % 2 == 0:
            row["img"].save(folder / name)
        lines.append(f"{name},{row['q']},{row['a']},{row['type']}")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    columns = dataclasses.replace(TOY_COLUMNS, image="image")
    check_toy(load_hf_vqa(str(tmp_path / "imgs"), "train", columns), toy_hf_dataset)


def test_unknown_column_names_the_field_and_lists_columns(
    tmp_path: Path, toy_hf_dataset: datasets.Dataset
) -> None:
    toy_hf_dataset.save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(
        DataError,
        match=r"column 'question' \(columns.question\) not in the dataset; its columns are: img, q, a, type",
    ):
        load_hf_vqa(str(tmp_path / "ds"), "train", dataclasses.replace(TOY_COLUMNS, question="question"))


def test_missing_or_unrecognised_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset not found"):
        load_hf_vqa(str(tmp_path / "absent"), "train", TOY_COLUMNS)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="not a recognised dataset"):
        load_hf_vqa(str(tmp_path / "junk"), "train", TOY_COLUMNS)


def test_splits_of_a_local_dataset_hold_out_test_images(
    tmp_path: Path, toy_rows: Callable[[int], dict[str, list[object]]]
) -> None:
    datasets.Dataset.from_dict(toy_rows(60)).save_to_disk(str(tmp_path / "ds"))
    config = DataConfig(source=str(tmp_path / "ds"), test_split=None, columns=TOY_COLUMNS)
    splits = load_splits(config)
    sets = image_sets(splits)
    for a, b in itertools.combinations(sets, 2):
        assert not sets[a] & sets[b]
    assert sorted(splits.clients) == ["color", "yesno"]
    train = load_hf_vqa(str(tmp_path / "ds"), "train", TOY_COLUMNS)
    assert image_sets(make_splits(train, config)) == sets
