# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Helpers the bundle configs call: data set resolution, devices / DDP, resume and input checks.

Bundle configs stay declarative; anything with a branch or a clear error message lives here, once for both
bundles (``"$import monai_meep.experiments.bundle_support as bs"`` in the configs). Every check runs while the
config is parsed, i.e. before any training starts.
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "as_bool",
    "attach_handlers",
    "calibration_methods",
    "calibrator_file",
    "calibrator_path",
    "check_checkpoint",
    "check_choice",
    "ddp_backend",
    "distributed_sampler",
    "find_last_checkpoint",
    "inference_datalist",
    "init_distributed",
    "local_device",
    "map_name_formatter",
    "num_res_units",
    "resolve_dataset",
    "subject_name",
    "subject_rows",
    "world_info",
]

BACKBONES = {"unet": 0, "resunet": 2}


def check_choice(name: str, value: Any, valid: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``valid`` (case-insensitive), else raise a ``ValueError`` listing them."""
    if not isinstance(value, str) or value.lower() not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid values are {', '.join(valid)}.")
    return value.lower()


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def as_bool(value: Any, name: str = "value") -> bool:
    """A bundle flag as a bool, read the way a user means it on the command line.

    ``python -m monai.bundle run ... --progress false`` passes the *string* ``'false'``, which Python reads as true;
    here ``"false"`` / ``"no"`` / ``"off"`` / ``"0"`` are False and ``"true"`` / ``"yes"`` / ``"on"`` / ``"1"`` True
    (any case), as are bools and the ints 0 / 1.

    Raises:
        ValueError: any other value, naming ``name``.

    Example:
        >>> as_bool("false", "progress"), as_bool(True)
        (False, True)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be a boolean (true / false), got {value!r}.")


def num_res_units(backbone: str) -> int:
    """Residual units per block of MONAI ``UNet``: 0 for ``"unet"``, 2 for ``"resunet"`` (the paper's ResUNet)."""
    return BACKBONES[check_choice("backbone", backbone, tuple(BACKBONES))]


def resolve_dataset(
    task: str,
    dataset_dir: str | None = "",
    cache_dir: str | None = "",
    num_subjects: int | None = None,
    scale: float = 1.0,
    seed: int = 0,
    split: str = "paper",
    held_out_site: str | None = None,
) -> dict[str, list[dict]]:
    """Training / validation / test datalists for ``task``, from ``dataset_dir`` or from the generated phantom.

    An empty or absent ``dataset_dir`` means the phantom: ``monai_meep.data.prepare_dataset`` generates it once
    (under ``cache_dir``, or a folder keyed by task, size, scale and seed under ``$MONAI_MEEP_CACHE`` /
    ``~/.cache/monai_meep``) and reuses it. A given ``dataset_dir`` must exist and hold one of the real layouts
    (WMH challenge; LA UA-MT h5 or MSD Task02_Heart), which ``prepare_dataset`` detects and checks file by file.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, items ``{"image", "label", "subject", ...}``.

    Raises:
        ValueError: unknown task, a ``dataset_dir`` that does not exist / holds no known layout / lacks files, or an
            empty split.
    """
    from monai_meep.data import prepare_dataset

    task = check_choice("task", task, ("wmh", "la"))
    if dataset_dir:
        path = Path(os.path.expanduser(str(dataset_dir)))
        # prepare_dataset falls back to the phantom for a missing folder; a user who named a folder wants that one
        if not path.is_dir():
            raise ValueError(
                f"dataset_dir {str(dataset_dir)!r} does not exist or is not a folder; pass a folder in the "
                f"{task.upper()} layout (see docs/bundles.md) or dataset_dir='' to use the built-in phantom."
            )
        if not any(path.iterdir()):
            raise ValueError(f"dataset_dir {str(dataset_dir)!r} is empty; use dataset_dir='' for the phantom.")
    try:
        splits = prepare_dataset(
            task,
            dataset_dir=str(Path(os.path.expanduser(str(dataset_dir)))) if dataset_dir else None,
            cache_dir=cache_dir or None,
            num_subjects=num_subjects,
            scale=float(scale),
            seed=int(seed),
            split=split,
            held_out_site=held_out_site,
        )
    except FileNotFoundError as e:  # a layout with missing files: same error type as other bad input
        raise ValueError(f"the {task.upper()} data set at {dataset_dir!r} is incomplete: {e}") from e
    for name in ("training", "validation", "test"):
        if not splits.get(name):
            raise ValueError(
                f"the {task.upper()} data set ({dataset_dir or 'phantom'}) has an empty {name!r} split; "
                "it needs at least one subject in each of training / validation / test."
            )
    return splits


# ---------------------------------------------------------------------------------------------------- devices / DDP


def world_info() -> tuple[int, int]:
    """``(rank, world_size)`` from the torchrun environment (``(0, 1)`` outside it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def ddp_backend() -> str:
    """``"nccl"`` with CUDA, else ``"gloo"`` (so the multi-GPU configs run as CPU processes in the tests)."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def local_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` when CUDA is available (and selected as the current device), else CPU."""
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        return torch.device(f"cuda:{local_rank}")
    return torch.device("cpu")


def init_distributed() -> bool:
    """Initialise the default process group from the torchrun environment once; ``True`` if distributed."""
    if not dist.is_available() or int(os.environ.get("WORLD_SIZE", 1)) < 2:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend=ddp_backend())
    return True


