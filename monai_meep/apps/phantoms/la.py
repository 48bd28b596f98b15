# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Left atrium (LA) phantom: GE-MRI-like volumes in the UA-MT layout of the 2018 Atrial Segmentation Challenge.

Each subject is built from signed-distance primitives (ellipsoids and tapered tubes) in millimetres: the atrium body
(a rough ellipsoid), the appendage (a curved tapering tube with lobes), four pulmonary veins (labelled only up to a
random distance past the ostium, as annotators disagree where the atrium ends), the left ventricle behind a
partly open mitral valve, and neighbouring blood pools of similar brightness (right atrium, ascending and
descending aorta, pulmonary artery). The atrial wall is dark myocardium with patchy enhancement (fibrosis) that is
as bright as blood; lungs are dark, epicardial fat bright. The image is blurred with an anisotropic PSF (acquired at
1.25 mm in z, stored at 0.625 mm), multiplied by a bias field, given Rician noise and z-scored (``mri_norm2``). The
label is the union of atrium parts thresholded after a smooth ~1 voxel perturbation of the boundary (annotator
noise); partial volume makes the boundary voxels genuinely ambiguous.

How ``scale`` acts: voxels are ``0.625 / scale`` mm (isotropic) over the same field of view (about 110-130 x 110-130
x 55 mm); the grid is ``round(scale * (176..208, 176..208, 88))`` voxels.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from ._common import bias_field, rician, rotation_matrix, smooth_noise
from ._parallel import check_generation_args, run_subjects

__all__ = ["generate_la_phantom", "synthesize_la_subject", "LA_SPACING_MM"]

LA_SPACING_MM = 0.625
_ID_CHARS = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _ellipsoid_sd(pts: list[np.ndarray], centre, radii, rot, rough: np.ndarray | None = None) -> np.ndarray:
    """Approximate signed distance (mm, > 0 inside) to a rotated ellipsoid; ``rough`` perturbs its radius."""
    local = [sum(rot[k, i] * (pts[k] - centre[k]) for k in range(3)) for i in range(3)]
    rnorm = np.sqrt(sum((local[i] / radii[i]) ** 2 for i in range(3)))
    if rough is not None:
        rnorm = rnorm * (1.0 + rough)
    return ((1.0 - rnorm) * float(np.mean(radii))).astype(np.float32)


