"""`dipir`: the DiPIR optimizer (any of its presets) as a lighting estimator.

Options (all optional): `preset` (a name from dipir.optim.presets, default "dipir"), `model` (a diffusers
folder, a hub id or "tiny"; default SD 2.1 base), `iterations`, `resolution` ([width, height]),
`spp`, `seed`, `height` (rows of the env-map grid the lighting is optimized on, returned on and
evaluated on; width is 2x; default the preset's, 128), `out_dir` (keep the optimizer's outputs under
`<out_dir>/<scene id>`; default a temporary folder), `cache_dir` (models, LoRAs, concepts), `device`,
`personalize` (PersonalizeConfig fields, e.g. `{concept_count_outdoor: 200}`), `guidance`
(GuidanceConfig fields, e.g. `{prompt: "a photo of a {cls}"}`; the preset's kind stays the preset's).

`estimate` returns what the optimization produced (`DipirOptimizer.insertion_result`): the map(s) of
its final render, the tone curves and the material overrides, so evaluation renders the image the
optimizer made. The class declares itself seeded, model-using and keeping its outputs (`traits`),
which is all the batch runner and the CLI know of it.

Every estimator of a process shares one pipeline per model (`shared_pipeline`): presets and seeds
differ only by the LoRA adapter, which each run installs and the next one frees.

Requirements follow the preset: the diffusion presets need a model; `oracle-guidance` needs the
scene's ground-truth env map instead.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from dipir.errors import DipirError
from dipir.estimators.base import EstimateInterrupted, EstimatorTraits, InsertionResult, Requirements
from dipir.optim.version import OUTPUT_VERSION
from dipir.scene.contract import Scene

OPTIONS = {"preset", "model", "iterations", "resolution", "spp", "max_depth", "seed", "height", "out_dir",
           "cache_dir", "device", "personalize", "guidance"}
# Guidance fields the optimizer derives (use_lora, seed) or the preset owns (kind) are not options.
GUIDANCE_DERIVED = {"kind", "use_lora", "seed"}


class DipirEstimator:
    name = "dipir"
    traits = EstimatorTraits(seeded=True, model=True, outputs="optimizer",
                             output_artifacts=(("losses", "losses.csv"),), render_size=True,
                             render_depth=True, output_version=OUTPUT_VERSION)

    def __init__(self, preset: str = "dipir", model: str | None = None, iterations: int | None = None,
                 resolution: tuple[int, int] | None = None, spp: int | None = None, max_depth: int | None = None,
                 seed: int | None = None, height: int | None = None, out_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None, device: str | None = None):
        from dipir.optim.presets import get_preset

        cfg = get_preset(preset)
        if iterations is not None:
            cfg = dataclasses.replace(cfg, iterations=int(iterations))
        if seed is not None:
            cfg = dataclasses.replace(cfg, seed=int(seed))
        render = cfg.render
        if resolution is not None:
            render = dataclasses.replace(render, width=int(resolution[0]), height=int(resolution[1]))
        if spp is not None:
            render = dataclasses.replace(render, spp=int(spp))
        if max_depth is not None:
            render = dataclasses.replace(render, max_depth=int(max_depth))
        if height is not None:
            render = dataclasses.replace(render, envmap_height=int(height), envmap_width=2 * int(height))
        self.cfg = dataclasses.replace(cfg, render=render).validate()
        self.preset = preset
        self.model = model
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.cache_dir = cache_dir
        self.device = device
        self.requires = Requirements(model=True) if self.cfg.needs_model() else Requirements(ground_truth=True)
        self._pipe = None  # loaded once, reused across scenes

    @classmethod
    def from_options(cls, options: dict) -> "DipirEstimator":
        extra = sorted(set(options) - OPTIONS)
        if extra:
            raise DipirError(f"unknown option for estimator 'dipir' (allowed: {', '.join(sorted(OPTIONS))})",
                             field=f"options.{extra[0]}")
        opts = dict(options)
        for key in ("iterations", "spp", "max_depth", "seed", "height"):
            v = opts.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "seed" else 1)):
                raise DipirError(f"expected a positive integer, got {v!r}", field=f"options.{key}")
        res = opts.get("resolution")
        if res is not None and (not isinstance(res, (list, tuple)) or len(res) != 2
                                or not all(isinstance(v, int) and v >= 8 for v in res)):
            raise DipirError(f"expected [width, height] integers >= 8, got {res!r}", field="options.resolution")
        sections = {k: opts.pop(k) for k in ("personalize", "guidance") if opts.get(k) is not None}
        est = cls(**opts)
        for section, overrides in sections.items():
            est.cfg = with_section(est.cfg, section, overrides)
        return est

    @classmethod
    def config_identity(cls, options: dict) -> dict:
        """The optimizer config these options resolve to (the preset's definition, the defaults, the
        overrides) as plain data: task ids hold it (with the output version its traits declare), so
        editing a preset, a default or what the code makes of them makes the results it produced
        stale instead of current. Builds nothing heavy (no model)."""
        return dataclasses.asdict(cls.from_options(options).cfg)

    def _pipeline(self):
        """The process's one pipeline for this model (shared by every preset and seed), with the
        LoRA adapter of the previous run freed: each run starts from the base weights."""
        if not self.cfg.needs_model():
            return None
        if self._pipe is None:
            from dipir.guidance.models import DEFAULT_MODEL, default_device, shared_pipeline
            from dipir.optim.optimizer import TINY_MODEL, load_model

            model = self.model or DEFAULT_MODEL
            key = (model, self.device or default_device(), str(self.cache_dir) if model == TINY_MODEL else None)
            self._pipe = shared_pipeline(key, lambda: load_model(model, device=self.device, cache_dir=self.cache_dir))
        from dipir.guidance.adapters import release_adapters

        release_adapters(self._pipe)
        return self._pipe

    def estimate(self, scene: Scene) -> InsertionResult:
        from dipir.estimators.common import finalize
        from dipir.optim.optimizer import run_dipir

        t0 = time.perf_counter()
        pipe = self._pipeline()
        with tempfile.TemporaryDirectory(prefix="dipir-") as tmp:
            out = (self.out_dir / scene.id) if self.out_dir is not None else Path(tmp)
            res = run_dipir(scene, self.cfg, out, pipe=pipe, cache_dir=self.cache_dir, preset=self.preset)
        if res.status == "interrupted":
            raise EstimateInterrupted(f"DiPIR interrupted after {res.iterations_done} iterations", scene.source)
        if res.status != "done":
            raise DipirError(f"DiPIR stopped early ({res.status}): {res.error}", scene.source)
        result = res.insertion_result(extras={
            "preset": self.preset, "timings": res.timings, "final_losses": res.final_losses,
            "out_dir": str(out) if self.out_dir is not None else None})
        result.envmap = finalize(result.envmap)
        if result.envmap_shadow is not None:
            result.envmap_shadow = finalize(result.envmap_shadow)
        result.seconds = time.perf_counter() - t0
        return result


class DipirTinyEstimator(DipirEstimator):
    """`dipir-tiny`: DiPIR with the tiny random-weight model whatever the suite's `model` — the
    control that shows what a trained prior adds (same optimizer, a prior that knows nothing)."""

    name = "dipir-tiny"
    traits = dataclasses.replace(DipirEstimator.traits, own_model="tiny")

    @classmethod
    def from_options(cls, options: dict) -> "DipirTinyEstimator":
        return super().from_options({**options, "model": cls.traits.own_model})


def with_section(cfg, section: str, overrides):
    """The `personalize` / `guidance` option: fields of that part of the config replaced (e.g.
    `concept_count_outdoor`, `steps`; `prompt`), each a clear error when unknown or invalid."""
    if not isinstance(overrides, dict):
        raise DipirError(f"expected a mapping of {section} settings, got {overrides!r}", field=f"options.{section}")
    part = getattr(cfg, section)
    known = {f.name for f in dataclasses.fields(part)} - (GUIDANCE_DERIVED if section == "guidance" else set())
    bad = sorted(set(overrides) - known)
    if bad:
        raise DipirError(f"unknown {section} setting (allowed: {', '.join(sorted(known))})",
                         field=f"options.{section}.{bad[0]}")
    try:
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(part, **overrides)}).validate()
    except DipirError as err:
        field = err.field or section
        if not field.startswith(section):  # PersonalizeConfig names bare fields; GuidanceConfig prefixes its own
            field = f"{section}.{field}"
        raise DipirError(err.message, field=f"options.{field}") from None
    return cfg
