# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The paper's pre-processing pipelines as MONAI ``Compose`` objects over dict keys ``image`` / ``label``.

WMH: two channels ``[FLAIR, T1]``, each z-scored per volume; training draws ``num_samples`` patches whose centre is a
lesion (label 1) voxel with probability ``pos_prob`` (never centred on label 2, which stays in the label for the
``ignore_index`` downstream). LA: one z-scored channel; a random crop (training) or centre crop (evaluation) of
``crop_size`` around the heart (the UA-MT volumes are already cropped around the atrium), flips and 90 degree
in-plane rotations for training. For evaluation and inference, geometry stays in the ``MetaTensor`` meta (affine,
``pixdim`` in mm); training drops it (plain tensors) because no training step reads it and every operation on a
``MetaTensor`` pays for its meta bookkeeping (about a third of a CPU training step on the WMH patches).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data.utils import is_supported_format
from monai.transforms import (
    CenterSpatialCropd,
    ClassesToIndicesd,
    Compose,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    NormalizeIntensityd,
    RandCropByLabelClassesd,
    RandFlipd,
    RandRotate90d,
    RandSpatialCropd,
    SpatialPadd,
)
from monai.utils import ensure_tuple

from .la import LA_LABELS
from .readers import NIFTI_SUFFIXES, LAH5Reader, check_label_values, load_volume
from .wmh import WMH_LABELS

__all__ = [
    "wmh_transforms",
    "la_transforms",
    "roi_size_for_scale",
    "CheckLabelValuesd",
    "LoadVolumed",
    "WMH_PATCH_SIZE",
    "LA_CROP_SIZE",
]

WMH_PATCH_SIZE = (64, 64, 64)
LA_CROP_SIZE = (144, 144, 80)
_MODES = ("train", "eval", "infer")


def roi_size_for_scale(task: str, scale: float = 1.0, divisor: int = 16) -> tuple[int, int, int]:
    """Patch (WMH) or crop (LA) size matching a phantom ``scale``: the paper's size times ``scale``, rounded to a
    multiple of ``divisor`` (a UNet with four stride-2 levels needs 16), at least ``divisor``.

    The phantom keeps its field of view and coarsens the voxels by ``1 / scale``, so this ROI covers the same
    millimetres as the paper's ROI on full-resolution data.

    Example:
        >>> roi_size_for_scale("la", 0.3)
        (48, 48, 32)
    """
    if task not in ("wmh", "la"):
        raise ValueError(f"Unknown task {task!r}; expected 'wmh' or 'la'.")
    if not scale > 0 or divisor < 1:
        raise ValueError(f"scale must be > 0 and divisor >= 1, got scale={scale}, divisor={divisor}.")
    base = WMH_PATCH_SIZE if task == "wmh" else LA_CROP_SIZE
    return tuple(max(divisor, int(round(s * scale / divisor)) * divisor) for s in base)  # type: ignore[return-value]


def _source(value, key: Hashable) -> str:
    """The file a loaded ``MetaTensor`` came from, else the dict key (for messages)."""
    meta = getattr(value, "meta", None) or {}
    name = meta.get("filename_or_obj")
    return f"{name} (key '{key}')" if name else f"key '{key}'"


