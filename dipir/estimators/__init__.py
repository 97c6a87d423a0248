"""Lighting estimators, registered by name explicitly.

`ESTIMATORS` maps a method name to a factory `(options: dict) -> estimator`; `build_estimator(name,
options)` is what the CLI and the batch runner call. DiPIR and its presets register from their own
module (dipir_estimator.py, the optimizer issue) through the "dipir" entry.
"""

from __future__ import annotations

import importlib
from typing import Callable

from dipir.errors import DipirError
from dipir.estimators.base import LightingEstimator, Lighting, Requirements


def _lazy(module: str, cls: str) -> Callable[[dict], LightingEstimator]:
    """A factory that imports its estimator's module only when it is built, so `dipir --help` and
    suite planning never import torch or Mitsuba."""

    def build(options: dict) -> LightingEstimator:
        return getattr(importlib.import_module(module), cls).from_options(options)

    build.__qualname__ = build.__name__ = f"build_{cls}"
    return build


ESTIMATORS: dict[str, Callable[[dict], LightingEstimator]] = {
    "oracle": _lazy("dipir.estimators.oracle", "OracleEstimator"),
    "file": _lazy("dipir.estimators.file", "FileEstimator"),
    "constant": _lazy("dipir.estimators.constant", "ConstantEstimator"),
    "khan06": _lazy("dipir.estimators.khan06", "Khan06Estimator"),
    "sunsky": _lazy("dipir.estimators.sunsky", "SunSkyEstimator"),
    "sh2": _lazy("dipir.estimators.sh2", "SH2Estimator"),
    # the optimizer and its presets
    "dipir": _lazy("dipir.estimators.dipir_estimator", "DipirEstimator"),
}


def _dipir_tiny(options: dict) -> LightingEstimator:
    """DiPIR with the tiny random-weight model whatever the suite's model (the no-prior control)."""
    return ESTIMATORS["dipir"]({**options, "model": "tiny"})


ESTIMATORS["dipir-tiny"] = _dipir_tiny


def build_estimator(name: str, options: dict | None = None) -> LightingEstimator:
    """The estimator `name` configured by `options` (plain data from a suite YAML)."""
    if name not in ESTIMATORS:
        raise DipirError(f"unknown method {name!r} (have: {', '.join(sorted(ESTIMATORS))})", field="method")
    if options is not None and not isinstance(options, dict):
        raise DipirError(f"expected a mapping of options, got {type(options).__name__}", field="options")
    return ESTIMATORS[name](dict(options or {}))


__all__ = ["ESTIMATORS", "Lighting", "LightingEstimator", "Requirements", "build_estimator"]