def distributed_sampler(dataset: Any, shuffle: bool = False, seed: int = 0, even_divisible: bool = False) -> Any:
    """MONAI ``DistributedSampler`` for the torchrun world (``None`` outside it).

    Training passes ``even_divisible=True``: every rank must run the same number of iterations (DDP all-reduces
    each step), so the shorter shares are padded by repetition. Evaluation keeps ``even_divisible=False`` so each
    subject is scored once and the gathered per-subject tables equal the single-process ones; MONAI raises when a
    data set is smaller than the world size, so there the sampler pads instead and warns that subjects repeat.
    """
    from monai.data import DistributedSampler

    if not dist.is_available() or not dist.is_initialized():
        return None
    world = dist.get_world_size()
    if not even_divisible and len(dataset) < world:
        warnings.warn(
            f"{len(dataset)} items for {world} processes: padding by repetition, so some subjects are counted twice "
            "in the metrics; use at least as many subjects as processes for exact results.",
            stacklevel=2,
        )
        even_divisible = True
    return DistributedSampler(dataset=dataset, even_divisible=even_divisible, shuffle=shuffle, seed=seed)


# ------------------------------------------------------------------------------------------------- checkpoints


_EPOCH_RE = re.compile(r"epoch=(\d+)\.pt$")


def find_last_checkpoint(ckpt_dir: str, resume: bool = True, prefix: str = "last") -> str | None:
    """The newest ``<prefix>_checkpoint_epoch=<N>.pt`` in ``ckpt_dir`` (highest ``N``), or ``None``.

    The training config saves one such file every epoch (Ignite's ``DiskSaver`` writes it atomically and removes
    the previous one), so a rerun after an interruption resumes from the last finished epoch.
    """
    if not resume or not ckpt_dir or not os.path.isdir(ckpt_dir):
        return None
    found = []
    for p in glob.glob(os.path.join(glob.escape(ckpt_dir), f"{prefix}_*epoch=*.pt")):
        m = _EPOCH_RE.search(p)
        if m:
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    return network.module if hasattr(network, "module") and isinstance(network.module, torch.nn.Module) else network


