"""The runner never accepts bad input silently: racing settings checks, evaluated --set values, string flags
(issue 14)."""

from __future__ import annotations

import argparse
import threading
import time

import pytest

from monai_meep.apps.bundle.runner import add_set_argument, parse_set
from monai_meep.apps.bundle.support import as_bool
from monai_meep.apps.experiments import table1


def test_two_runners_with_different_settings_cannot_both_be_accepted(tmp_path, monkeypatch):
    real_read = table1.read_json

    def slow_read(path):  # widen the read-then-write window so an unlocked check loses every time
        value = real_read(path)
        time.sleep(0.3)
        return value

    monkeypatch.setattr(table1, "read_json", slow_read)
    results: dict[int, BaseException | None] = {}

    def run(epochs: int) -> None:
        try:
            table1._check_experiment(tmp_path, {"task": "la", "overrides": {"max_epochs": epochs}})
            results[epochs] = None
        except BaseException as e:
            results[epochs] = e

    threads = [threading.Thread(target=run, args=(n,)) for n in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [n for n, err in results.items() if err is None]
    refused = [err for err in results.values() if err is not None]
    assert len(accepted) == 1 and len(refused) == 1
    assert isinstance(refused[0], ValueError) and "another experiment" in str(refused[0])
    assert real_read(tmp_path / "experiment.json")["overrides"]["max_epochs"] == accepted[0]
    # the same settings again are accepted (a resume)
    table1._check_experiment(tmp_path, {"task": "la", "overrides": {"max_epochs": accepted[0]}})


@pytest.mark.parametrize(
    "item",
    [
        "network_def#channels=$[8, 16]",
        "lr=$__import__('os').system('x')",
        "x=@network",
        "y=%configs/other.json#z",
        'z=["a", "$1+1"]',
        'w={"k": " $x"}',
    ],
)
def test_set_values_monai_would_evaluate_are_refused(item):
    with pytest.raises(SystemExit, match="--allow-expressions"):
        parse_set([item])
    key = item.split("=", 1)[0]
    assert key in parse_set([item], allow_expressions=True)


def test_plain_set_values_pass():
    assert parse_set(["max_epochs=3", "name=run$1", "lr=1e-4", "tags=[1, 2]"]) == {
        "max_epochs": 3,
        "name": "run$1",
        "lr": 1e-4,
        "tags": [1, 2],
    }


def test_allow_expressions_flag_reaches_parse_set():
    p = argparse.ArgumentParser()
    add_set_argument(p)
    args = p.parse_args(["--set", "lr=$1e-4"])
    with pytest.raises(SystemExit):
        parse_set(args.set, args.allow_expressions)
    args = p.parse_args(["--set", "lr=$1e-4", "--allow-expressions"])
    assert parse_set(args.set, args.allow_expressions) == {"lr": "$1e-4"}


@pytest.mark.parametrize(
    "value, expected",
    [
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        (False, False),
        (0, False),
        ("true", True),
        ("1", True),
        (True, True),
    ],
)
def test_progress_flag_read_as_bool(value, expected):
    assert as_bool(value, "progress") is expected


@pytest.mark.parametrize("value", ["flase", 2, None, 0.5])
def test_progress_flag_garbage_refused(value):
    with pytest.raises(ValueError, match="progress must be a boolean"):
        as_bool(value, "progress")


def test_bundle_progress_false_from_the_command_line_disables_the_bar():
    """`monai.bundle run ... --progress false` passes the string 'false'; every config reads it through as_bool."""
    import re

    from monai.bundle import ConfigParser

    import monai_meep.apps.bundle.support as bs
    from monai_meep.apps.bundle.runner import bundle_dir

    uses = []
    for task in ("la", "wmh"):
        for path in sorted((bundle_dir(task) / "configs").glob("*.json")):
            text = path.read_text()
            uses += re.findall(r"[^\s\"(]*\(?@progress\b", text)
    assert uses and all(u.startswith("bs.as_bool(") for u in uses), uses
    parser = ConfigParser({"progress": "false", "off": "$not bs.as_bool(@progress, 'progress')"}, globals={"bs": bs})
    assert parser.get_parsed_content("off") is True


def test_garbage_checkpoint_does_not_suggest_unsafe_loading(tmp_path):
    import torch

    from monai_meep.apps.bundle.support import check_checkpoint

    path = tmp_path / "model.pt"
    torch.save(argparse.Namespace(a=1), path)  # a pickle weights_only refuses; torch then suggests weights_only=False
    with pytest.raises(ValueError, match="cannot be read") as info:
        check_checkpoint(str(path), torch.nn.Linear(2, 2))
    assert "weights_only" not in str(info.value) and "trust" not in str(info.value) and str(path) in str(info.value)
