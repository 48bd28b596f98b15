# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Readers: a MONAI ``ImageReader`` for the UA-MT LA h5 volumes, and cheap header checks used by the datalists."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import ImageReader
from monai.data.utils import is_supported_format
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple, optional_import

h5py, _has_h5py = optional_import("h5py")

__all__ = [
    "LAH5Reader",
    "volume_header",
    "load_volume",
    "check_label_values",
    "resolve_inside",
    "parse_check",
    "H5_SUFFIXES",
    "NIFTI_SUFFIXES",
]

H5_SUFFIXES = ("h5", "hdf5")
NIFTI_SUFFIXES = ("nii", "nii.gz")
#: spacing of the 2018 Atrial Segmentation Challenge GE-MRIs, used when an h5 file does not record one.
DEFAULT_LA_SPACING = 0.625


class LAH5Reader(ImageReader):
    """Read one dataset (``image`` or ``label``) of an UA-MT ``<ID>/mri_norm2.h5`` file as a MONAI image.

    The UA-MT files hold no geometry; the 2018 challenge GE-MRIs are 0.625 mm isotropic, so the affine is
    ``diag(0.625, 0.625, 0.625, 1)`` unless a ``spacing`` attribute is present on the dataset, on the ``image``
    dataset or on the file (the phantoms write one, since a coarser ``scale`` means larger voxels). A list of files
    is stacked as channels.

    Args:
        dataset: name of the h5 dataset to read (``"image"`` or ``"label"``).
        spacing: fallback voxel spacing in mm when the file records none.
        dtype: dtype of the returned array (None keeps the stored one).

    Example:
        >>> from monai.transforms import LoadImaged
        >>> load = LoadImaged(keys="label", reader=LAH5Reader("label"))  # doctest: +SKIP
    """

    def __init__(self, dataset: str = "image", spacing: float | Sequence[float] = DEFAULT_LA_SPACING, dtype=np.float32):
        super().__init__()
        self.dataset = dataset
        self.spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,)).copy()
        self.dtype = dtype

    def verify_suffix(self, filename: Sequence[os.PathLike | str] | os.PathLike | str) -> bool:
        return is_supported_format(filename, H5_SUFFIXES)

    def read(self, data: Sequence[os.PathLike | str] | os.PathLike | str, **kwargs):
        """Return the file names; the voxels are read in ``get_data``.

        MONAI's ``LoadImage`` swallows an exception raised here and tries its other readers, which hides the real
        cause (a missing dataset, a corrupt file); ``get_data`` errors propagate, so the I/O happens there.
        """
        if not _has_h5py:
            raise ImportError("LAH5Reader needs h5py: pip install h5py.")
        if not self.verify_suffix(data):  # let LoadImage fall through to its NIfTI readers (Decathlon layout)
            raise ValueError(f"LAH5Reader reads .h5 / .hdf5 files, not {data}.")
        return [Path(name) for name in ensure_tuple(data)]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        """Read the dataset of every file; raises ``ValueError`` / ``FileNotFoundError`` naming the file."""
        items = [_read_h5(Path(p), self.dataset, self.spacing, read_data=True) for p in ensure_tuple(img)]
        arrays = [a if self.dtype is None else a.astype(self.dtype) for a, _ in items]
        spacing = items[0][1]
        affine = np.diag([*spacing, 1.0])
        meta = {
            MetaKeys.AFFINE: affine,
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(arrays[0].shape),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if len(arrays) == 1 else 0,
            "pixdim": np.asarray([1.0, *spacing, 1.0, 1.0, 1.0, 1.0]),
        }
        return (arrays[0] if len(arrays) == 1 else np.stack(arrays, 0)), meta


def _read_h5(path: Path, dataset: str, fallback_spacing: np.ndarray, read_data: bool):
    if not path.is_file():
        raise FileNotFoundError(f"Missing file {path}: expected an UA-MT h5 volume with datasets 'image' and 'label'.")
    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise ValueError(
                    f"{path} has no dataset '{dataset}' (found {sorted(f.keys())}); expected 'image' and 'label'."
                )
            ds = f[dataset]
            # The dataset's own spacing, else the image's (one grid per file), else the file's, else the default.
            spacing = next(
                (src.attrs["spacing"] for src in (ds, f.get("image", ds), f) if "spacing" in src.attrs),
                fallback_spacing,
            )
            spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,)).copy()
            if ds.ndim != 3:
                raise ValueError(f"{path}:{dataset} has shape {ds.shape}; expected a 3D volume.")
            value = ds[()] if read_data else tuple(ds.shape)
    except OSError as e:
        raise ValueError(f"Cannot read {path} as HDF5 ({e}); expected an UA-MT mri_norm2.h5 file.") from e
    return value, spacing


