"""A toy `module:Class` estimator for the cluster tests: it counts its constructions (its "model
load") and its estimates in files, so a test sees how often each actor built it."""

from __future__ import annotations

import os

from helpers.pipeline import CountingEstimator

RENDER_16 = {"width": 16, "height": 16, "spp": 2, "max_depth": 2, "envmap_height": 16, "envmap_width": 32}


class LoadCountingEstimator(CountingEstimator):
    """CountingEstimator that also appends `<pid>` to `loads` each time it is constructed."""

    def __init__(self, loads: str, counter: str, **kw):
        with open(loads, "a") as f:
            f.write(f"{os.getpid()}\n")
        super().__init__(counter=counter, **kw)
