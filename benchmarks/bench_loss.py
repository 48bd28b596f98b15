# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Cost of the MEEP regulariser: the loss alone and the full LA training step, Dice vs Dice + MEEP-KL.

Loss alone (forward + backward) on LA-shaped logits ``2 x 2 x 144 x 144 x 80``: ``DiceLoss(softmax, to_onehot_y)``
alone; + the PyTorch reference MEEP-KL (``monai_meep.losses.functional``, the CPU / fallback path); + the fused Triton
kernel (:func:`monai_meep.kernels.fused_meep_regularizer`); + ``torch.compile`` of the reference (where it compiles).
Full LA training step: MONAI ``UNet`` (3D, 1 -> 2 channels, 16..256, strides 2, 2 residual units), Adam, batch
``2 x 1 x 144 x 144 x 80``, fp32 and bf16 autocast; DiceLoss vs + MEEP-KL (reference and fused).

GPU timing: CUDA events around ``reps`` iterations after warm-up, the median of 5 such rounds. On the CPU the shapes
are smaller (the LA crop would take minutes per step on 2 cores), the fused kernel is not timed (Triton runs on CPU
only in its slow interpreter) and only the ratios mean something. Run::

    python -m benchmarks.bench_loss --device cuda      # or cpu [--quick]
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.losses import DiceLoss
from monai.networks.nets import UNet

from benchmarks._common import device_quick_main, reference_path, time_fn
from monai_meep.kernels import fused_meep_regularizer, triton_available
from monai_meep.losses import functional as meep_functional

__all__ = ["run", "time_fn"]

LAMBDA = 0.5  # the paper's LA Dice setting (the weight does not change the cost)
ANCHORS = {  # measured 2026-11-28, one H200, torch 2.11, MONAI 1.6.1 (benchmarks/gpu/README.md)
    "loss_dice_ms": 1.04,
    "loss_naive_kl_ms": 1.42,
    "loss_compile_ms": 1.35,
    "loss_floor_ms": 0.03,
    "step_dice_ms": 17.6,
    "step_naive_kl_ms": 18.8,
}


def _losses(fused_ok: bool) -> dict[str, Callable]:
    dice = DiceLoss(softmax=True, to_onehot_y=True)

    def dice_only(z, y):
        return dice(z, y)

    def dice_meep_ref(z, y):
        return dice(z, y) + LAMBDA * meep_functional.meep_kl(z, y, validate=False)

    out = {"dice": dice_only, "dice+meep_kl (reference)": dice_meep_ref}
    if fused_ok:
        out["dice+meep_kl (fused triton)"] = lambda z, y: dice(z, y) + LAMBDA * fused_meep_regularizer(z, y, "meep_kl")
    return out


def _row(figure: str, value_ms: float | None, base_ms: float | None, anchor: str = "", target: str = "", **extra):
    return {
        "benchmark": "loss",
        "figure": figure,
        "value": value_ms,
        "unit": "ms",
        "ratio": (value_ms / base_ms) if (value_ms and base_ms) else None,
        "anchor": anchor,
        "target": target,
        **extra,
    }


def bench_loss_alone(
    device: torch.device, shape: tuple[int, ...], reps: int, fused_ok: bool, try_compile: bool
) -> list[dict]:
    g = torch.Generator(device="cpu").manual_seed(0)
    logits = (2 * torch.randn(*shape, generator=g)).to(device).requires_grad_(True)
    target = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=g).to(device)
    losses = _losses(fused_ok)
    if try_compile:
        try:
            compiled = torch.compile(losses["dice+meep_kl (reference)"], fullgraph=False)
            compiled(logits, target).backward()
            losses["dice+meep_kl (reference, torch.compile)"] = compiled
        except Exception as err:
            print(f"[bench_loss] torch.compile failed: {type(err).__name__}: {err}".splitlines()[0][:200])
    times = {}
    with reference_path():
        for name, fn in losses.items():

            def step(fn=fn):
                logits.grad = None
                fn(logits, target).backward()

            times[name] = time_fn(step, device, reps)
    base = times["dice"] * 1e3
    anchors = {
        "dice": f"Dice {ANCHORS['loss_dice_ms']} ms",
        "dice+meep_kl (reference)": f"naive KL {ANCHORS['loss_naive_kl_ms']} ms (1.37x)",
        "dice+meep_kl (fused triton)": "target <= 1.1x Dice",
        "dice+meep_kl (reference, torch.compile)": f"torch.compile {ANCHORS['loss_compile_ms']} ms (1.30x)",
    }
    shape_s = "x".join(map(str, shape))
    rows = [
        _row(f"loss fwd+bwd {shape_s}: {name}", t * 1e3, base, anchors.get(name, ""),
             "<= 1.1x" if "fused" in name else "", floor_ms=ANCHORS["loss_floor_ms"] if device.type == "cuda" else None)
        for name, t in times.items()
    ]  # fmt: skip
    if not fused_ok:
        rows.append(_row(f"loss fwd+bwd {shape_s}: dice+meep_kl (fused triton)", None, None, "target <= 1.1x Dice",
                         note="not timed: needs triton and a CUDA device"))  # fmt: skip
    return rows