def check_checkpoint(
    path: str | None, network: torch.nn.Module, required: bool = False, key: str = "model"
) -> str | None:
    """Check that the checkpoint at ``path`` fits ``network`` (same parameter names and shapes); return ``path``.

    Called while the config is parsed, so a checkpoint from another network (other backbone / channels / task)
    fails with a message naming the mismatch before any training or evaluation starts. Non-tensor entries are
    ignored: ``model.pt`` also holds the best-metric tracker (``"checkpointer"``), which is why the evaluation
    configs load it with ``CheckpointLoader(strict=False)`` after this exact check of names and shapes.

    Args:
        path: checkpoint file; ``None`` or ``""`` is accepted when not ``required``.
        network: the configured network (DDP-wrapped or not).
        required: raise if ``path`` is missing.
        key: the entry holding the model weights when the file stores several objects.

    Raises:
        ValueError: missing file (when required), unreadable file, or parameter names / shapes that differ.
    """
    if not path:
        if required:
            raise ValueError("no checkpoint given; train first (configs/train.json) or set ckpt_path.")
        return None
    if not os.path.isfile(path):
        if required:
            raise ValueError(f"checkpoint {path!r} not found; train first (configs/train.json) or set ckpt_path.")
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # torch's own message suggests retrying with weights_only=False, i.e. unpickling (running) whatever the file
        # holds: wrong advice for a corrupt or foreign file, so it is not repeated here
        first = str(e).splitlines()[0] if str(e) else ""
        why = f"{type(e).__name__}" + ("" if "weights_only" in str(e) or not first else f": {first}")
        raise ValueError(
            f"checkpoint {path!r} cannot be read as a weights-only PyTorch checkpoint ({why}); it is corrupt, "
            f"truncated or not a state dict saved by this package. Retrain, or point ckpt_path to a good file."
        ) from e
    state = obj.get(key, obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path!r} holds no state dict under {key!r}.")
    expected = {k: tuple(v.shape) for k, v in _unwrap(network).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items() if torch.is_tensor(v)}
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            detail.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]}: {got[wrong[0]]} vs {expected[wrong[0]]})")
        raise ValueError(
            f"checkpoint {path!r} was saved from a different network than the one configured "
            f"({'; '.join(detail)}). Use the same backbone / channels / task overrides as in training, "
            f"or point ckpt_dir to a fresh folder."
        )
    return str(Path(path))


def attach_handlers(handlers: Sequence[Any] | None, engine: Any) -> Any:
    """Attach ``handlers`` to ``engine`` after it exists; return the engine.

    The resume ``CheckpointLoader`` and the per-epoch ``CheckpointSaver`` store the trainer itself, so they cannot be
    in the trainer's own ``train_handlers`` list (a circular reference in the config); ``run`` attaches them here.
    """
    for h in handlers or ():
        if h is not None:
            h.attach(engine)
    return engine


# ------------------------------------------------------------------------------------------------ evaluation outputs

CALIBRATORS = ("platt", "isotonic", "temperature")
# generic file names of the supported layouts: the subject is named by its folders instead
_GENERIC_STEMS = {"flair", "t1", "mri_norm2", "image", "imaging", "wmh", "label"}


def calibrator_file(ckpt_dir: str, method: str) -> str:
    """Where ``calibrate.json`` saves the ``method`` calibrator: ``<ckpt_dir>/calibrator_<method>.json``."""
    return os.path.join(ckpt_dir, f"calibrator_{check_choice('calibrator', method, CALIBRATORS)}.json")


def calibrator_path(calibrator: str | None, ckpt_dir: str) -> str:
    """Resolve the ``calibrator`` override of ``evaluate.json`` / ``inference.json`` to a JSON file ("" for none).

    Args:
        calibrator: ``""`` (none), a method name (``platt`` / ``isotonic`` / ``temperature``: the file that
            ``calibrate.json`` wrote next to the checkpoint) or the path of a calibrator JSON file.
        ckpt_dir: the checkpoint folder.

    Raises:
        ValueError: a name or path whose file does not exist (run ``calibrate.json`` first).
    """
    if not calibrator:
        return ""
    name = str(calibrator)
    path = calibrator_file(ckpt_dir, name) if name.lower() in CALIBRATORS else os.path.expanduser(name)
    if not os.path.isfile(path):
        raise ValueError(
            f"calibrator {name!r}: file {path!r} not found; fit it first with configs/calibrate.json "
            f"(calibration_method={name if name.lower() in CALIBRATORS else 'platt'}) or pass an existing JSON file."
        )
    return path


