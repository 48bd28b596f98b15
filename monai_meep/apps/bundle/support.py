# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Helpers the bundle configs call: data set resolution, devices / DDP, resume and input checks.

Bundle configs stay declarative; anything with a branch or a clear error message lives here, once for both
bundles (``"$import monai_meep.apps.bundle.support as bs"`` in the configs). Every check runs while the
config is parsed, i.e. before any training starts.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from monai_meep.handlers.checkpoint import find_checkpoints
from monai_meep.utils import atomic_open

__all__ = [
    "as_bool",
    "attach_handlers",
    "calibration_methods",
    "calibrator_file",
    "calibrator_path",
    "check_checkpoint",
    "check_choice",
    "read_checkpoint",
    "describe",
    "ddp_backend",
    "distributed_sampler",
    "find_last_checkpoint",
    "inference_datalist",
    "init_distributed",
    "local_device",
    "loss_part",
    "map_name_formatter",
    "num_res_units",
    "prepare_run",
    "renamed_metrics",
    "resolve_dataset",
    "select",
    "settings_differences",
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


def select(name: str, options: dict[str, Any], key: Any) -> Any:
    """``options[key]`` for a top-level convenience (``base_loss``, ``regularizer``) that picks one of the
    components listed in the config; an unknown key raises a ``ValueError`` naming ``name`` and the valid keys.

    Example:
        >>> select("base_loss", {"dice": 1, "ce": 2}, "ce")
        2
    """
    if not isinstance(key, str) or key.lower() not in options:
        raise ValueError(f"unknown {name} {key!r}; valid names are {', '.join(options)}.")
    return options[key.lower()]


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

    An empty or absent ``dataset_dir`` means the phantom: ``monai_meep.apps.data.prepare_dataset`` generates it once
    (under ``cache_dir``, or a folder keyed by task, size, scale and seed under ``$MONAI_MEEP_CACHE`` /
    ``~/.cache/monai_meep``) and reuses it. A given ``dataset_dir`` must exist and hold one of the real layouts
    (WMH challenge; LA UA-MT h5 or MSD Task02_Heart), which ``prepare_dataset`` detects and checks file by file.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, items ``{"image", "label", "subject", ...}``.

    Raises:
        ValueError: unknown task, a ``dataset_dir`` that does not exist / holds no known layout / lacks files, or an
            empty split.
    """
    from monai_meep.apps.data import prepare_dataset

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
    else:
        from monai_meep.apps.data.datasets import default_phantom_dir

        where = Path(cache_dir) if cache_dir else default_phantom_dir(task, num_subjects, float(scale), int(seed))
        # generation takes minutes at the paper's size: say what happens and where, before it starts
        state = "reusing" if where.is_dir() and any(where.iterdir()) else "generating (once, may take minutes)"
        _log().info(f"{task.upper()} phantom (scale {scale}): {state} {where}")
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


def find_last_checkpoint(ckpt_dir: str, resume: bool = True, prefix: str = "last") -> str | None:
    """The newest ``<prefix>_checkpoint_epoch=<N>.pt`` in ``ckpt_dir`` (highest ``N``), or ``None``.

    The training config saves one such file every epoch (``SafeCheckpointSaver`` writes the new file, syncs it and
    only then removes the previous one), so a rerun after an interruption resumes from the last finished epoch.
    """
    if not resume:
        return None
    found = find_checkpoints(ckpt_dir, prefix)
    return found[-1][1] if found else None


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    return network.module if hasattr(network, "module") and isinstance(network.module, torch.nn.Module) else network


def check_checkpoint(
    path: str | None, network: torch.nn.Module, required: bool = False, key: str = "model"
) -> str | None:
    """Check that the checkpoint at ``path`` fits ``network`` (same parameter names and shapes); return ``path``.

    As :func:`read_checkpoint`, which also returns the weights; ``None`` when there is no file and none is required.
    """
    return None if read_checkpoint(path, network, required, key) is None else str(Path(path))


def read_checkpoint(
    path: str | None, network: torch.nn.Module, required: bool = False, key: str = "model"
) -> dict[str, torch.Tensor] | None:
    """The weights (tensor entries) of the checkpoint at ``path``, checked to fit ``network``; read once.

    Called while the config is parsed, so a checkpoint from another network (other backbone / channels / task)
    fails with a message naming the mismatch before any training or evaluation starts. ``model.pt`` is a plain
    network ``state_dict``; a file holding several objects (``last_checkpoint_epoch=N.pt``, or a ``model.pt`` of an
    earlier version with its ``"checkpointer"`` entry) is read under ``key``, and non-tensor entries are ignored.

    Args:
        path: checkpoint file; ``None`` or ``""`` is accepted when not ``required``.
        network: the configured network (DDP-wrapped or not).
        required: raise if ``path`` is missing.
        key: the entry holding the model weights when the file stores several objects.

    Returns:
        the state dict of tensors, or ``None`` when ``path`` is empty / missing and not ``required``.

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
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


# ------------------------------------------------------------------------------------------------- run settings

SETTINGS_FILE = "run_settings.json"
# files of a trained model in ckpt_dir, removed by resume=false (start over)
_RUN_FILES = ("model.pt", "best_metric.json", "calibrator_*.json", "last_*=*.pt", ".*.tmp")
# settings that may change between the runs of one model: training longer is a resume, not another model
_RESUMABLE = ("max_epochs",)


def _log() -> logging.Logger:
    """The bundle's logger; ``logging.config.fileConfig`` (the bundle's ``logging.conf``) disables loggers created
    before it runs, which would silence these messages whenever this module was imported first."""
    log = logging.getLogger("monai_meep.bundle")
    log.disabled = False
    return log


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data, or ``None`` when it has no stable JSON form (objects, large tensors)."""
    if torch.is_tensor(value):
        return value.tolist() if value.numel() <= 16 else None
    if isinstance(value, enum.Enum):  # MONAI's string enums (e.g. LossReduction)
        return _jsonable(value.value)
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def describe(obj: Any) -> dict[str, Any]:
    """A JSON description of a configured component: its dotted class and the constructor arguments it keeps.

    Used to record what defines a model (network, loss, optimiser, scheduler) in ``run_settings.json``, whichever
    way the config was edited (a top-level convenience such as ``regularizer`` or the component's own arguments).
    Wrapped modules (DDP) are unwrapped; nested losses (``MEEPLoss(loss=DiceLoss(...))``) are described in turn.

    Example:
        >>> describe(torch.nn.Linear(2, 3))["_target_"]
        'torch.nn.modules.linear.Linear'
    """
    import inspect

    if isinstance(obj, torch.nn.Module):
        obj = _unwrap(obj)
    cls = type(obj)
    out: dict[str, Any] = {"_target_": f"{cls.__module__}.{cls.__qualname__}"}
    if isinstance(obj, torch.optim.Optimizer):
        out.update({k: v for k, v in ((k, _jsonable(v)) for k, v in obj.defaults.items()) if v is not None})
        return out
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return out
    for name, p in params.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or not hasattr(obj, name):
            continue
        value = getattr(obj, name)
        if isinstance(value, torch.optim.Optimizer):
            continue  # the scheduler's optimiser is described on its own
        if isinstance(value, torch.nn.Module):
            out[name] = describe(value)
        elif (v := _jsonable(value)) is not None:
            out[name] = v
    return out


def _short(value: Any) -> str:
    if isinstance(value, dict) and "_target_" in value:
        return str(value["_target_"]).rsplit(".", 1)[-1]
    return repr(value)


def _differences(a: Any, b: Any, key: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict) and a.get("_target_") == b.get("_target_"):
        out: list[str] = []
        for k in list(a) + [k for k in b if k not in a]:
            if k not in _RESUMABLE or key:
                out += _differences(a.get(k, "(unset)"), b.get(k, "(unset)"), f"{key}.{k}" if key else k)
        return out
    return [] if a == b else [f"{key} {_short(a)} -> {_short(b)}"]


def settings_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"key old -> new"`` for each setting that differs, in the record's order, resumable ones (``max_epochs``)
    aside. Nested components are compared argument by argument (``loss.smooth_nr 1e-05 -> 0.5``); a component
    replaced by another class is one entry (``loss DiceLoss -> MEEPLoss``).

    Example:
        >>> settings_differences({"regularizer": "none", "seed": 0}, {"regularizer": "meep_kl", "seed": 0})
        ["regularizer 'none' -> 'meep_kl'"]
    """
    return _differences(_jsonable(recorded) or {}, _jsonable(current) or {}, "")


def prepare_run(ckpt_dir: str, settings: dict[str, Any], resume: bool = True) -> str | None:
    """Check that ``ckpt_dir`` belongs to the model ``settings`` describe; return the checkpoint to resume from.

    ``ckpt_dir/run_settings.json`` records what defines the model (data, seed, network, loss, optimiser,
    scheduler, sizes; see ``run_settings`` in ``train.json``), written atomically before the first epoch. A rerun
    with the same settings resumes from the newest ``last_checkpoint_epoch=N.pt`` (a larger ``max_epochs`` trains
    longer) or, when it already reached ``max_epochs``, says that the run is finished. ``resume=False`` starts over:
    the folder's model files (checkpoints, ``model.pt``, ``best_metric.json``, calibrators) are removed first.
    Only the global rank 0 writes or removes files.

    Args:
        ckpt_dir: the checkpoint folder (``models/`` of the run directory).
        settings: the current settings (JSON data).
        resume: continue the run found in ``ckpt_dir``.

    Returns:
        The checkpoint to resume from, or ``None`` (fresh start).

    Raises:
        ValueError: ``ckpt_dir`` holds a model trained with other settings (the differences and the two ways out,
            ``--run_dir`` or ``--resume false``, are named), or one trained for more epochs than ``max_epochs``.
    """
    rank0 = world_info()[0] == 0
    record_path = Path(ckpt_dir) / SETTINGS_FILE
    current = _jsonable(settings)
    if not resume:
        if rank0:
            for pattern in _RUN_FILES:
                for p in Path(ckpt_dir).glob(pattern):
                    p.unlink(missing_ok=True)
            record_path.unlink(missing_ok=True)
    last = find_last_checkpoint(ckpt_dir, resume=resume)
    trained = last is not None or (Path(ckpt_dir) / "model.pt").is_file()
    recorded = None
    if record_path.is_file():
        try:
            recorded = json.loads(record_path.read_text())
        except ValueError:
            recorded = None
    if trained and recorded is not None:
        diff = settings_differences(recorded, current)
        if diff:
            shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
            raise ValueError(
                f"{ckpt_dir} holds a model trained with other settings ({shown}). Train this model in another "
                "folder with --run_dir <new folder>, or discard the old model and start over with --resume false."
            )
    elif trained:
        _log().warning(
            f"{ckpt_dir} holds a model but no {SETTINGS_FILE} (an earlier version trained it): its settings cannot "
            "be checked; resuming it with the current ones, which are recorded from now on."
        )
    done = int(find_checkpoints(ckpt_dir)[-1][0]) if last is not None else 0
    max_epochs = int(current.get("max_epochs", 0) or 0) if isinstance(current, dict) else 0
    if last is not None and max_epochs and done > max_epochs:
        raise ValueError(
            f"{ckpt_dir} holds a model trained for {done} epochs, more than max_epochs={max_epochs}; pass "
            f"--max_epochs {done} or more, --run_dir <new folder>, or --resume false to start over."
        )
    if last is not None and done == max_epochs:
        _log().info(
            f"Training in {ckpt_dir} is finished ({done} of {max_epochs} epochs): nothing to do, model.pt is "
            "unchanged. Raise --max_epochs to train longer, or use --run_dir <new folder> / --resume false for a "
            "new model."
        )
    elif last is not None:
        _log().info(f"Resuming {ckpt_dir} from {os.path.basename(last)} ({done} of {max_epochs} epochs done).")
    if rank0 and (recorded is None or not trained or recorded != current):
        with atomic_open(record_path) as f:
            json.dump(current, f, indent=2)
    return last


def loss_part(loss: Any, name: str) -> Any:
    """``output_transform`` for an epoch average of one part of the last loss forward (``MEEPLoss.parts``:
    ``seg_loss``, ``regularizer``, ``error_fraction``); ``train.json`` logs them as ``train_<name>``.

    The config builds these transforms even for the metrics it disables (MONAI evaluates a disabled component's
    arguments), so a loss without parts is only an error when the metric is used.

    Raises:
        ValueError: (when called) ``loss`` kept no such part (e.g. a plain ``DiceLoss``, or ``error_fraction`` of the
            confidence penalty).
    """

    def _part(output: Any) -> torch.Tensor:
        parts = getattr(loss, "parts", None) or {}
        if name not in parts:
            raise ValueError(f"{type(loss).__name__} reports no {name!r} part; valid parts are {sorted(parts)}.")
        return parts[name]  # a detached 0-dim tensor: Average sums on the device, no sync per step

    return _part


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


def renamed_metrics(metrics: dict[str, Any] | None, prefix: str, old: str = "val_") -> dict[str, Any]:
    """``metrics`` (name -> Ignite metric handler) with the prefix ``old`` of each name replaced by ``prefix``.

    ``evaluate.json`` reuses the validation metrics of ``train.json`` (``val_mean_dice``, ``val_ece``, ...) under
    the names of the split it scores (``test_mean_dice``, ... for ``eval_split`` test). Names without ``old`` keep
    theirs.

    Raises:
        ValueError: two names that become one.
    """
    out: dict[str, Any] = {}
    for name, handler in (metrics or {}).items():
        new = prefix + name[len(old) :] if name.startswith(old) else name
        if new in out:
            raise ValueError(f"metric names {sorted(metrics)} give {new!r} twice with the prefix {prefix!r}.")
        out[new] = handler
    return out


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
    (e.g. a test split) are used, images only; ``inference.json`` passes none, so it needs an ``input_dir``.

    Raises:
        ValueError: a missing folder, or no image found in it.
    """
    task = check_choice("task", task, ("wmh", "la"))
    if not input_dir:
        if not fallback:
            raise ValueError(
                "inference.json needs --input_dir <folder of images>; to score the test split with its labels, run "
                "evaluate.json."
            )
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
