"""Lighting estimators, registered by name explicitly.

`ESTIMATORS` maps a method name to a factory `(options: dict) -> estimator`; `build_estimator(name,
options)` is what the CLI and the batch runner call. DiPIR and its presets register from their own
module (dipir_estimator.py, the optimizer issue) through the "dipir" entry.
"""

from __future__ import annotations

from typing import Callable

from dipir.errors import DipirError
from dipir.estimators.base import LightingEstimator, Lighting, Requirements


def _oracle(options: dict):
    from dipir.estimators.oracle import OracleEstimator

    return OracleEstimator.from_options(options)


def _file(options: dict):
    from dipir.estimators.file import FileEstimator

    return FileEstimator.from_options(options)


def _constant(options: dict):
    from dipir.estimators.constant import ConstantEstimator

    return ConstantEstimator.from_options(options)


def _khan06(options: dict):
    from dipir.estimators.khan06 import Khan06Estimator

    return Khan06Estimator.from_options(options)


def _sunsky(options: dict):
    from dipir.estimators.sunsky import SunSkyEstimator

    return SunSkyEstimator.from_options(options)


def _sh2(options: dict):
    from dipir.estimators.sh2 import SH2Estimator

    return SH2Estimator.from_options(options)


def _dipir(options: dict):
    from dipir.estimators.dipir_estimator import DipirEstimator

    return DipirEstimator.from_options(options)


ESTIMATORS: dict[str, Callable[[dict], LightingEstimator]] = {
    "oracle": _oracle,
    "file": _file,
    "constant": _constant,
    "khan06": _khan06,
    "sunsky": _sunsky,
    "sh2": _sh2,
    "dipir": _dipir,  # the optimizer and its presets (dipir/estimators/dipir_estimator.py)
}


def build_estimator(name: str, options: dict | None = None) -> LightingEstimator:
    """The estimator `name` configured by `options` (plain data from a suite YAML)."""
    if name not in ESTIMATORS:
        raise DipirError(f"unknown method {name!r} (have: {', '.join(sorted(ESTIMATORS))})", field="method")
    options = dict(options or {})
    if not isinstance(options, dict):
        raise DipirError("expected a mapping of options", field="options")
    return ESTIMATORS[name](options)


__all__ = ["ESTIMATORS", "Lighting", "LightingEstimator", "Requirements", "build_estimator"]