def volume_header(path: str | os.PathLike, dataset: str = "image") -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of a NIfTI or h5 volume without reading the voxels.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read as a volume of the expected format.
    """
    p = Path(path)
    if is_supported_format(str(p), H5_SUFFIXES):
        shape, spacing = _read_h5(p, dataset, np.full(3, DEFAULT_LA_SPACING), read_data=False)
        return shape, np.diag([*spacing, 1.0])
    if not p.is_file():
        raise FileNotFoundError(f"Missing file {p}: expected a NIfTI volume.")
    import nibabel as nib

    try:
        img = nib.load(str(p))
        return tuple(int(s) for s in img.shape), np.asarray(img.affine, dtype=np.float64)
    except Exception as e:  # nibabel raises several types for corrupt / foreign files
        raise ValueError(f"Cannot read {p} as a NIfTI volume ({type(e).__name__}: {e}).") from e


def load_volume(path: str | os.PathLike, dataset: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Voxels (float32) and affine of a NIfTI or h5 volume (for figures and checks; training uses MONAI loaders)."""
    p = Path(path)
    if is_supported_format(str(p), H5_SUFFIXES):
        arr, spacing = _read_h5(p, dataset, np.full(3, DEFAULT_LA_SPACING), read_data=True)
        return np.asarray(arr, dtype=np.float32), np.diag([*spacing, 1.0])
    volume_header(p)
    import nibabel as nib

    img = nib.load(str(p))
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as e:  # a truncated gzip (EOFError), a short file (OSError / ValueError): name the file
        raise ValueError(f"Cannot read {p} as a NIfTI volume ({type(e).__name__}: {e}); truncated or corrupt?") from e
    return data, np.asarray(img.affine, dtype=np.float64)


def check_label_values(label, allowed: Sequence[int], where: str) -> None:
    """Raise unless every value of ``label`` is one of ``allowed`` (one ``unique`` over the volume).

    A float label such as {0, 0.5} or a stray 7 would otherwise train silently (0.5 read as background by Dice / CE)
    or fail deep inside a loss with "index 7 is out of bounds", naming no file.

    Args:
        label: a numpy array or torch tensor of label values.
        allowed: the task's label set, e.g. ``(0, 1)`` for LA, ``(0, 1, 2)`` for WMH.
        where: the file (or subject) named in the error.

    Raises:
        ValueError: a value outside ``allowed`` (non-integer, NaN or another class), naming ``where`` and the values.
    """
    import torch

    if isinstance(label, torch.Tensor):
        found = torch.unique(label.detach().cpu().as_subclass(torch.Tensor)).double().numpy()
    else:
        found = np.unique(np.asarray(label)).astype(np.float64)
    bad = found[~np.isin(found, np.asarray(allowed, dtype=np.float64))]
    if bad.size:
        shown = ", ".join(f"{v:g}" for v in bad[:8]) + (", ..." if bad.size > 8 else "")
        expected = "{" + ", ".join(str(int(v)) for v in allowed) + "}"
        raise ValueError(
            f"{where}: label values {shown} outside the task's label set {expected}; expected integer "
            f"class labels (a float or resampled label must be rounded first)."
        )


def resolve_inside(root: str | os.PathLike, entry: str, source: str | os.PathLike) -> Path:
    """``root / entry``, refusing an entry that leaves ``root`` (``../../x``, an absolute path).

    The check is lexical (``normpath``): a symlinked subject folder pointing elsewhere stays allowed, as real data
    sets are often assembled from links; only the list itself must not name paths outside the root.

    Raises:
        ValueError: the entry resolves outside ``root``, naming the entry and ``source`` (the list that holds it).
    """
    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(base, str(entry)))
    if os.path.commonpath([base, full]) != base:
        raise ValueError(
            f"Entry {entry!r} of {source} resolves to {full}, outside the data root {base}; list "
            f"entries must be paths inside the root."
        )
    return Path(full)


def parse_check(check: bool | str) -> str | None:
    """``check`` of the datalists: False -> None, True / ``"header"`` -> ``"header"``, ``"full"`` -> ``"full"``.

    Raises:
        ValueError: any other value.
    """
    if check is False or check is None:
        return None
    if check is True or check == "header":
        return "header"
    if check == "full":
        return "full"
    raise ValueError(
        f"check must be True / 'header' (read headers), 'full' (read every voxel) or False, got {check!r}."
    )