def _tube_sd(pts: list[np.ndarray], path: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (mm) to a tapered tube along a polyline, and the arc length (mm) of the closest point."""
    best = np.full(pts[0].shape, -1e9, np.float32)
    arc = np.zeros(pts[0].shape, np.float32)
    s0 = 0.0
    for a, b, ra, rb in zip(path[:-1], path[1:], radii[:-1], radii[1:], strict=False):
        ab = b - a
        length2 = float(ab @ ab)
        t_raw = sum((pts[k] - a[k]) * ab[k] for k in range(3)) / length2
        t = np.clip(t_raw, 0.0, 1.0)
        d = np.sqrt(sum((pts[k] - a[k] - t * ab[k]) ** 2 for k in range(3)))
        sd = (ra + t * (rb - ra)) - d
        better = sd > best
        best = np.where(better, sd, best)
        arc = np.where(better, s0 + t_raw * np.sqrt(length2), arc)
        s0 += np.sqrt(length2)
    return best.astype(np.float32), arc.astype(np.float32)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _la_rng(index: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), 2018])


def _la_id(rng: np.random.Generator) -> str:
    """The 20-character subject id: the first draw of the subject's generator."""
    return "".join(rng.choice(_ID_CHARS, 20))


def synthesize_la_subject(index: int, seed: int = 0, scale: float = 1.0) -> dict:
    """Synthesize one subject: ``image`` (float32, z-scored), ``label`` (uint8 0/1), ``spacing`` (mm), ``id``."""
    rng = _la_rng(index, seed)  # depends on (seed, index) only
    subject_id = _la_id(rng)
    base = (int(rng.integers(176, 209)), int(rng.integers(176, 209)), 88)
    shape = tuple(max(8, int(round(n * scale))) for n in base)
    h = LA_SPACING_MM / scale  # isotropic; the field of view matches the full-size grid up to one voxel
    spacing = np.full(3, h)
    axes = [((np.arange(n) - (n - 1) / 2.0) * s).astype(np.float32) for n, s in zip(shape, spacing, strict=False)]
    pts = [axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]]
    pts = [np.broadcast_to(p, shape) for p in pts]
    g = lambda lo, hi, n=None: rng.uniform(lo, hi, n)  # noqa: E731

    # Orientation of the heart in the field of view, and the atrium centre (near the volume centre).
    rot = rotation_matrix(np.deg2rad(g(-15, 15, 3)))
    c_la = g(-6, 6, 3) * np.array([1, 1, 0.5])
    frame = lambda v: c_la + rot @ np.asarray(v, float)  # noqa: E731  (atrium frame -> volume mm)
    r_la = np.array([22.0, 17.0, 14.0]) * g(0.85, 1.15, 3)
    rough_sigma = 6.0 / h
    body = _ellipsoid_sd(
        pts, c_la, r_la, rot @ rotation_matrix(np.deg2rad(g(-10, 10, 3))), 0.08 * smooth_noise(shape, rng, rough_sigma)
    )

    # Appendage: curved, tapering, anterior-left-superior, with a lobed tip.
    d_app = _unit(rot @ (np.array([-0.7, -0.6, 0.4]) + g(-0.2, 0.2, 3)))
    p0 = frame(0.75 * r_la * np.array([-0.7, -0.6, 0.4]))
    bend = _unit(np.cross(d_app, rng.normal(size=3)))
    path = np.stack([p0, p0 + 10 * d_app, p0 + 18 * d_app + 5 * bend, p0 + 24 * d_app + 11 * bend])
    app, _ = _tube_sd(pts, path, np.array([7.0, 6.0, 4.5, 3.0]) * g(0.85, 1.15))
    for _ in range(int(rng.integers(1, 4))):  # lobes
        c = path[-1] + rng.normal(0, 3.0, 3)
        app = np.maximum(app, _ellipsoid_sd(pts, c, g(2.0, 4.0, 3), rotation_matrix(g(0, np.pi, 3))))

    # Pulmonary veins: posterior, two per side; labelled only up to a random distance past the ostium.
    veins_img = np.full(shape, -1e9, np.float32)
    veins_lab = np.full(shape, -1e9, np.float32)
    for side in (-1.0, 1.0):
        for vert in (1.0, -1.0):
            d = _unit(rot @ (np.array([0.8 * side, 0.9, 0.55 * vert]) + g(-0.2, 0.2, 3)))
            start = frame(0.5 * r_la * np.array([0.6 * side, 0.8, 0.4 * vert]))
            length = g(30.0, 45.0)
            mid = start + 0.5 * length * d + rng.normal(0, 3.0, 3)
            r = g(4.5, 7.0)
            sd, arc = _tube_sd(pts, np.stack([start, mid, start + length * d]), np.array([r * 1.2, r, 0.8 * r]))
            veins_img = np.maximum(veins_img, sd)
            ostium = float(np.mean(r_la)) * 0.5  # approximate arc length where the vein leaves the body
            cut = ostium + g(3.0, 14.0)
            veins_lab = np.maximum(veins_lab, np.minimum(sd, cut - arc))

    # Left ventricle beyond the mitral valve (anterior-inferior), with a partly open valve.
    d_mv = _unit(rot @ np.array([0.2, -0.7, -0.7]))
    r_lv = np.array([28.0, 24.0, 30.0]) * g(0.9, 1.1, 3)
    c_lv = c_la + d_mv * (float(np.mean(r_la)) * 0.95 + float(np.mean(r_lv)) + g(2.0, 4.0))
    lv = _ellipsoid_sd(pts, c_lv, r_lv, rot)
    valve_open = g(0.0, 1.0)
    mv_path = np.stack([c_la + d_mv * np.mean(r_la) * 0.6, c_lv - d_mv * np.mean(r_lv) * 0.8])
    mv, _ = _tube_sd(pts, mv_path, np.array([1.0, 1.0]) * (3.0 + 8.0 * valve_open))

    # Neighbouring blood pools of similar brightness.
    c_ra = c_la + rot @ np.array([g(38, 46), g(-18, -10), g(-4, 4)])
    ra = _ellipsoid_sd(pts, c_ra, np.array([20.0, 20.0, 18.0]) * g(0.85, 1.15, 3), rot)
    c_ao = c_la + rot @ np.array([g(8, 16), g(-36, -28), 0.0])
    aorta, _ = _tube_sd(pts, np.stack([c_ao - rot @ [0, 0, 40.0], c_ao + rot @ [0, 0, 40.0]]), np.full(2, g(11, 15)))
    c_da = c_la + rot @ np.array([g(-20, -12), g(30, 38), 0.0])
    desc, _ = _tube_sd(pts, np.stack([c_da - [0, 0, 60.0], c_da + [0, 0, 60.0]]), np.full(2, g(9, 12)))
    c_pa = c_la + rot @ np.array([g(-12, -4), g(-30, -22), g(18, 26)])
    pa, _ = _tube_sd(pts, np.stack([c_pa - rot @ [30.0, 0, 0], c_pa + rot @ [30.0, 0, 0]]), np.full(2, g(9, 12)))

    la_img = np.maximum(np.maximum(body, app), veins_img)
    la_lab = np.maximum(np.maximum(body, app), veins_lab)
    frac = lambda sd: np.clip(0.5 + sd / h, 0.0, 1.0)  # noqa: E731  (one voxel ramp = partial volume)
    f_la = frac(la_img)
    f_mv = frac(mv) * (1.0 - f_la) * (1.0 - frac(lv))
    f_lv, f_ra, f_ao, f_da, f_pa = frac(lv), frac(ra), frac(aorta), frac(desc), frac(pa)
    blood_other = np.maximum.reduce([f_lv, f_ra, f_ao, f_da, f_pa, f_mv * 0.8])
    f_wall = np.maximum(frac(la_img + g(2.0, 3.5)) - f_la, 0) * (1.0 - blood_other)  # thin atrial wall
    f_myo = np.maximum(frac(lv + g(8.0, 11.0)) - f_lv, 0) * (1.0 - np.maximum(f_la, blood_other))  # LV myocardium

    # Tissue background: soft tissue with texture, dark lungs laterally, bright epicardial fat patches.
    img = 0.32 + 0.04 * smooth_noise(shape, rng, 3.0 / h)
    for side in (-1.0, 1.0):
        c_lung = c_la + rot @ np.array([side * g(55, 70), g(15, 30), 0.0])
        lung = frac(_ellipsoid_sd(pts, c_lung, np.array([35.0, 50.0, 70.0]) * g(0.9, 1.1, 3), rot))
        img = img * (1.0 - lung) + 0.06 * lung
    fat = np.clip(smooth_noise(shape, rng, 4.0 / h) - 1.2, 0.0, 0.4) / 0.4 * frac(np.maximum(lv, ra) + 10.0)
    img = img * (1.0 - fat) + 0.75 * fat
    fib = g(0.05, 0.4)  # fraction of the wall that enhances (fibrosis extent)
    enh = (smooth_noise(shape, rng, 2.5 / h) > np.quantile(rng.standard_normal(4096), 1.0 - fib)).astype(np.float32)
    wall_int = g(0.08, 0.18) * (1.0 - enh) + g(0.75, 1.05) * enh  # nulled myocardium, enhanced fibrosis
    img = img * (1.0 - f_myo) + g(0.06, 0.14) * f_myo  # inversion time nulls healthy myocardium
    img = img * (1.0 - f_wall) + wall_int * f_wall
    pool_tex = 1.0 + 0.05 * smooth_noise(shape, rng, 4.0 / h)  # slow flow makes blood pools inhomogeneous
    for f, level in (
        (f_ra, g(0.85, 1.0)),
        (f_ao, g(0.95, 1.15)),
        (f_da, g(0.9, 1.1)),
        (f_pa, g(0.85, 1.0)),
        (np.maximum(f_lv, f_mv), g(0.9, 1.1)),
    ):
        img = img * (1.0 - f) + level * pool_tex * f
    img = img * (1.0 - f_la) + g(0.95, 1.05) * pool_tex * f_la

    # Acquisition: anisotropic PSF (1.25 mm slices), bias field, Rician noise, then z-score like mri_norm2.
    img = ndimage.gaussian_filter(img.astype(np.float32), (0.4 / spacing[0], 0.4 / spacing[1], 0.8 / spacing[2]))
    img = img * bias_field(shape, rng, g(0.1, 0.25))
    img = rician(img, g(0.07, 0.14), rng)
    img = (img - img.mean()) / img.std()

    ann_noise = g(0.4, 0.9) * smooth_noise(shape, rng, 4.0 / h)  # annotator boundary noise, mm
    label = (la_lab + ann_noise > 0).astype(np.uint8)
    return {"image": img.astype(np.float32), "label": label, "spacing": spacing, "id": subject_id}