def bench_train_step(
    device: torch.device, shape: tuple[int, ...], reps: int, fused_ok: bool, amp_dtypes: tuple
) -> list[dict]:
    rows = []
    shape_s = "x".join(map(str, shape))
    for amp in amp_dtypes:
        torch.manual_seed(0)
        net = UNet(3, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        x = torch.randn(*shape, device=device)
        y = torch.randint(0, 2, shape, device=device)
        times = {}
        with reference_path():
            for name, loss_fn in _losses(fused_ok).items():

                def step(loss_fn=loss_fn, net=net, opt=opt, x=x, y=y, amp=amp):
                    opt.zero_grad(set_to_none=True)
                    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                        loss = loss_fn(net(x), y)
                    loss.backward()
                    opt.step()

                times[name] = time_fn(step, device, reps, warmup=2, rounds=3)
        base = times["dice"] * 1e3
        label = "fp32" if amp is None else f"{str(amp).split('.')[-1]} AMP"
        for name, t in times.items():
            anchor = ""
            if amp is None and name == "dice":
                anchor = f"Dice {ANCHORS['step_dice_ms']} ms"
            elif amp is None and "reference" in name:
                anchor = f"naive KL {ANCHORS['step_naive_kl_ms']} ms (+6.7 %)"
            rows.append(
                _row(
                    f"LA train step {shape_s} {label}: {name}",
                    t * 1e3,
                    base,
                    anchor,
                    "<= 1.01x" if name != "dice" else "",
                )  # fmt: skip
            )
        if not fused_ok:
            rows.append(_row(f"LA train step {shape_s} {label}: dice+meep_kl (fused triton)", None, None,
                             target="<= 1.01x", note="not timed: needs triton and a CUDA device"))  # fmt: skip
    return rows


def run(device: str | torch.device = "cpu", quick: bool = False) -> list[dict]:
    """All loss / training-step figures on ``device``; one dict per figure (ms, ratio to Dice alone)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    fused_ok = cuda and triton_available(torch.empty(0, device=device))
    if cuda:
        loss_shape, step_shape = (2, 2, 144, 144, 80), (2, 1, 144, 144, 80)
        reps, step_reps, amps = (20, 5, (None, torch.bfloat16)) if quick else (50, 10, (None, torch.bfloat16))
    else:
        loss_shape, step_shape = (2, 2, 48, 48, 32), (1, 1, 32, 32, 32)
        reps, step_reps, amps = (3, 1, (None,)) if quick else (5, 2, (None, torch.bfloat16))
    rows = bench_loss_alone(device, loss_shape, reps, fused_ok, try_compile=cuda or not quick)
    rows += bench_train_step(device, step_shape, step_reps, fused_ok, amps)
    return rows


def _format_row(r: dict) -> str:
    v = "-" if r["value"] is None else f"{r['value']:.3f} ms"
    ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}x"
    return f"{r['figure']:<70} {v:>12} {ratio:>8}  {r['anchor']}"


def main(argv: list[str] | None = None) -> list[dict]:
    return device_quick_main(__doc__, run, _format_row, argv)


if __name__ == "__main__":
    main()
