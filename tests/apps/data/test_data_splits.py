"""Splits (sizes, stratification, determinism), the datalist record, and prepare_dataset's phantom cache."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from monai_meep.apps.data import la_split, prepare_dataset, wmh_split
from monai_meep.apps.data.datasets import default_phantom_dir

from .conftest import make_uamt_tree, make_wmh_tree

KEYS = ("training", "validation", "test")


def _wmh_items(per_site=20, sites=("GE3T", "Singapore", "Utrecht")):
    return [
        {"image": ["f", "t"], "label": "l", "subject": f"{s}{i}", "site": s} for s in sites for i in range(per_site)
    ]


def _ids(split):
    return {k: [it["subject"] for it in split[k]] for k in KEYS}


def test_wmh_paper_split_42_3_15_stratified():
    items = _wmh_items()
    sp = wmh_split(items, seed=0)
    assert [len(sp[k]) for k in KEYS] == [42, 3, 15]
    for k, per_site in zip(KEYS, (14, 1, 5), strict=True):
        assert Counter(it["site"] for it in sp[k]) == {"GE3T": per_site, "Singapore": per_site, "Utrecht": per_site}
    ids = _ids(sp)
    assert sorted(sum(ids.values(), [])) == sorted(it["subject"] for it in items)  # a partition
    assert _ids(wmh_split(items, seed=0)) == ids
    assert _ids(wmh_split(list(reversed(items)), seed=0)) == ids  # independent of input order
    assert _ids(wmh_split(items, seed=1))["test"] != ids["test"]


def test_wmh_split_small_and_uneven():
    items = _wmh_items(per_site=4) + _wmh_items(per_site=2, sites=("Other",))
    sp = wmh_split(items, seed=0)
    assert [len(sp[k]) for k in KEYS] == [9, 1, 4]  # 25 % of 14 -> 4 test, 5 % -> 1 validation
    assert sorted(sum(_ids(sp).values(), [])) == sorted(it["subject"] for it in items)


def test_wmh_loso():
    items = _wmh_items()
    sp = wmh_split(items, seed=0, split="loso", held_out_site="Singapore")
    assert {it["site"] for it in sp["test"]} == {"Singapore"} and len(sp["test"]) == 20
    assert [len(sp["training"]), len(sp["validation"])] == [38, 2]
    assert "Singapore" not in {it["site"] for it in sp["training"] + sp["validation"]}
    with pytest.raises(ValueError, match="held_out_site"):
        wmh_split(items, split="loso", held_out_site="Nowhere")
    with pytest.raises(ValueError, match="held_out_site"):
        wmh_split(items, split="loso")
    with pytest.raises(ValueError, match="split"):
        wmh_split(items, split="kfold")


def test_la_split_80_20_with_5_percent_validation():
    items = [{"image": "x", "label": "x", "subject": f"S{i:03d}", "site": "utah"} for i in range(100)]
    test_ids = [f"S{i:03d}" for i in range(80, 100)]
    sp = la_split(items, seed=0, test_subjects=test_ids)
    assert [len(sp[k]) for k in KEYS] == [76, 4, 20]
    assert _ids(sp)["test"] == test_ids
    assert _ids(la_split(items, seed=0, test_subjects=test_ids)) == _ids(sp)
    assert _ids(la_split(items, seed=1, test_subjects=test_ids))["validation"] != _ids(sp)["validation"]
    sp20 = la_split(items[:20], seed=0)  # Decathlon: 20 volumes, a seeded 20 % test
    assert [len(sp20[k]) for k in KEYS] == [15, 1, 4]


def test_datalist_record_reproduces_run(tmp_path):
    root = make_wmh_tree(tmp_path / "wmh", per_site=4)
    record = tmp_path / "run" / "datalist.json"
    first = prepare_dataset("wmh", dataset_dir=root, seed=0, datalist_file=record)
    doc = json.loads(record.read_text())
    assert doc["task"] == "wmh" and doc["seed"] == 0 and not doc["phantom"]
    assert all(not p.startswith("/") for it in doc["training"] for p in it["image"])  # paths relative to root
    again = prepare_dataset("wmh", dataset_dir=root, seed=7, datalist_file=record)  # the file wins over the seed
    assert again == first
    assert prepare_dataset("wmh", dataset_dir=root, seed=7) != first


def test_la_uamt_prepare_uses_test_list(tmp_path):
    root = make_uamt_tree(tmp_path / "la", n_train=6, n_test=3)
    dl = prepare_dataset("la", dataset_dir=root)
    assert [len(dl[k]) for k in KEYS] == [5, 1, 3]
    assert [it["subject"] for it in dl["test"]] == (root / "test.list").read_text().split()


def test_prepare_generates_phantom_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MONAI_MEEP_CACHE", str(tmp_path / "cache"))
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(prepare_dataset("la", "", num_subjects=4, scale=0.15)))
        for _ in range(2)
    ]  # two "ranks" racing: the lock + atomic rename keep one complete copy
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    root = default_phantom_dir("la", 4, 0.15, 0)
    assert (root / "phantom.json").is_file() and (root / "datalist_la_paper_seed0.json").is_file()
    assert [len(results[0][k]) for k in KEYS] == [2, 1, 1]
    assert not [p for p in root.parent.iterdir() if ".tmp-" in p.name]
    stamp = (root / "phantom.json").stat().st_mtime_ns
    with pytest.warns(UserWarning, match="missing or empty"):
        again = prepare_dataset("la", tmp_path / "nothing", num_subjects=4, scale=0.15)
    assert again == results[0] and (root / "phantom.json").stat().st_mtime_ns == stamp


def test_prepare_into_explicit_cache_dir_and_loso(tmp_path):
    dl = prepare_dataset("wmh", None, tmp_path / "ph", num_subjects=6, scale=0.15, split="loso", held_out_site="GE3T")
    assert {it["site"] for it in dl["test"]} == {"GE3T"} and len(dl["test"]) == 2
    assert (tmp_path / "ph" / "datalist_wmh_loso_GE3T_seed0.json").is_file()
    with pytest.raises(ValueError, match="requested"):  # same folder, different phantom parameters
        prepare_dataset("wmh", None, tmp_path / "ph", num_subjects=5, scale=0.15)
