"""Bad bundle overrides stop the run with one line naming the key, and that line is the last one printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from monai.bundle import ConfigWorkflow

from monai_meep.apps.bundle.checks import (
    EVAL_SPLITS,
    check_cli_overrides,
    check_settings,
    root_cause,
    split_items,
)
from monai_meep.apps.bundle.runner import config_files

from .conftest import BUNDLES, error_chain


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"max_epochs": "two"}, TypeError, "'max_epochs' must be an integer, got 'two'"),
        ({"max_epochs": 2.5}, TypeError, "'max_epochs' must be an integer"),
        ({"max_epochs": True}, TypeError, "'max_epochs' must be an integer"),
        ({"max_epochs": 0}, ValueError, "'max_epochs' must be an integer >= 1"),
        ({"learning_rate": -1e-3}, ValueError, "'learning_rate' must be a finite number > 0"),
        ({"learning_rate": float("nan")}, ValueError, "'learning_rate' must be a finite number"),
        ({"scale": "0.3"}, TypeError, "'scale' must be a number"),
        ({"meep_lambda": -0.5}, ValueError, "'meep_lambda' must be a finite number >= 0"),
        ({"meep_lambda": "paper"}, TypeError, "'meep_lambda' must be a number or null"),
        ({"dropout": 1.0}, ValueError, "'dropout' must be a finite number >= 0 and < 1"),
        ({"dropout": -0.1}, ValueError, "'dropout' must be a finite number >= 0 and < 1"),
        ({"dropout": "0.1"}, TypeError, "'dropout' must be a number"),
        ({"max_epoch": 3}, ValueError, "does not know 'max_epoch'"),
    ],
)
def test_check_settings_names_the_key(settings, error, match):
    with pytest.raises(error, match=match):
        check_settings(**settings)


def test_check_settings_accepts_the_defaults():
    assert check_settings(max_epochs=200, learning_rate=1e-4, scale=1.0, meep_lambda=None, sw_overlap=0.0, seed=0)
    assert check_settings(dropout=0.0) and check_settings(dropout=0.5)


def test_split_items():
    data = {"training": [1], "validation": [2], "test": [3]}
    assert [split_items(data, s) for s in ("train", "val", "VALIDATION", "test")] == [[1], [2], [2], [3]]
    with pytest.raises(ValueError, match="unknown eval_split 'testing'; valid values are train, val, validation, test"):
        split_items(data, "testing")
    assert set(EVAL_SPLITS.values()) == set(data)


def test_root_cause_walks_the_chain():
    try:
        try:
            raise ValueError("the real problem")
        except ValueError as e:
            raise RuntimeError("Failed to evaluate ...") from e
    except RuntimeError as outer:
        assert str(root_cause(outer)) == "the real problem"
    lone = KeyError("x")
    assert root_cause(lone) is lone


@pytest.mark.parametrize("task", ["la", "wmh"])
def test_bad_override_fails_before_any_work(task, tiny, tmp_path):
    # initialize() runs check_settings first: no phantom, no run folder content, one clear message
    o = {**tiny[task], "run_dir": str(tmp_path / "run"), "max_epochs": "two"}
    wf = ConfigWorkflow(config_file=config_files(task, "train"), workflow_type="train",
                        bundle_root=str(BUNDLES / f"{task}_meep"), **o)  # fmt: skip
    with pytest.raises(Exception) as info:
        wf.initialize()
    assert "bundle setting 'max_epochs' must be an integer, got 'two'" in error_chain(info.value)
    assert not (tmp_path / "run" / "models").exists()


def test_evaluate_config_reads_eval_split_through_the_check():
    cfg = json.loads((BUNDLES / "la_meep" / "configs" / "evaluate.json").read_text())
    assert cfg["validate#dataset#data"] == "$checks.split_items(@datalist, @eval_split)"


@pytest.mark.slow
def test_last_line_printed_is_the_projects_message(tmp_path):
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/train.json",
           "--run_dir", str(tmp_path), "--max_epochs", "two", "--num_subjects", "8", "--scale", "0.2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=BUNDLES / "la_meep", capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode != 0
    last = [line for line in res.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("monai_meep: TypeError: bundle setting 'max_epochs' must be an integer, got 'two'"), last


def _argv(*options):
    main = os.path.join(os.path.dirname(__import__("monai").__file__), "bundle", "__main__.py")
    return [main, "run", *options]


def test_cli_override_typo_is_refused_with_the_closest_key():
    train = str(BUNDLES / "la_meep" / "configs" / "train.json")
    evaluate = str(BUNDLES / "la_meep" / "configs" / "evaluate.json")
    with pytest.raises(ValueError, match="unknown bundle setting 'max_epoch'.*did you mean 'max_epochs'"):
        check_cli_overrides(_argv("--config_file", train, "--max_epoch", "5"))
    # known keys, '#' paths, '=' forms, MONAI's own arguments and keys of a layered config all pass
    files = f"['{train}', '{evaluate}']"
    assert check_cli_overrides(_argv("--config_file", files, "--max_epochs", "5", "--train#dataset#cache_rate=0.5",
                                     "--eval_split", "val", "--meta_file", "configs/metadata.json"))  # fmt: skip
    # a bundle run from Python, or another program, is not inspected
    assert check_cli_overrides(["python", "-m", "monai_meep.apps.experiments", "--max_epoch", "5"])


@pytest.mark.slow
def test_cli_typo_stops_a_real_run(tmp_path):
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/train.json",
           "--run_dir", str(tmp_path), "--max_epoch", "2"]  # fmt: skip
    res = subprocess.run(cmd, cwd=BUNDLES / "la_meep", capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    last = [line for line in res.stderr.splitlines() if line.strip()][-1]
    assert res.returncode != 0 and "unknown bundle setting 'max_epoch'" in last, last
    assert not (tmp_path / "models").exists()
