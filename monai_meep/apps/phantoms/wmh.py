# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""White matter hyperintensity (WMH) phantom in the WMH Segmentation Challenge 2017 layout.

Anatomy comes from the MNI152 2009 template and its grey / white matter probability maps shipped inside nilearn
(no download). Per subject: a random affine (rotation, anisotropic scaling, shift), a FLAIR-like and a T1-like
channel built from the warped tissue maps, white matter lesions (periventricular and deep, varied counts / sizes /
contrasts, some faint and not annotated, some only partly annotated, annotator threshold noise), periventricular
bands, sometimes an "other pathology" region (label 2), thick-slice (3 mm) partial volume, bias field and Rician
noise. Three "sites" differ in contrast, noise, bias and blur (a built-in domain shift).

How ``scale`` acts: voxels are ``(1, 1, 3) / scale`` mm and the grid ``round(scale * (192, 224, 60))`` voxels, so
the field of view stays 192 x 224 x 180 mm (up to one voxel). The same subject at another scale has the same anatomy
and lesions, sampled on a coarser grid; the spacing in the header is the true one.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from ._common import bias_field, block_mean, rician, rotation_matrix, save_nifti, soft_ellipsoid
from ._parallel import check_generation_args, run_subjects

__all__ = ["generate_wmh_phantom", "WMH_SITES", "wmh_phantom_shape", "synthesize_wmh_subject"]

#: site name -> (first subject id, acquisition profile). Names and id offsets follow the challenge's training set.
WMH_SITES: dict[str, dict] = {
    "Utrecht": {
        "id0": 0,
        "gm": 1.30,
        "csf": 0.15,
        "lesion": 1.25,
        "t1_gm": 0.62,
        "noise": 0.030,
        "bias": 0.12,
        "blur": 0.3,
        "level": 600.0,
        "gamma": 1.0,
    },
    "Singapore": {
        "id0": 50,
        "gm": 1.18,
        "csf": 0.25,
        "lesion": 0.95,
        "t1_gm": 0.70,
        "noise": 0.045,
        "bias": 0.20,
        "blur": 0.5,
        "level": 250.0,
        "gamma": 0.85,
    },
    "GE3T": {
        "id0": 100,
        "gm": 1.40,
        "csf": 0.10,
        "lesion": 1.45,
        "t1_gm": 0.58,
        "noise": 0.060,
        "bias": 0.28,
        "blur": 0.7,
        "level": 1200.0,
        "gamma": 1.15,
    },
}
_BASE_SHAPE = (192, 224, 60)
_SLICE_FACTOR = 3  # FLAIR slices are 3x thicker than in-plane voxels
_BRAIN_CENTRE_MNI = np.array([0.0, -18.0, 12.0])


