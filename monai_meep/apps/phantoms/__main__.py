# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""``python -m monai_meep.apps.phantoms {wmh,la} --out DIR [--subjects N --seed S --scale F --workers W --figure]``."""

from __future__ import annotations

import argparse
import sys
import time

from . import generate_la_phantom, generate_wmh_phantom


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_meep.apps.phantoms", description=__doc__)
    parser.add_argument("task", choices=["wmh", "la"])
    parser.add_argument("--out", required=True, help="output folder (challenge layout for wmh, UA-MT for la)")
    parser.add_argument("--subjects", type=int, default=None, help="number of subjects (default 60 wmh, 100 la)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="grid scale: voxels are (base spacing / scale)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes generating subjects in parallel (default: min(CPUs, subjects, 16), "
        "serial for a small phantom; 1 = serial); the output does not depend on it",
    )
    parser.add_argument("--figure", action="store_true", help="also write phantom_<task>.png next to the data")
    args = parser.parse_args(argv)
    n = args.subjects if args.subjects is not None else (60 if args.task == "wmh" else 100)
    gen = generate_wmh_phantom if args.task == "wmh" else generate_la_phantom
    t0 = time.perf_counter()
    out = gen(args.out, num_subjects=n, seed=args.seed, scale=args.scale, figure=args.figure, workers=args.workers)
    print(
        f"{args.task} phantom: {n} subjects, scale {args.scale:g}, seed {args.seed} -> {out} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
