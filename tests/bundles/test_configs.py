"""Every bundle config parses, names resolvable targets and the metadata validates against the bundle schema."""

from __future__ import annotations

import json
import pydoc

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata
from monai.bundle.config_item import ComponentLocator
from monai.data import MetaTensor

from monai_meep.apps.bundle.runner import WORKFLOWS, config_files

from .conftest import BUNDLES, error_chain

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


def _parser(task, **overrides):
    parser = ConfigParser()
    parser.read_config(config_files(task, "train"))
    parser.update({"bundle_root": str(BUNDLES / f"{task}_meep"), **overrides})
    return parser


@pytest.mark.parametrize("task", TASKS)
def test_loss_is_the_json_component_graph(task):
    """The loss is MEEPLoss wrapping the MONAI loss spelled out in JSON: edited arguments reach it."""
    from monai.losses import DiceLoss, FocalLoss

    from monai_meep.apps.loss_factory import build_loss
    from monai_meep.losses import ConfidencePenaltyLoss, MEEPLoss

    loss = _parser(task, regularizer="meep_kl").get_parsed_content("loss")
    ref = build_loss("dice", "meep_kl", task=task, ignore_index=2 if task == "wmh" else None)
    assert isinstance(loss, MEEPLoss) and isinstance(loss.loss, DiceLoss) and loss.regularizer == "meep_kl"
    assert loss.weight == ref.weight and loss.ignore_index == ref.ignore_index
    x, y = torch.randn(2, 2, 6, 6, 6), torch.randint(0, 2, (2, 1, 6, 6, 6))
    torch.testing.assert_close(loss(x, y), ref(x, y))  # the JSON graph is the factory's loss

    edited = _parser(
        task,
        regularizer="meep_kl",
        meep_lambda=0.25,
        **{"base_losses#dice#smooth_nr": 0.5, "base_losses#dice#batch": False},
    )
    loss = edited.get_parsed_content("loss")
    assert loss.weight == 0.25 and loss.loss.smooth_nr == 0.5 and loss.loss.batch is False
    focal = _parser(task, base_loss="focal", regularizer="confidence_penalty").get_parsed_content("loss")
    assert isinstance(focal, ConfidencePenaltyLoss) and isinstance(focal.loss, FocalLoss) and focal.weight == 0.2
    assert isinstance(_parser(task).get_parsed_content("loss"), DiceLoss)
    with pytest.raises(Exception) as info:
        _parser(task, regularizer="meep").get_parsed_content("loss")
    assert "valid names are none, meep_entropy, meep_kl, confidence_penalty" in error_chain(info.value)


@pytest.mark.parametrize("task", TASKS)
def test_dropout_reaches_the_network_and_the_run_settings(task):
    """--dropout builds the MC-dropout variant of the same network (same state_dict keys), recorded in run_settings."""
    from monai_meep.inferers import dropout_layers

    small = {"channels": [4, 8], "strides": [2]}
    plain = _parser(task, **small).get_parsed_content("network_def")
    parser = _parser(task, dropout=0.1, **small)
    net = parser.get_parsed_content("network_def")
    assert plain.dropout == 0.0 and net.dropout == 0.1
    assert dropout_layers(net) and all(m.p == 0.1 for m in dropout_layers(net))
    assert net.state_dict().keys() == plain.state_dict().keys()  # a model.pt of either loads into the other
    assert parser.get_parsed_content("run_settings")["network"]["dropout"] == 0.1
    inference = ConfigParser()
    inference.read_config(config_files(task, "inference"))
    inference.update({"bundle_root": str(BUNDLES / f"{task}_meep"), "dropout": 0.2, **small})
    assert inference.get_parsed_content("network_def").dropout == 0.2


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_tensor() if isinstance(t, MetaTensor) else t


