# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""A PNG of a few phantom slices with the labels overlaid (a quick visual check of the generated data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from monai.utils import optional_import

plt, _has_mpl = optional_import("matplotlib.pyplot")

__all__ = ["save_phantom_figure"]


def _subjects(task: str, root: Path, n: int) -> list[tuple[str, list[np.ndarray], np.ndarray]]:
    """Up to ``n`` subjects of a phantom root as (name, channels, label), read with the package's own loaders."""
    from ..data.la import la_datalist
    from ..data.readers import load_volume
    from ..data.wmh import wmh_datalist

    items = (wmh_datalist(root) if task == "wmh" else la_datalist(root))[:n]
    out = []
    for it in items:
        images = it["image"] if isinstance(it["image"], list) else [it["image"]]
        chans = [load_volume(p, "image")[0] for p in images]
        out.append((f"{it['site']}/{it['subject']}", chans, load_volume(it["label"], "label")[0]))
    return out


def save_phantom_figure(task: str, root: str | os.PathLike, out_file: str | os.PathLike, num_subjects: int = 2) -> Path:
    """Write axial slices (three heights per subject) of a phantom with label 1 (red) and label 2 (cyan) overlaid.

    Args:
        task: ``"wmh"`` or ``"la"``.
        root: the phantom's root folder.
        out_file: PNG path to write.
        num_subjects: subjects shown, one row each (WMH: FLAIR and T1 rows).

    Returns:
        The PNG path.

    Raises:
        ImportError: matplotlib is not installed.
    """
    if not _has_mpl:
        raise ImportError("save_phantom_figure needs matplotlib: pip install matplotlib.")
    import matplotlib

    matplotlib.use("Agg", force=False)
    subjects = _subjects(task, Path(root), num_subjects)
    rows = sum(len(ch) for _, ch, _ in subjects)
    fig, axs = plt.subplots(rows, 3, figsize=(9, 3 * rows), squeeze=False)
    r = 0
    for name, chans, label in subjects:
        fg = np.argwhere(label == 1)
        zc = int(np.median(fg[:, 2])) if len(fg) else label.shape[2] // 2
        zs = [max(0, zc - label.shape[2] // 8), zc, min(label.shape[2] - 1, zc + label.shape[2] // 8)]
        for ci, ch in enumerate(chans):
            for k, z in enumerate(zs):
                ax = axs[r, k]
                ax.imshow(np.rot90(ch[:, :, z]), cmap="gray")
                for value, colour in ((1, "red"), (2, "cyan")):
                    mask = np.rot90(label[:, :, z] == value)
                    if mask.any():
                        ax.contour(mask, levels=[0.5], colors=colour, linewidths=0.8)
                chan_name = ["FLAIR", "T1"][ci] if task == "wmh" else "GE-MRI"
                ax.set_title(f"{name} {chan_name} z={z}", fontsize=7)
                ax.axis("off")
            r += 1
    fig.tight_layout()
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
