# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Cost of the MEEP regulariser on the CPU: the Numba kernel vs the PyTorch reference, each against Dice alone.

Loss alone (forward + backward, random logits ``2 * randn``, so about half the voxels are misclassified: the
regulariser's worst case) at the issue's shape ``2 x 2 x 96 x 96 x 48`` and at the ``compare`` budget's LA shape
``2 x 2 x 48 x 48 x 32``: ``DiceLoss`` alone, then ``MEEPLoss(DiceLoss)`` with KL and entropy through the kernel
(the CPU default: one autograd node), the functional sum ``dice + lambda * meep_kl`` through the same kernel (two
gradients for autograd to add) and ``MEEPLoss`` through the reference (``MONAI_MEEP_NUMBA=0``); the same for a
one-channel sigmoid output. Training step: MONAI ``UNet`` 16-32-64-128 (strides 2, no residual units, the table
budgets' network), Adam, ``2 x 1 x 96 x 96 x 48``, Dice vs Dice + MEEP-KL. Every figure is a ratio to the
Dice-alone time measured in the same run (the targets of issue 17: <= 1.3x for the loss, <= 1.03x for the step,
on the ``MEEPLoss, numba kernel`` rows): the median over rounds of the ratio within a round, the variants timed in
turn in each round (``time_interleaved``). Then the same figures again in a child process with
``OMP_WAIT_POLICY=PASSIVE`` (:func:`passive_child`), which tells how much of the cost is PyTorch's spinning OpenMP
workers. Absolute times are this machine's only. Run::

    python -m benchmarks.bench_loss_cpu [--quick]
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from monai.losses import DiceLoss
from monai.networks.nets import UNet

from benchmarks._common import device_quick_main, reference_path, time_interleaved
from monai_meep.kernels import parts as kernel_parts
from monai_meep.losses import MEEPLoss
from monai_meep.losses import functional as meep_functional

__all__ = ["run"]

LAMBDA = 0.5  # the paper's LA Dice weight (the weight does not change the cost)
LOSS_SHAPES = ((2, 2, 96, 96, 48), (2, 2, 48, 48, 32))
STEP_SHAPE = (2, 1, 96, 96, 48)
# set in the OMP_WAIT_POLICY=PASSIVE child, which must not start a child of its own
CHILD_ENV = "MONAI_MEEP_BENCH_CHILD"
PASSIVE_PREFIX = "[OMP_WAIT_POLICY=PASSIVE] "
ANCHOR = "issue 17 (2026-12-01): Dice + MEEP-KL 4.8-6.8x Dice (21-23 ms vs 3.3-4.5 ms); UNet step +12 % to +29 %"


@contextlib.contextmanager
def kernel_threads(n: int) -> Iterator[None]:
    """Run the package's CPU kernels on ``n`` threads (PyTorch keeps its own setting): the variant that tells how
    much of the kernel's cost is competition with PyTorch's OpenMP threads, which spin after each parallel op."""
    saved = kernel_parts.cpu_threads
    kernel_parts.cpu_threads = lambda: n
    try:
        yield
    finally:
        kernel_parts.cpu_threads = saved


def _variants(activation: str) -> dict[str, tuple[Callable, Callable[[], Any]]]:
    """``{name: (loss(z, y), context)}``; the first entry is the Dice-alone base.

    ``MEEPLoss`` is the product path (on the CPU kernel one autograd node: the regulariser's gradient is added into
    Dice's); ``functional sum`` is ``dice(z, y) + lambda * meep_kl(z, y)``, the same kernel with autograd adding
    the two gradients; ``reference`` is ``MEEPLoss`` on the PyTorch path.
    """
    dice = DiceLoss(softmax=True, to_onehot_y=True) if activation == "softmax" else DiceLoss(sigmoid=True)
    out: dict[str, tuple[Callable, Callable[[], Any]]] = {f"dice ({activation})": (dice, contextlib.nullcontext)}
    for kind, fn in (("kl", meep_functional.meep_kl), ("entropy", meep_functional.meep_entropy)):
        wrapped = MEEPLoss(dice, f"meep_{kind}", weight=LAMBDA)

        def functional_sum(z, y, fn=fn):
            return dice(z, y) + LAMBDA * fn(z, y, activation=activation)

        name = f"dice ({activation}) + meep_{kind}"
        out[f"{name} (MEEPLoss, numba kernel)"] = (wrapped, contextlib.nullcontext)
        if kind == "kl":
            out[f"{name} (MEEPLoss, numba kernel, 1 thread)"] = (wrapped, lambda: kernel_threads(1))
        out[f"{name} (functional sum, numba kernel)"] = (functional_sum, contextlib.nullcontext)
        out[f"{name} (MEEPLoss, reference)"] = (wrapped, reference_path)
    return out


def _row(figure: str, seconds: float, ratio: float, target: str = "") -> dict:
    return {
        "benchmark": "loss_cpu",
        "figure": figure,
        "value": seconds * 1e3,
        "unit": "ms",
        "ratio": ratio,
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
        variants = {}
        for name, (fn, context) in _variants(activation).items():

            def step(fn=fn, logits=logits, target=target):
                logits.grad = None
                fn(logits, target).backward()

            variants[name] = (step, context)
        times = time_interleaved(variants, logits.device, reps, warmup=3, rounds=rounds)
        shape_s = "x".join(map(str, (shape[0], c, *shape[2:])))
        for name, (t, ratio) in times.items():
            target_s = "<= 1.3x" if name.endswith("(MEEPLoss, numba kernel)") else ""
            rows.append(_row(f"loss fwd+bwd {shape_s}: {name}", t, ratio, target_s))
    return rows


def bench_train_step(shape: tuple[int, ...], reps: int, rounds: int) -> list[dict]:
    torch.manual_seed(0)
    net = UNet(3, shape[1], 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(*shape)
    y = torch.randint(0, 2, (shape[0], 1, *shape[2:]))
    dice = DiceLoss(softmax=True, to_onehot_y=True)
    wrapped = MEEPLoss(dice, "meep_kl", weight=LAMBDA)
    functional_sum = lambda z: dice(z, y) + LAMBDA * meep_functional.meep_kl(z, y)  # noqa: E731
    variants = {
        "dice": (lambda z: dice(z, y), contextlib.nullcontext),
        "dice + meep_kl (MEEPLoss, numba kernel)": (lambda z: wrapped(z, y), contextlib.nullcontext),
        "dice + meep_kl (functional sum, numba kernel)": (functional_sum, contextlib.nullcontext),
        "dice + meep_kl (MEEPLoss, reference)": (lambda z: wrapped(z, y), reference_path),
    }
    timed = {}
    for name, (loss_fn, context) in variants.items():

        def step(loss_fn=loss_fn):
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x)).backward()
            opt.step()

        timed[name] = (step, context)
    times = time_interleaved(timed, x.device, reps, warmup=2, rounds=rounds)
    shape_s = "x".join(map(str, shape))
    return [
        _row(
            f"UNet 16-128 train step {shape_s}: {name}",
            t,
            ratio,
            "<= 1.03x" if name.endswith("(MEEPLoss, numba kernel)") else "",
        )
        for name, (t, ratio) in times.items()
    ]


def passive_child(quick: bool) -> list[dict]:
    """The same figures in a child process with ``OMP_WAIT_POLICY=PASSIVE`` (read by libgomp at start-up only).

    Why: after each parallel op PyTorch's OpenMP workers spin-wait for the next one, on 2 cores on the core the
    kernel's second thread needs; with ``PASSIVE`` they sleep at once. The two runs side by side tell how much of the
    regulariser's cost is that competition, and what ``PASSIVE`` costs PyTorch's own ops (the Dice-alone and UNet
    step times). Rows carry the prefix ``[OMP_WAIT_POLICY=PASSIVE]`` and no target; a failed child gives one row
    with its error.
    """
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", CHILD_ENV: "1"}
    cmd = [sys.executable, "-m", "benchmarks.bench_loss_cpu", "--json", *(["--quick"] if quick else [])]
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return [{"benchmark": "loss_cpu", "case": "OMP_WAIT_POLICY=PASSIVE child", "error": done.stderr[-2000:]}]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    return [{**r, "figure": PASSIVE_PREFIX + r["figure"], "target": "", "anchor": ""} for r in rows]


def run(device: str | torch.device = "cpu", quick: bool = False) -> list[dict]:
    """The CPU figures (``device`` must be the CPU: on CUDA the Triton kernel is the fast path, see bench_loss),
    then the same in a child process with ``OMP_WAIT_POLICY=PASSIVE`` (:func:`passive_child`)."""
    if torch.device(device).type != "cpu":
        return []
    reps, step_reps, rounds = (5, 1, 3) if quick else (20, 3, 7)
    rows = []
    for shape in LOSS_SHAPES:
        rows += bench_loss_alone(shape, reps, rounds)
    rows += bench_train_step(STEP_SHAPE, step_reps, rounds)
    if os.environ.get(CHILD_ENV) != "1":
        rows += passive_child(quick)
    return rows


def _format_row(r: dict) -> str:
    if "error" in r:
        last = r["error"].strip().splitlines()[-1:] or [""]
        return f"{r['case']:<86} FAILED: {last[0]}"
    return f"{r['figure']:<86} {r['value']:>9.3f} ms {r['ratio']:>7.3f}x  {r['target']}"


def main(argv: list[str] | None = None) -> list[dict]:
    if argv is None:
        argv = sys.argv[1:]
    if "--json" in argv:  # the child of passive_child: the rows as one JSON line
        rows = run("cpu", "--quick" in argv)
        print(json.dumps(rows))
        return rows
    return device_quick_main(__doc__, run, _format_row, argv)


if __name__ == "__main__":
    main()
