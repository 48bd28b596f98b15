# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Command line: ``python -m monai_meep.apps.experiments <command> [options]``.

Commands register themselves here through ``add_parser(subparsers)`` functions so each lives in its own module:
``compare`` (Dice vs Dice + MEEP on a phantom, the README's main job) and ``table1`` (the paper's Table 1 runner).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module providing ``add_parser(subparsers)``; the parser's ``func(args)`` returns an exit code
COMMANDS = {
    "compare": "monai_meep.apps.experiments.compare",
    "table1": "monai_meep.apps.experiments.table1",
    "domain-shift": "monai_meep.apps.experiments.domain_shift",
    "stats": "monai_meep.apps.experiments.stats",
    "convergence": "monai_meep.apps.experiments.convergence",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monai_meep.apps.experiments",
        description="Experiments run through the monai_meep MONAI bundles.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    sub.required = True
    for name, module in COMMANDS.items():
        try:
            importlib.import_module(module).add_parser(sub)
        except ModuleNotFoundError as e:
            if e.name != module:  # a real missing dependency inside the module: surface it
                raise
            sub.add_parser(name, help=f"(not available: {module} is not installed)")
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.error(f"command {args.command!r} is not available in this installation.")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