def test_json_transforms_match_the_python_pipelines(tmp_path):
    """train.json spells out la_transforms / wmh_transforms: same output on the same item and random state."""
    from monai_meep.apps.data import la_transforms, prepare_dataset, wmh_transforms

    for task, sizes in (("la", {"scale": 0.2, "num_subjects": 8}), ("wmh", {"scale": 0.25, "num_subjects": 6})):
        parser = _parser(task, **sizes)
        patch = parser.get_parsed_content("patch_size")
        item = prepare_dataset(task, num_subjects=sizes["num_subjects"], scale=sizes["scale"])["training"][0]
        if task == "la":
            ref = {"train": la_transforms("train", crop_size=patch), "validate": la_transforms("infer")}
        else:
            train = wmh_transforms("train", patch_size=patch, num_samples=16)
            ref = {"train": train, "validate": wmh_transforms("eval")}
        for section, python in ref.items():
            json_pipeline = parser.get_parsed_content(f"{section}#preprocessing")
            json_pipeline.set_random_state(7)
            python.set_random_state(7)
            a, b = json_pipeline(dict(item)), python(dict(item))
            a, b = (a if isinstance(a, list) else [a]), (b if isinstance(b, list) else [b])
            assert len(a) == len(b)
            for x, y in zip(a, b, strict=True):
                # validation: the whole volume (LA: zero-padded to the crop size where smaller)
                common = tuple(slice(0, min(p, q)) for p, q in zip(x["image"].shape, y["image"].shape, strict=True))
                if section == "train":
                    # training batches are plain tensors: no training step reads the meta, and carrying it costs
                    assert type(x["image"]) is type(y["image"]) is torch.Tensor
                    assert set(x) == set(y) and "label_cls_indices" not in x
                    assert x["image"].shape == y["image"].shape
                    torch.testing.assert_close(x["label"], y["label"])
                else:
                    assert isinstance(x["image"], MetaTensor) and isinstance(y["image"], MetaTensor)
                torch.testing.assert_close(_plain(x["image"])[common], _plain(y["image"])[common])


@pytest.mark.parametrize("task", TASKS)
def test_evaluation_names_metrics_after_its_split_and_states_the_region(task):
    """evaluate.json scores the test split as test_* (train.json's validation stays val_*) and hands the region
    its metrics cover (LA: the heart-centred crop, WMH: the whole volume) to the CSV writers."""
    from monai_meep.apps.data import roi_size_for_scale

    def parser(workflow, **overrides):
        p = ConfigParser()
        p.read_config(config_files(task, workflow))
        p.update({"bundle_root": str(BUNDLES / f"{task}_meep"), "scale": 0.3, **overrides})
        return p

    def names(p):
        keys = ("key_val_metric", "additional_metrics")
        return {k: sorted(p.get_parsed_content(f"validate#evaluator#{k}")) for k in keys}

    metrics = ["brier", "brier_plus", "ece", "hd95_mm", "hd_mm"]
    train = names(parser("train"))
    assert train == {"key_val_metric": ["val_mean_dice"], "additional_metrics": [f"val_{m}" for m in metrics]}
    test = names(parser("evaluate"))
    assert test == {"key_val_metric": ["test_mean_dice"], "additional_metrics": [f"test_{m}" for m in metrics]}
    val = names(parser("evaluate", eval_split="validation"))
    assert val == train
    region = parser("evaluate").get_parsed_content("metric_region")
    if task == "la":
        assert region == "heart-centred crop " + "x".join(map(str, roi_size_for_scale("la", 0.3))) + " voxels"
    else:
        assert region == "whole volume"
    handlers = parser("evaluate").get("validate#handlers")
    savers = [h for h in handlers if h.get("_target_", "").endswith(("PreciseMetricsSaver", "ReliabilityDiagramSaver"))]
    assert len(savers) == 2 and all(h["region"] == "@metric_region" for h in savers)


class _FakeWriter:
    def __init__(self):
        self.figures = []

    def add_figure(self, tag, figure, global_step=None, close=True):
        self.figures.append((tag, global_step))


@pytest.mark.parametrize("task", TASKS)
def test_evaluation_reliability_saver_is_handed_its_writer(task, tmp_path):
    """evaluate.json passes ``reliability_writer`` (default null: no TensorBoard figures) to the saver explicitly."""
    from monai_meep.handlers import ReliabilityDiagramSaver

    def saver(**overrides):
        parser = ConfigParser()
        parser.read_config(config_files(task, "evaluate"))
        parser.update({"bundle_root": str(BUNDLES / f"{task}_meep"), "run_dir": str(tmp_path), **overrides})
        handlers = parser.get("validate#handlers")
        (index,) = [i for i, h in enumerate(handlers) if h.get("_target_", "").endswith("ReliabilityDiagramSaver")]
        out = parser.get_parsed_content(f"validate#handlers#{index}")
        assert isinstance(out, ReliabilityDiagramSaver)
        return out

    assert saver().summary_writer is None
    writer = _FakeWriter()
    assert saver(reliability_writer=writer).summary_writer is writer
