# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""Experiments driven through the MONAI bundles: ``python -m monai_meep.apps.experiments <command>``.

``compare`` is the main job (Dice vs Dice + MEEP on a phantom, side by side); ``table1`` runs the paper's Table 1,
``domain-shift``, ``convergence`` and ``stats`` (paired statistics of a results folder) the studies beside it. Each
run goes through :func:`monai_meep.apps.bundle.runner.run_bundle`, so the experiments use the bundles' pipeline.
"""