def subject_name(item: Any) -> str:
    """A readable subject name from a datalist item or image metadata (for CSV rows and output file names).

    Uses the item's ``"subject"`` (and ``"site"``) entries when present, else the file name, falling back to
    the folder names for the layouts' generic file names (``<site>/<id>/pre/FLAIR.nii.gz`` -> ``site_id``,
    ``<ID>/mri_norm2.h5`` -> ``ID``).
    """
    if isinstance(item, dict) and item.get("subject") not in (None, ""):
        site = item.get("site")
        return f"{site}_{item['subject']}" if site not in (None, "") else str(item["subject"])
    meta = item.get("image").meta if isinstance(item, dict) and hasattr(item.get("image"), "meta") else item
    fname = meta.get("filename_or_obj", "") if isinstance(meta, dict) else ""
    if isinstance(fname, (list, tuple)):
        fname = fname[0] if fname else ""
    p = Path(str(fname))
    stem = p.name.split(".")[0]
    if stem.lower() not in _GENERIC_STEMS:
        return stem or "image"
    parent = p.parent.parent if p.parent.name == "pre" else p.parent
    return f"{parent.parent.name}_{parent.name}" if p.parent.name == "pre" else parent.name


def subject_rows(batch: Sequence[dict]) -> list[dict]:
    """``MetricsSaver`` ``batch_transform``: one ``{"filename_or_obj": <subject name>}`` per decollated item."""
    return [{"filename_or_obj": subject_name(item)} for item in batch]


def map_name_formatter(metadict: dict, saver: Any) -> dict:
    """``SaveImaged`` ``output_name_formatter``: name output maps by subject rather than by the generic file name."""
    return {"subject": subject_name(metadict or {}), "idx": (metadict or {}).get("patch_index")}


def calibration_methods(method: str | Sequence[str]) -> list[str]:
    """The calibrators ``calibrate.json`` fits: ``"all"``, one name, or a list of ``platt`` / ``isotonic`` /
    ``temperature``; unknown names raise a ``ValueError`` listing the valid ones."""
    names = [method] if isinstance(method, str) else list(method)
    if names == ["all"]:
        return list(CALIBRATORS)
    return [check_choice("calibration_method", n, (*CALIBRATORS, "all")) for n in names]


def inference_datalist(task: str, input_dir: str | None, fallback: Sequence[dict] | None = None) -> list[dict]:
    """Images to segment with ``inference.json``: every subject found under ``input_dir`` (labels not needed).

    WMH: each ``.../pre/FLAIR.nii.gz`` with its ``T1.nii.gz`` (two channels). LA: every ``*.h5`` (UA-MT) or
    ``*.nii`` / ``*.nii.gz`` (e.g. Decathlon ``imagesTs``) file. With an empty ``input_dir`` the ``fallback`` items
    (the test split) are used, images only.

    Raises:
        ValueError: a missing folder, or no image found in it.
    """
    task = check_choice("task", task, ("wmh", "la"))
    if not input_dir:
        if not fallback:
            raise ValueError("inference.json needs input_dir=<folder of images> (or a data set with a test split).")
        return [{k: v for k, v in item.items() if k != "label"} for item in fallback]
    root = Path(os.path.expanduser(str(input_dir)))
    if not root.is_dir():
        raise ValueError(f"input_dir {str(input_dir)!r} does not exist or is not a folder.")
    items: list[dict] = []
    if task == "wmh":
        for flair in sorted(root.rglob("FLAIR.nii.gz")):
            t1 = flair.with_name("T1.nii.gz")
            if not t1.is_file():
                raise ValueError(f"{flair} has no T1.nii.gz beside it; WMH inference needs both FLAIR and T1.")
            items.append({"image": [str(flair), str(t1)], "subject": subject_name({"filename_or_obj": str(flair)})})
    else:
        files = sorted({*root.rglob("*.h5"), *root.rglob("*.nii.gz"), *root.rglob("*.nii")})
        items = [{"image": str(f), "subject": subject_name({"filename_or_obj": str(f)})} for f in files]
    if not items:
        expected = "<id>/pre/FLAIR.nii.gz + T1.nii.gz" if task == "wmh" else "*.h5 or *.nii.gz images"
        raise ValueError(f"no images found under {str(root)!r}; expected {expected}.")
    return items
