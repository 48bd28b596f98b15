"""Every bundle config parses, names resolvable targets and the metadata validates against the bundle schema."""

from __future__ import annotations

import json
import pydoc

import pytest
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata
from monai.bundle.config_item import ComponentLocator

from monai_meep.experiments.bundle_runner import WORKFLOWS, config_files

from .conftest import BUNDLES

FILES = [
    "configs/metadata.json",
    "configs/train.json",
    "configs/evaluate.json",
    "configs/calibrate.json",
    "configs/inference.json",
    "configs/multi_gpu_train.json",
    "configs/multi_gpu_evaluate.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
]
TASKS = ("wmh", "la")
LOCATOR = ComponentLocator()


def _targets(obj):
    if isinstance(obj, dict):
        if isinstance(obj.get("_target_"), str):
            yield obj["_target_"]
        for v in obj.values():
            yield from _targets(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _targets(v)


@pytest.mark.parametrize("task", TASKS)
def test_bundle_layout(task):
    root = BUNDLES / f"{task}_meep"
    missing = [f for f in FILES if not (root / f).is_file()]
    assert not missing, f"{root} lacks {missing}"
    for f in root.glob("configs/*.json"):
        json.loads(f.read_text())  # valid JSON


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_layered_configs_parse_and_targets_resolve(task, workflow):
    parser = ConfigParser()
    parser.read_config(config_files(task, workflow))
    cfg = parser.get()
    assert "$import monai_meep" in cfg["imports"]
    # inference.json runs on its own (model-zoo); the others are layered on train.json
    standalone = ("bundle_root", "device", "network_def", "inferer", "evaluator", "run", "initialize")
    for key in standalone if workflow == "inference" else (*standalone[:2], "dataset_dir", "train", "validate"):
        assert key in cfg, key
    for target in set(_targets(cfg)):
        if target.startswith("monai_meep"):
            # our classes must be named with full dotted paths (short names resolve to MONAI's silently)
            assert pydoc.locate(target) is not None, f"{task}/{workflow}: cannot import {target}"
        elif "." not in target:
            # MONAI short names: exactly one MONAI component of that name
            assert LOCATOR.get_component_module_name(target), f"{task}/{workflow}: unknown MONAI name {target}"
        else:
            assert pydoc.locate(target) is not None, f"{task}/{workflow}: cannot import {target}"
    # every ID referenced with @ exists once layered
    parser.parse()
    for ref in ("evaluator",) if workflow == "inference" else ("train#trainer", "train#dataset", "validate#evaluator"):
        assert ref in parser, ref


@pytest.mark.parametrize("task", TASKS)
def test_metadata_validates_against_schema(task, shared_dir):
    schema = shared_dir / "data" / "meta_schema_20240725.json"
    if not schema.is_file():
        pytest.skip(f"{schema} not available")
    meta = BUNDLES / f"{task}_meep" / "configs" / "metadata.json"
    verify_metadata(meta_file=str(meta), filepath=str(schema))  # raises on a schema violation
    data = json.loads(meta.read_text())
    assert "monai-meep" in data["required_packages_version"]
    assert data["network_data_format"]["outputs"]["pred"]["num_channels"] == 2


@pytest.mark.parametrize("task", TASKS)
def test_train_check_properties_empty(task, tiny, tmp_path):
    wf = ConfigWorkflow(
        config_file=config_files(task, "train"),
        workflow_type="train",
        bundle_root=str(BUNDLES / f"{task}_meep"),
        run_dir=str(tmp_path),
        **tiny[task],
    )
    wf.initialize()
    assert wf.check_properties() == []
    assert wf.max_epochs == 1 and len(wf.train_dataset) > 0


@pytest.mark.slow
def test_verify_metadata_command_line(shared_dir):
    """The documented command itself (python -m monai.bundle verify_metadata), for one bundle."""
    import subprocess
    import sys

    schema = shared_dir / "data" / "meta_schema_20240725.json"
    if not schema.is_file():
        pytest.skip(f"{schema} not available")
    meta = BUNDLES / "la_meep" / "configs" / "metadata.json"
    cmd = [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(meta), "--filepath", str(schema)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "verified with no error" in res.stdout + res.stderr, res.stdout + res.stderr