def _write_h5(path: Path, image: np.ndarray, label: np.ndarray, spacing: np.ndarray) -> None:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    # track_times=False and a fixed layout keep the bytes identical for identical data.
    with h5py.File(path, "w", track_order=False) as f:
        f.create_dataset("image", data=image, track_times=False)
        f.create_dataset("label", data=label, track_times=False)
        for name in ("image", "label"):
            f[name].attrs["spacing"] = np.asarray(spacing, dtype=np.float64)


def _write_la_subject(index: int, out: Path, seed: int, scale: float) -> str:
    """Synthesize and write subject ``index``; returns its id (module level, so a process pool can pickle it)."""
    s = synthesize_la_subject(index, seed=seed, scale=scale)
    _write_h5(out / s["id"] / "mri_norm2.h5", s["image"], s["label"], s["spacing"])
    return s["id"]


def _describe_la(index: int, seed: int) -> str:
    return f"id {_la_id(_la_rng(index, seed))}"


def generate_la_phantom(
    out_dir: str | os.PathLike,
    num_subjects: int = 100,
    seed: int = 0,
    scale: float = 1.0,
    figure: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write an LA phantom in the UA-MT layout: ``<out>/<ID>/mri_norm2.h5`` plus ``train.list`` / ``test.list``.

    Args:
        out_dir: destination folder (created).
        num_subjects: subjects; the last ``round(0.2 * n)`` (at least 1 when n > 1) go to ``test.list``.
        seed: random seed; the same seed gives byte-identical files, subject ``i`` does not depend on ``num_subjects``.
        scale: grid scale (1 = 0.625 mm voxels; 0.3 = 2.08 mm over the same field of view).
        figure: also write ``phantom_la.png`` with a few slices and the labels overlaid.
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
        >>> root = generate_la_phantom("/tmp/la", num_subjects=4, scale=0.25)  # doctest: +SKIP
    """
    n, scale = check_generation_args(num_subjects, scale, workers, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job = functools.partial(_write_la_subject, out=out, seed=int(seed), scale=scale)
    # ids come back in subject order whatever order the workers finish in, so the lists are fixed
    ids = run_subjects(job, n, workers, "la", functools.partial(_describe_la, seed=int(seed)), scale, progress)
    n_test = 0 if n == 1 else max(1, int(round(0.2 * n)))
    (out / "train.list").write_text("".join(f"{i}\n" for i in ids[: n - n_test]))
    (out / "test.list").write_text("".join(f"{i}\n" for i in ids[n - n_test :]))
    if figure:
        from .figure import save_phantom_figure

        save_phantom_figure("la", out, out / "phantom_la.png")
    return out