def wmh_phantom_shape(scale: float = 1.0) -> tuple[int, int, int]:
    """Voxel grid of a WMH phantom volume at ``scale`` (spacing ``(1, 1, 3) / scale`` mm)."""
    return tuple(max(4, int(round(n * scale))) for n in _BASE_SHAPE)  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def _mni_base() -> dict:
    """Tissue maps of the nilearn MNI152 2009 template (1 mm) plus derived ventricle distance and depth maps."""
    import importlib.util

    import nibabel as nib

    # Locate the files without importing nilearn (its import alone takes seconds).
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise ImportError("The WMH phantom needs nilearn (it ships the MNI152 2009 template): pip install nilearn.")
    data_dir = Path(spec.origin).parent / "datasets" / "data"
    names = {k: data_dir / f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
    for p in names.values():
        if not p.is_file():
            raise FileNotFoundError(f"MNI152 2009 template file {p} not found; it ships with nilearn>=0.10.")
    imgs = {k: nib.load(str(p)) for k, p in names.items()}
    t1, gm, wm = (np.asarray(imgs[k].dataobj, dtype=np.float32) / 255.0 for k in ("t1", "gm", "wm"))
    mask = ndimage.binary_fill_holes(t1 > 0.02)
    csf = np.clip(mask.astype(np.float32) - gm - wm, 0.0, 1.0)
    # Distance maps on a 2 mm grid: 8x cheaper, and lesion placement needs no more precision.
    m2, c2, w2 = mask[::2, ::2, ::2], csf[::2, ::2, ::2], wm[::2, ::2, ::2]
    depth = ndimage.distance_transform_edt(m2, sampling=2.0).astype(np.float32)  # mm from the brain surface
    vent = (c2 > 0.5) & (depth > 20.0)  # lateral ventricles: CSF deep inside the brain (sulcal CSF is shallow)
    vdist = ndimage.distance_transform_edt(~vent, sampling=2.0).astype(np.float32)
    g2 = gm[::2, ::2, ::2]
    pv = 2 * np.argwhere((w2 > 0.8) & (vdist > 1.0) & (vdist < 8.0) & (depth > 15.0))
    deep = 2 * np.argwhere((w2 > 0.9) & (vdist > 12.0) & (depth > 10.0))
    other = 2 * np.argwhere((w2 + g2 > 0.9) & (vdist > 15.0) & (depth > 8.0))
    return {
        "gm": gm,
        "wm": wm,
        "csf": csf,
        "vdist": vdist,
        "affine": imgs["t1"].affine,
        "affine_1mm": imgs["t1"].affine,
        "pv": pv,
        "deep": deep,
        "other": other,
    }


@functools.lru_cache(maxsize=2)
def _mni(scale: float) -> dict:
    """Template maps pre-smoothed against aliasing when sampled on a grid coarser than 1 mm."""
    base = _mni_base()
    h = 1.0 / scale
    if h <= 1.2:
        return base
    out = dict(base)
    if h >= 2.5:
        # Coarse grids: average 2 x 2 x 2 blocks first (8x fewer voxels to smooth), then low-pass the rest.
        for k in ("gm", "wm", "csf"):
            v = base[k][: base[k].shape[0] // 2 * 2, : base[k].shape[1] // 2 * 2, : base[k].shape[2] // 2 * 2]
            out[k] = v.reshape(v.shape[0] // 2, 2, v.shape[1] // 2, 2, v.shape[2] // 2, 2).mean(axis=(1, 3, 5))
        out["affine"] = base["affine"] @ np.array([[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 2, 0.5], [0, 0, 0, 1.0]])
        sigma = 0.4 * (h - 2.0) / 2.0
    else:
        sigma = 0.4 * (h - 1.0)
    for k in ("gm", "wm", "csf"):
        out[k] = ndimage.gaussian_filter(out[k], sigma)
    return out


def _warp(maps: list[np.ndarray], vox_map: np.ndarray, shape: tuple[int, int, int], cval: float) -> list[np.ndarray]:
    """Trilinear resampling ``out[o] = map[vox_map @ o]`` of same-shape maps (torch ``grid_sample``: fast, threaded)."""
    import torch

    src = np.asarray(maps[0].shape, dtype=np.float64)
    axes = [np.arange(n, dtype=np.float64) for n in shape]
    # Source voxel coordinates are affine in the output index, so build them per axis and broadcast.
    coords = [
        vox_map[i, 0] * axes[0][:, None, None]
        + vox_map[i, 1] * axes[1][None, :, None]
        + vox_map[i, 2] * axes[2][None, None, :]
        + vox_map[i, 3]
        for i in range(3)
    ]
    # grid_sample wants (x, y, z) = (last, middle, first) source axis, normalised to [-1, 1] (align_corners=True).
    grid = np.stack([2.0 * coords[i] / (src[i] - 1) - 1.0 for i in (2, 1, 0)], axis=-1).astype(np.float32)
    inp = torch.from_numpy(np.stack(maps)[None] - cval)
    out = torch.nn.functional.grid_sample(
        inp, torch.from_numpy(grid)[None], mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return [o.numpy() + np.float32(cval) for o in out[0]]


def _grid_affines(scale: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Affine of the fine (isotropic) synthesis grid, of the stored 3 mm grid, and the fine grid shape."""
    nx, ny, nz = wmh_phantom_shape(scale)
    fine_shape = (nx, ny, nz * _SLICE_FACTOR)
    spacing = np.full(3, 1.0 / scale)  # exact voxel size; the field of view matches up to one voxel
    a_fine = np.diag([*spacing, 1.0])
    a_fine[:3, 3] = -spacing * (np.asarray(fine_shape) - 1) / 2.0
    thick = np.eye(4)
    thick[2, 2] = _SLICE_FACTOR
    thick[2, 3] = (_SLICE_FACTOR - 1) / 2.0  # a thick voxel is centred on the middle of its thin slices
    return a_fine, a_fine @ thick, fine_shape


def _wmh_site_and_id(index: int) -> tuple[str, str]:
    """Site and subject id of subject ``index``: sites in turn, ids counting up from each site's ``id0``."""
    site = list(WMH_SITES)[int(index) % len(WMH_SITES)]
    return site, str(WMH_SITES[site]["id0"] + int(index) // len(WMH_SITES))


def synthesize_wmh_subject(index: int, seed: int = 0, scale: float = 1.0) -> dict:
    """One subject: ``flair``, ``t1`` (float32), ``label`` (uint8 0/1/2), ``affine``, ``site``, ``id``."""
    rng = np.random.default_rng([int(seed), int(index), 20170])  # depends on (seed, index) only
    site, subject_id = _wmh_site_and_id(index)
    prof = WMH_SITES[site]
    tpl = _mni(float(scale))
    a_fine, a_out, fine_shape = _grid_affines(scale)
    spacing = np.abs(np.diag(a_fine)[:3])

    # Subject pose: subject world -> template world.
    rot = rotation_matrix(np.deg2rad(rng.uniform(-7, 7, 3)))
    zoom = rng.uniform(0.9, 1.1, 3) * rng.uniform(0.95, 1.05)
    m = np.eye(4)
    m[:3, :3] = rot @ np.diag(zoom)
    m[:3, 3] = _BRAIN_CENTRE_MNI + rng.uniform(-4, 4, 3)
    to_tpl_vox = np.linalg.inv(tpl["affine"]) @ m @ a_fine  # into the (possibly 2 mm) tissue-map grid
    to_1mm_vox = np.linalg.inv(tpl["affine_1mm"]) @ m @ a_fine  # into the 1 mm template grid
    gm, wm, csf = _warp([tpl[k] for k in ("gm", "wm", "csf")], to_tpl_vox, fine_shape, cval=0.0)
    half = np.diag([0.5, 0.5, 0.5, 1.0])  # the distance map lives on the 2 mm grid
    (vdist,) = _warp([tpl["vdist"]], half @ to_1mm_vox, fine_shape, cval=100.0)
    wm_soft = np.clip((wm - 0.3) / 0.4, 0.0, 1.0)
    tpl_to_fine = np.linalg.inv(to_1mm_vox)  # lesion candidates are 1 mm template voxels

    effect = np.zeros(fine_shape, np.float32)  # lesion signal change, fraction-weighted (partial volume)
    annot = np.zeros(fine_shape, np.float32)  # annotator's view: >0.5 after slice averaging means labelled
    other = np.zeros(fine_shape, np.float32)
    load = float(rng.lognormal(0.0, 0.8))  # subject lesion load: most small, a few heavy (about 2-50 mL)
    n_pv, n_deep = 1 + rng.poisson(5.0 * load), rng.poisson(9.0 * load)
    kinds = ["pv"] * n_pv + ["deep"] * n_deep
    for kind in kinds:
        cand = tpl[kind]
        centre = (tpl_to_fine @ np.append(cand[rng.integers(len(cand))], 1.0))[:3]
        mean_r = rng.lognormal(np.log(5.0 if kind == "pv" else 2.5), 0.45)
        radii = mean_r * rng.uniform(0.6, 1.6, 3)
        box, frac = soft_ellipsoid(
            fine_shape, spacing, centre, radii, rotation_matrix(rng.uniform(0, np.pi, 3)), rng, roughness=0.25
        )
        if frac.size == 0:
            continue
        frac = frac * wm_soft[box]  # lesions live in white matter
        contrast = float(rng.uniform(0.15, 1.0) if rng.random() < 0.3 else rng.uniform(0.6, 1.2))
        effect[box] = np.maximum(effect[box], contrast * frac)
        faint = contrast < 0.35
        if faint and rng.random() < 0.6:
            continue  # faint lesions are often missed by the annotator
        ann = np.clip(frac * 0.5 / rng.uniform(0.35, 0.65), 0.0, 1.0)  # per-lesion annotation threshold
        if rng.random() < 0.15:  # partly annotated: the annotator stops at a random plane through the lesion
            normal = rng.normal(size=3)
            idx = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij"), -1)
            ann = ann * (((idx - centre) * spacing) @ normal < 0)
        annot[box] = np.maximum(annot[box], ann)

    # Periventricular bands ("caps"): a smooth hyperintense rim whose annotation depends on the annotator.
    band_amp = float(rng.uniform(0.0, 0.6) * min(load, 2.0))
    # (zero inside the ventricles themselves, peaking 1-2 mm outside them)
    decay = np.exp(-np.maximum(vdist - 1.0, 0.0) / rng.uniform(1.5, 3.5))
    band = band_amp * wm_soft * np.clip(vdist / 1.5, 0, 1) * decay
    effect = np.maximum(effect, band.astype(np.float32))
    if rng.random() < 0.5:
        annot = np.maximum(annot, (band > 0.45).astype(np.float32))

    # Other pathology (label 2): an old infarct, cavitated (CSF-like core) with a gliotic rim.
    cavity = np.zeros(fine_shape, np.float32)
    if rng.random() < 0.35:
        cand = tpl["other"]
        centre = (tpl_to_fine @ np.append(cand[rng.integers(len(cand))], 1.0))[:3]
        radii = rng.uniform(4.0, 10.0) * rng.uniform(0.7, 1.3, 3)
        box, frac = soft_ellipsoid(
            fine_shape, spacing, centre, radii, rotation_matrix(rng.uniform(0, np.pi, 3)), rng, roughness=0.3
        )
        if frac.size:
            frac = frac * np.clip(wm[box] + gm[box], 0, 1)
            other[box] = frac
            cavity[box] = np.clip(2.0 * frac - 1.0, 0.0, 1.0)  # inner core

    # Contrast: per-site profile with per-subject jitter.
    j = rng.uniform(0.92, 1.08, 4)
    flair = wm + prof["gm"] * j[0] * gm + prof["csf"] * j[1] * csf
    flair = flair + prof["lesion"] * j[2] * effect + 0.8 * (other - cavity) - (flair - prof["csf"] * csf) * cavity
    t1 = wm + prof["t1_gm"] * j[3] * gm + 0.25 * csf
    t1 = t1 - 0.3 * effect * wm_soft - 0.5 * cavity * t1
    flair, t1 = np.clip(flair, 0, None) ** prof["gamma"], np.clip(t1, 0, None)

    # Thick slices (partial volume in z), site blur in plane, bias field, Rician noise.
    flair, t1, annot, other = (block_mean(x, _SLICE_FACTOR) for x in (flair, t1, annot, other))
    label = np.where(other > 0.5, 2, annot > 0.5).astype(np.uint8)
    blur = prof["blur"] * scale
    out = {}
    for name, img, noise in (("flair", flair, prof["noise"]), ("t1", t1, prof["noise"] * 0.8)):
        if blur > 0.05:
            img = ndimage.gaussian_filter(img, (blur, blur, 0.0))
        img = img * bias_field(img.shape, rng, prof["bias"])
        img = rician(img, noise * rng.uniform(0.85, 1.15), rng)
        out[name] = (img * prof["level"]).astype(np.float32)
    return {"flair": out["flair"], "t1": out["t1"], "label": label, "affine": a_out, "site": site, "id": subject_id}


def _write_wmh_subject(index: int, out: Path, seed: int, scale: float) -> None:
    """Synthesize and write subject ``index`` (a module-level function, so a process pool can pickle it)."""
    s = synthesize_wmh_subject(index, seed=seed, scale=scale)
    subj = out / s["site"] / s["id"]
    save_nifti(subj / "pre" / "FLAIR.nii.gz", s["flair"], s["affine"], np.float32)
    save_nifti(subj / "pre" / "T1.nii.gz", s["t1"], s["affine"], np.float32)
    save_nifti(subj / "wmh.nii.gz", s["label"], s["affine"], np.uint8)


def _describe_wmh(index: int) -> str:
    return "/".join(_wmh_site_and_id(index))


def generate_wmh_phantom(
    out_dir: str | os.PathLike,
    num_subjects: int = 60,
    seed: int = 0,
    scale: float = 1.0,
    figure: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write a WMH phantom in the challenge layout ``<out>/<site>/<id>/pre/{FLAIR,T1}.nii.gz`` + ``wmh.nii.gz``.

    Args:
        out_dir: destination folder (created).
        num_subjects: subjects, assigned to the three sites in turn (60 = 20 per site, as in the challenge).
        seed: random seed; the same seed gives byte-identical files, and subject ``i`` does not depend on
            ``num_subjects``.
        scale: grid scale (1 = 1 x 1 x 3 mm voxels; 0.3 = 3.3 x 3.3 x 10 mm over the same field of view).
        figure: also write ``phantom_wmh.png`` with a few slices and the labels overlaid.
        workers: processes generating subjects in parallel; None = ``min(CPUs, num_subjects, 16)`` (serial for
            less work than 2 full-size subjects), 1 = serially in this process. The files are byte-identical
            whatever the number of workers.
        progress: a progress bar of the subjects written (stderr).

    Returns:
        The output folder.

    Raises:
        ValueError: ``num_subjects`` < 1, ``scale`` outside (0, 2] or ``workers`` < 1.
        PhantomGenerationError: a subject failed; the message names it (files of other subjects may remain in
            ``out_dir``: ``prepare_dataset`` generates into a temporary folder for this reason).

    Example:
        >>> root = generate_wmh_phantom("/tmp/wmh", num_subjects=3, scale=0.25)  # doctest: +SKIP
    """
    num_subjects, scale = check_generation_args(num_subjects, scale, workers, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job = functools.partial(_write_wmh_subject, out=out, seed=int(seed), scale=scale)
    run_subjects(job, num_subjects, workers, "wmh", _describe_wmh, scale, progress)
    if figure:
        from .figure import save_phantom_figure

        save_phantom_figure("wmh", out, out / "phantom_wmh.png")
    return out
