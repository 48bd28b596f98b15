# Copyright (c) monai_meep developers.
# Licensed under the Apache License, Version 2.0 (the "License").
"""The paper's application, built on the :mod:`monai_meep` library (as MONAI keeps ``monai.apps``).

- :mod:`~monai_meep.apps.data`: the WMH-challenge and LA (UA-MT / Decathlon) loaders, splits and the paper's
  transforms;
- :mod:`~monai_meep.apps.phantoms`: the WMH and LA phantoms, written in those layouts
  (``python -m monai_meep.apps.phantoms``);
- :mod:`~monai_meep.apps.loss_factory`: the paper's losses by name, its lambdas and task names;
- :mod:`~monai_meep.apps.bundle`: the Python side of the bundles in ``bundles/`` (config helpers, input checks,
  uncertainty baselines, running a bundle workflow);
- :mod:`~monai_meep.apps.experiments`: the experiment runner (``python -m monai_meep.apps.experiments``).

The dependency rule (docs/architecture.md): the application imports the library, never the other way round
(``tests/test_architecture.py`` checks it). Nothing is imported here: import the subpackage you need.
"""
