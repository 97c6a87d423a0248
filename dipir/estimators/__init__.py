"""Lighting estimators, registered by name explicitly.

`ESTIMATORS` maps a method name to its class as "module:Class" (imported only when used, so
`dipir --help` and suite planning never import torch or Mitsuba). A method may also be named
`module:attribute` directly: a class (or factory) importable where it runs, a user's own estimator.
`build_estimator(name, options)` is what the CLI and the batch runner call; `estimator_traits(name)`
is what they read to know how to build it and what to keep (dipir/estimators/base.py).
"""

from __future__ import annotations

import importlib

from dipir.errors import DipirError
from dipir.estimators.base import (
    EstimateInterrupted,
    EstimatorTraits,
    InsertionResult,
    Lighting,
    LightingEstimator,
    Requirements,
    traits_of,
)

ESTIMATORS: dict[str, str] = {
    "oracle": "dipir.estimators.oracle:OracleEstimator",
    "file": "dipir.estimators.file:FileEstimator",
    "constant": "dipir.estimators.constant:ConstantEstimator",
    "khan06": "dipir.estimators.khan06:Khan06Estimator",
    "sunsky": "dipir.estimators.sunsky:SunSkyEstimator",
    "sh2": "dipir.estimators.sh2:SH2Estimator",
    # the optimizer and its presets
    "dipir": "dipir.estimators.dipir_estimator:DipirEstimator",
    # DiPIR with the tiny random-weight model whatever the suite's model (the no-prior control)
    "dipir-tiny": "dipir.estimators.dipir_estimator:DipirTinyEstimator",
}


def _import(spec: str, field: str):
    module, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as err:
        raise DipirError(f"cannot import estimator module {module!r} ({err})", field=field) from None
    try:
        return getattr(obj, attr)
    except AttributeError:
        raise DipirError(f"module {module!r} has no attribute {attr!r}", field=field) from None


def check_method(name: str, field: str = "method") -> None:
    """A registered name or `module:attribute`; anything else is an error naming the field."""
    if ":" not in name and name not in ESTIMATORS:
        raise DipirError(f"unknown method {name!r} (have: {', '.join(sorted(ESTIMATORS))}, or module:Class)",
                         field=field)


def estimator_class(name: str, field: str = "method"):
    """The class (or factory) a method name stands for, imported."""
    check_method(name, field)
    return _import(ESTIMATORS.get(name, name), field)


def estimator_traits(name: str, field: str = "method") -> EstimatorTraits:
    """What a method declares (base.EstimatorTraits), read from its class without building it.

    An estimator that declares no traits but a class-level `requires` with `model=True` is taken
    to use the model (the rule before traits existed, kept so users' estimators keep their ids)."""
    cls = estimator_class(name, field)
    if isinstance(getattr(cls, "traits", None), EstimatorTraits):
        return cls.traits
    return EstimatorTraits(model=bool(getattr(getattr(cls, "requires", None), "model", False)))


def config_identity(name: str, options: dict, field: str = "method") -> dict | None:
    """The configuration `options` resolve to for estimator `name`, as plain data, when its class
    declares one (a `config_identity(options)` classmethod), with the class's output version from 2
    on (`EstimatorTraits.output_version`); None when it has neither. Part of task ids. A built-in
    baseline declares no config but checks its options here (its `from_options` builds nothing
    heavy), so a suite's bad option or preset fails before any task runs, not in every task."""
    cls = estimator_class(name, field)
    fn = getattr(cls, "config_identity", None)
    config = None
    if fn is not None:
        config = fn(dict(options))
    elif name in ESTIMATORS and hasattr(cls, "from_options"):
        try:
            cls.from_options(dict(options))
        except (TypeError, ValueError) as err:  # e.g. float("bright"): the option of the wrong type
            raise DipirError(f"an option of {name!r} has the wrong type ({err})") from None
    version = estimator_traits(name, field).output_version
    if version > 1:  # version 1 adds nothing: ids from before versions existed stay valid
        config = {**(config or {}), "output_version": version}
    return config


def render_options(traits: EstimatorTraits, render, options: dict | None = None) -> dict:
    """An estimator's options as it is built for the render settings it will be scored with: what
    it takes from them (its traits say which), under the `options` the user gave (those win)."""
    derived = {"max_depth": int(render.max_depth)} if traits.render_depth else {}
    return {**derived, **(options or {})}


def build_estimator(name: str, options: dict | None = None, field: str = "method") -> LightingEstimator:
    """The estimator `name` configured by `options` (plain data from a suite YAML or the CLI).

    Registered estimators validate their options in `from_options`; a `module:attribute` without
    one is called with the options as keyword arguments."""
    if options is not None and not isinstance(options, dict):
        raise DipirError(f"expected a mapping of options, got {type(options).__name__}", field="options")
    cls = estimator_class(name, field)
    opts = dict(options or {})
    factory = getattr(cls, "from_options", None)
    return factory(opts) if factory is not None else cls(**opts)


__all__ = ["ESTIMATORS", "EstimateInterrupted", "EstimatorTraits", "InsertionResult", "Lighting",
           "LightingEstimator", "Requirements", "build_estimator", "check_method", "estimator_class",
           "estimator_traits", "render_options", "traits_of"]
