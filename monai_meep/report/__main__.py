# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""``python -m monai_meep.report``: a calibration report of a folder of probability maps against a folder of labels.

Examples::

    python -m monai_meep.report --pred preds --label labels --out report
    python -m monai_meep.report --pred nnunet_out --pred-glob '*.npz' --label labelsTs --out report --preset mbls
    python -m monai_meep.report --pred model_a --compare model_b model_c --label labels --out report
    python -m monai_meep.report --merge report_part1 report_part2 --out report_all
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from monai_meep.metrics.conventions import Preset, Region

from .api import calibration_report, merge_reports
from .io import CaseError
from .pairing import DEFAULT_PATTERN, PER_CLASS_PATTERN

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command line (also the reference of the options)."""
    p = argparse.ArgumentParser(
        prog="python -m monai_meep.report",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) + "\nSee docs/report.md.",
    )
    io = p.add_argument_group("inputs")
    io.add_argument("--pred", help="folder of probability maps (NIfTI, .npz, .npy)")
    io.add_argument("--label", help="folder of ground-truth label maps (NIfTI, .npy)")
    io.add_argument("--compare", nargs="+", default=[], metavar="DIR", help="more models' prediction folders")
    io.add_argument("--merge", nargs="+", default=[], metavar="REPORT", help="merge written reports instead")
    io.add_argument("--pred-glob", "--glob", default="*", help="shell pattern of the prediction files (default *)")
    io.add_argument("--label-glob", default="*", help="shell pattern of the label files (default *)")
    io.add_argument(
        "--pred-pattern",
        "--pattern",
        default=DEFAULT_PATTERN,
        help=f"regex on a prediction file's stem, groups case (and cls for one file per class); default "
        f"{DEFAULT_PATTERN!r}; one file per class nnU-Net style: {PER_CLASS_PATTERN!r}",
    )
    io.add_argument("--label-pattern", default=DEFAULT_PATTERN, help="regex on a label file's stem (group case)")
    io.add_argument("--npz-key", default=None, help="array of .npz files holding several (default probabilities)")
    for which in ("pred", "label"):
        io.add_argument(
            f"--{which}-order",
            choices=("auto", "xyz", "zyx"),
            default="auto",
            help="spatial order of NumPy inputs; auto: zyx for nnU-Net .npz probabilities, else xyz",
        )
    io.add_argument("--spacing", type=float, nargs="+", default=None, help="voxel size (mm) without NIfTI headers")
    io.add_argument("--ignore-index", type=int, default=None, help="label value not scored (e.g. 2 for WMH)")
    m = p.add_argument_group("convention")
    m.add_argument("--preset", choices=[str(v) for v in Preset], default="meep", help="default meep")
    m.add_argument("--region", choices=[str(v) for v in Region], default=None, help="override the preset's region")
    m.add_argument("--num-bins", type=int, default=None, help="override the preset's ECE bins")
    m.add_argument("--band-mm", type=float, default=None, help="width of the boundary region in mm (default 2)")
    r = p.add_argument_group("run")
    r.add_argument("--out", default=None, help="report folder (replaced as a whole); default: print the summary only")
    r.add_argument("--skip-bad", action="store_true", help="list bad cases as skipped instead of stopping")
    r.add_argument("--workers", type=int, default=None, help="reader threads (default: every core)")
    r.add_argument("--no-figures", action="store_true", help="skip the PNGs (faster; no matplotlib needed)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (2: bad input, the message on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.merge:
            if args.pred or args.compare:
                parser.error("--merge takes written reports; do not combine it with --pred / --compare.")
            report = merge_reports(args.merge, args.out, figures=not args.no_figures)
        else:
            if not (args.pred and args.label):
                parser.error("--pred and --label are required (or --merge REPORT ...).")
            report = calibration_report(
                args.pred,
                args.label,
                args.out,
                preset=args.preset,
                region=args.region,
                num_bins=args.num_bins,
                band_mm=args.band_mm,
                compare=args.compare,
                pred_glob=args.pred_glob,
                label_glob=args.label_glob,
                pred_pattern=args.pred_pattern,
                label_pattern=args.label_pattern,
                spacing=args.spacing,
                pred_order=args.pred_order,
                label_order=args.label_order,
                npz_key=args.npz_key,
                ignore_index=args.ignore_index,
                skip_bad=args.skip_bad,
                workers=args.workers,
                progress=not args.no_progress,
                figures=not args.no_figures,
            )
    except (CaseError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cols = ["metric", "n", "mean", "std", "pooled"]
    print(report.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if report.out:
        print(f"wrote {report.out}/report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
