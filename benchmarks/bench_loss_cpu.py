# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Cost of the MEEP regulariser on the CPU: the Numba kernel vs the PyTorch reference, each against Dice alone.

Loss alone (forward + backward, random logits ``2 * randn``, so about half the voxels are misclassified: the
regulariser's worst case) at the issue's shape ``2 x 2 x 96 x 96 x 48`` and at the ``compare`` budget's LA shape
``2 x 2 x 48 x 48 x 32``: ``DiceLoss`` alone, then + MEEP-KL and + MEEP-entropy through the kernel (the CPU default)
and through the reference (``MONAI_MEEP_NUMBA=0``); the same for a one-channel sigmoid output. Training step: MONAI
``UNet`` 16-32-64-128 (strides 2, no residual units, the table budgets' network), Adam, ``2 x 1 x 96 x 96 x 48``,
Dice vs Dice + MEEP-KL. Every figure is a ratio to the Dice-alone time measured in the same run (the targets of
issue 17: <= 1.3x for the loss, <= 1.03x for the step); absolute times are this machine's only. Run::

    python -m benchmarks.bench_loss_cpu [--quick]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from monai.losses import DiceLoss
from monai.networks.nets import UNet

from benchmarks._common import device_quick_main, reference_path, time_fn
from monai_meep.losses import functional as meep_functional

__all__ = ["run"]

LAMBDA = 0.5  # the paper's LA Dice weight (the weight does not change the cost)
LOSS_SHAPES = ((2, 2, 96, 96, 48), (2, 2, 48, 48, 32))
STEP_SHAPE = (2, 1, 96, 96, 48)
ANCHOR = "issue 17 (2026-12-01): Dice + MEEP-KL 4.8-6.8x Dice (21-23 ms vs 3.3-4.5 ms); UNet step +12 % to +29 %"


def _variants(activation: str) -> dict[str, tuple[Callable, bool]]:
    """``{name: (loss(z, y), reference?)}``; the first entry is the Dice-alone base."""
    dice = DiceLoss(softmax=True, to_onehot_y=True) if activation == "softmax" else DiceLoss(sigmoid=True)
    out: dict[str, tuple[Callable, bool]] = {f"dice ({activation})": (dice, False)}
    for kind, fn in (("meep_kl", meep_functional.meep_kl), ("meep_entropy", meep_functional.meep_entropy)):
        for ref in (False, True):

            def loss(z, y, fn=fn):
                return dice(z, y) + LAMBDA * fn(z, y, activation=activation)

            out[f"dice ({activation}) + meep_{kind} ({'reference' if ref else 'numba kernel'})"] = (loss, ref)
    return out


def _row(figure: str, seconds: float, base: float, target: str = "") -> dict:
    return {
        "benchmark": "loss_cpu",
        "figure": figure,
        "value": seconds * 1e3,
        "unit": "ms",
        "ratio": seconds / base,
        "anchor": ANCHOR if not target else "",
        "target": target,
    }


def bench_loss_alone(shape: tuple[int, ...], reps: int, rounds: int) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for activation in ("softmax", "sigmoid"):
        c = shape[1] if activation == "softmax" else 1
        logits = (2 * torch.randn(shape[0], c, *shape[2:], generator=g)).requires_grad_(True)
        target = torch.randint(0, 2, (shape[0], 1, *shape[2:]), generator=g)
        times = {}
        for name, (fn, ref) in _variants(activation).items():

            def step(fn=fn, logits=logits, target=target):
                logits.grad = None
                fn(logits, target).backward()

            with reference_path() if ref else contextlib.nullcontext():
                times[name] = time_fn(step, logits.device, reps, warmup=3, rounds=rounds)
        base = next(iter(times.values()))
        shape_s = "x".join(map(str, (shape[0], c, *shape[2:])))
        for name, t in times.items():
            rows.append(_row(f"loss fwd+bwd {shape_s}: {name}", t, base, "<= 1.3x" if "numba" in name else ""))
    return rows


def bench_train_step(shape: tuple[int, ...], reps: int, rounds: int) -> list[dict]:
    torch.manual_seed(0)
    net = UNet(3, shape[1], 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(*shape)
    y = torch.randint(0, 2, (shape[0], 1, *shape[2:]))
    dice = DiceLoss(softmax=True, to_onehot_y=True)
    variants = {
        "dice": (lambda z: dice(z, y), False),
        "dice + meep_kl (numba kernel)": (lambda z: dice(z, y) + LAMBDA * meep_functional.meep_kl(z, y), False),
        "dice + meep_kl (reference)": (lambda z: dice(z, y) + LAMBDA * meep_functional.meep_kl(z, y), True),
    }
    times = {}
    for name, (loss_fn, ref) in variants.items():

        def step(loss_fn=loss_fn):
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x)).backward()
            opt.step()

        with reference_path() if ref else contextlib.nullcontext():
            times[name] = time_fn(step, x.device, reps, warmup=2, rounds=rounds)
    base = times["dice"]
    shape_s = "x".join(map(str, shape))
    return [
        _row(f"UNet 16-128 train step {shape_s}: {name}", t, base, "<= 1.03x" if "numba" in name else "")
        for name, t in times.items()
    ]


def run(device: str | torch.device = "cpu", quick: bool = False) -> list[dict]:
    """The CPU figures (``device`` must be the CPU: on CUDA the Triton kernel is the fast path, see bench_loss)."""
    if torch.device(device).type != "cpu":
        return []
    reps, step_reps, rounds = (5, 1, 3) if quick else (20, 3, 7)
    rows = []
    for shape in LOSS_SHAPES:
        rows += bench_loss_alone(shape, reps, rounds)
    rows += bench_train_step(STEP_SHAPE, step_reps, rounds)
    return rows


def _format_row(r: dict) -> str:
    return f"{r['figure']:<86} {r['value']:>9.3f} ms {r['ratio']:>7.3f}x  {r['target']}"


def main(argv: list[str] | None = None) -> list[dict]:
    return device_quick_main(__doc__, run, _format_row, argv)


if __name__ == "__main__":
    main()