class CheckLabelValuesd(MapTransform):
    """Refuse a label whose values are not the task's label set; one ``unique`` per volume, right after loading.

    Without it a float label {0, 0.5} trains silently (0.5 read as background by Dice / CE) and a stray 7 fails
    later inside a loss with "index 7 is out of bounds", naming no file.

    Args:
        keys: the label key(s).
        allowed_values: the task's label values (LA ``(0, 1)``, WMH ``(0, 1, 2)``).
        allow_missing_keys: do not raise when a key is absent.

    Raises:
        ValueError: (when called) a value outside ``allowed_values``, naming the file and the values.

    Example:
        >>> import torch
        >>> CheckLabelValuesd("label", (0, 1))({"label": torch.tensor([[0.0, 1.0]])})["label"].tolist()
        [[0.0, 1.0]]
    """

    def __init__(self, keys: KeysCollection, allowed_values: Sequence[int], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.allowed_values = tuple(int(v) for v in allowed_values)
        if not self.allowed_values:
            raise ValueError("allowed_values must name at least one label value, got an empty sequence.")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            check_label_values(d[key], self.allowed_values, _source(d[key], key))
        return d


class LoadVolumed(LoadImaged):
    """``LoadImaged`` whose errors name the file that failed.

    A truncated ``T1.nii.gz`` passes the header check and fails inside nibabel with a bare ``EOFError``; MONAI then
    reports "applying transform LoadImaged", naming no file. On failure this finds the culprit (one of the key's
    files) and raises ``ValueError`` naming it; readers whose errors already name the file (``LAH5Reader``) pass
    through unchanged. Same arguments as ``LoadImaged``.
    """

    def __call__(self, data, reader=None):
        try:
            return super().__call__(data, reader)
        except Exception as e:
            names = [str(n) for key in self.key_iterator(dict(data)) for n in ensure_tuple(data[key])]
            if any(n in str(e) for n in names):
                raise
            for name in names:
                if is_supported_format(name, NIFTI_SUFFIXES):
                    load_volume(name)  # raises a ValueError naming the file if this one is the bad one
            raise ValueError(f"Cannot load {', '.join(names)} ({type(e).__name__}: {e}).") from e


def _check(mode: str, size: Sequence[int], name: str) -> tuple[int, ...]:
    if mode not in _MODES:
        raise ValueError(f"Unknown mode {mode!r}; expected one of {_MODES}.")
    size = tuple(int(s) for s in size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"{name} must be three positive ints, got {size}.")
    return size


def wmh_transforms(
    mode: str = "train", patch_size: Sequence[int] = WMH_PATCH_SIZE, num_samples: int = 4, pos_prob: float = 0.9
) -> Compose:
    """WMH pipeline: load ``[FLAIR, T1]`` as two channels, z-score each per volume; patches for training.

    Args:
        mode: ``"train"`` (random patches), ``"eval"`` (whole volumes, with label), ``"infer"`` (image only).
        patch_size: training patch size (voxels); volumes smaller than it are zero-padded (0 = the mean after z-score).
        num_samples: patches drawn per volume per epoch.
        pos_prob: probability that a patch is centred on a lesion (label 1) voxel; otherwise on background.

    Returns:
        A ``Compose`` producing ``image`` float32 ``(2, *spatial)`` and ``label`` float32 ``(1, *spatial)`` in
        {0, 1, 2}; a label with any other value raises ``ValueError`` naming the file at load time.

    Example:
        >>> t = wmh_transforms("eval")
        >>> # d = t({"image": [flair_path, t1_path], "label": wmh_path})
    """
    patch = _check(mode, patch_size, "patch_size")
    if not 0.0 <= pos_prob <= 1.0 or int(num_samples) < 1:
        raise ValueError(f"pos_prob must be in [0, 1] and num_samples >= 1, got {pos_prob}, {num_samples}.")
    keys = ["image"] if mode == "infer" else ["image", "label"]
    xs = [LoadVolumed(keys=keys, image_only=True)]
    if mode != "infer":
        xs.append(CheckLabelValuesd("label", WMH_LABELS))
    xs += [
        EnsureChannelFirstd(keys=keys),
        NormalizeIntensityd(keys="image", channel_wise=True),
        EnsureTyped(keys=keys, dtype=torch.float32, track_meta=mode != "train"),
    ]
    if mode == "train":
        xs += [
            SpatialPadd(keys=keys, spatial_size=patch),
            # the voxel indices of each class, found once (cached by a CacheDataset) instead of on every draw
            ClassesToIndicesd(keys="label", num_classes=3, indices_postfix="_cls_indices"),
            # ratios per class 0 / 1 / 2: never centre a patch on "other pathology".
            RandCropByLabelClassesd(
                keys=keys,
                label_key="label",
                spatial_size=patch,
                num_classes=3,
                ratios=[1.0 - pos_prob, pos_prob, 0.0],
                num_samples=int(num_samples),
                warn=False,
                indices_key="label_cls_indices",
            ),
            DeleteItemsd(keys="label_cls_indices"),
            RandFlipd(keys=keys, prob=0.5, spatial_axis=0),  # left-right
            EnsureTyped(keys=keys, track_meta=False),
        ]
    return Compose(xs)


def la_transforms(mode: str = "train", crop_size: Sequence[int] = LA_CROP_SIZE) -> Compose:
    """LA pipeline for UA-MT h5 (via ``LAH5Reader``) or Decathlon NIfTI files: z-score, crop, augment.

    Args:
        mode: ``"train"`` (random crop, flips, 90 degree in-plane rotations), ``"eval"`` (centre crop, with label),
            ``"infer"`` (image only, whole volume for sliding-window inference).
        crop_size: crop size in voxels (zero-padded first where the volume is smaller).

    Returns:
        A ``Compose`` producing ``image`` float32 ``(1, *crop_size)`` and ``label`` float32 ``(1, *crop_size)``
        in {0, 1}; a label with any other value raises ``ValueError`` naming the file at load time.

    Example:
        >>> t = la_transforms("eval", crop_size=(48, 48, 32))
    """
    crop = _check(mode, crop_size, "crop_size")
    keys = ["image"] if mode == "infer" else ["image", "label"]
    # h5: image and label are two datasets of the same file, so each key gets its own reader; NIfTI falls through
    # to MONAI's default readers.
    xs = [LoadVolumed(keys="image", reader=LAH5Reader("image"), image_only=True)]
    if mode != "infer":
        xs += [
            LoadVolumed(keys="label", reader=LAH5Reader("label"), image_only=True),
            CheckLabelValuesd("label", LA_LABELS),
        ]
    xs += [
        EnsureChannelFirstd(keys=keys),
        NormalizeIntensityd(keys="image"),
        EnsureTyped(keys=keys, dtype=torch.float32, track_meta=mode != "train"),
    ]
    if mode == "train":
        xs += [
            SpatialPadd(keys=keys, spatial_size=crop),
            RandSpatialCropd(keys=keys, roi_size=crop, random_size=False),
            RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
            RandRotate90d(keys=keys, prob=0.5, max_k=3, spatial_axes=(0, 1)),
            EnsureTyped(keys=keys, track_meta=False),
        ]
    elif mode == "eval":
        xs += [SpatialPadd(keys=keys, spatial_size=crop), CenterSpatialCropd(keys=keys, roi_size=crop)]
    return Compose(xs)
