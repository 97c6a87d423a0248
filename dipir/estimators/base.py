"""The LightingEstimator interface every method shares (DiPIR, its presets, baselines, oracle, file).

An estimator turns a Scene into an `InsertionResult`: what the method produced for inserting the
object. For a lighting estimator that is one HDR equirect map in the scene's world, in Mitsuba's
envmap convention (docs/FORMATS.md). A method that also produced other parts of the image formation
(DiPIR: tone curves, a refined material, a separate shadow map when fusion is off) returns those too,
and evaluation renders exactly that (dipir/evaluation/insertion.py `render_result`), so a task is scored on
the image the method made, not on its map alone.

Each estimator class declares what it needs (`requires`, per instance: scene data, a GPU, a model)
and how the orchestrator must build and keep it (`traits`, per class, readable without building it):
see `EstimatorTraits`. The batch runner and the CLI read those; they never test a method's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np

from dipir.errors import DipirError
from dipir.scene.contract import Scene


@dataclass
class InsertionResult:
    """What an estimator returns from `estimate(scene)`.

    `envmap` is the method's lighting estimate: what the sphere metrics score and what lights the
    object. The other fields are optional; a baseline sets only `envmap`.
    """

    envmap: np.ndarray  # (H, W, 3) float32, linear HDR, no wrap column, row 0 = +Y (top)
    sg: dict | None = None  # {"colors": (N,3), "axes": (N,3), "sharpness": (N,)} as lists
    seconds: float = 0.0  # wall time of the estimate itself
    extras: dict = field(default_factory=dict)  # method-specific diagnostics (plain data)
    # The map the shadow ratio β is rendered with, when the method kept one apart (DiPIR without
    # env-map fusion); None: `envmap` lights both the object and its shadow.
    envmap_shadow: np.ndarray | None = None
    tone: dict | None = None  # dipir.rendering.tonemap.ToneCurves.params(); None: identity curves
    material: dict | None = None  # render material overrides {base_color: [3], roughness: [1], ...}
    # True: render on the map's own grid (the one it was optimized on) instead of the renderer's
    # configured env-map resolution, so it is evaluated at the resolution it was made for.
    native_grid: bool = False


# The name the baselines and users' estimators have always used.
Lighting = InsertionResult


class EstimateInterrupted(DipirError):
    """The estimate was stopped by the user (Ctrl-C); its partial outputs are kept."""


@dataclass(frozen=True)
class Requirements:
    """What an estimator needs; a batch run skips inapplicable (scene, method) pairs with a reason."""

    ground_truth: bool = False  # the scene must carry a ground-truth env map
    lidar: bool = False  # the scene must carry LiDAR points
    gpu: bool = False  # a CUDA device
    model: bool = False  # a diffusion model (path, hub id, or "tiny")

    def unmet(self, scene: Scene, has_gpu: bool, has_model: bool) -> str | None:
        """The reason this scene cannot be estimated, or None when it can."""
        if self.ground_truth and scene.envmap is None:
            return "needs a ground-truth env map; the scene has none"
        if self.lidar and scene.points is None:
            return "needs LiDAR points; the scene has none"
        if self.gpu and not has_gpu:
            return "needs a CUDA GPU"
        if self.model and not has_model:
            return "needs a diffusion model"
        return None


@dataclass(frozen=True)
class EstimatorTraits:
    """How an estimator class is built and what of it is kept, declared on the class (`traits`).

    seeded:   stochastic: built with option `seed` (one instance per task seed); without it the
              estimate is a function of the scene and the task seed only reaches the renderer.
    model:    built with options `model` (the suite's diffusion model) and `cache_dir` (models,
              LoRAs, concept images shared by a run); the model id is part of each task's identity.
    outputs:  built with option `out_dir`; what it writes under `<out_dir>/<scene id>` is kept as
              this subfolder of the task's output folder (None: it writes nothing of its own).
    output_artifacts: {artifact name: path inside that subfolder} listed in the task's artifacts.
    render_size: takes option `resolution` ([width, height] of the images it works on); `dipir
              insert` passes its render size, so the image it optimizes is the image it renders.
    own_model: (with model) the model it always uses, whatever the suite's; that model, not the
              suite's, is then part of each task's identity.
    render_depth: takes option `max_depth` (the path depth it renders through while estimating);
              suites, `dipir insert` and `dipir estimate` give it the depth they score with
              (`render_options`; options that set one win), so the image it optimizes is formed
              as the image that is scored.
    output_version: the version of what the class's code makes of a scene and its options. Bump it
              with any change that changes its results (the shared `common.py` and `sun_detect.py`
              included) and say what changed where the class is defined; tests/test_output_versions.py
              fails until you do. Task ids hold it from 2 on (a class at 1 keeps the ids it had before
              versions existed), so a resumed run computes the method's tasks again instead of
              keeping the older code's results as current.
    input_paths: the options that name files or folders the estimate reads (the `file` method's folder
              of maps): task ids hold their contents (a folder's: every file in it), not only the path,
              so a map replaced in place makes the results it gave stale instead of current.
    """

    seeded: bool = False
    model: bool = False
    outputs: str | None = None
    output_artifacts: tuple[tuple[str, str], ...] = ()
    render_size: bool = False
    own_model: str | None = None
    render_depth: bool = False
    output_version: int = 1
    input_paths: tuple[str, ...] = ()

    def __post_init__(self):
        v = self.output_version
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DipirError(f"expected a positive integer, got {v!r}", field="traits.output_version")


class LightingEstimator(Protocol):
    name: str
    requires: Requirements
    traits: ClassVar[EstimatorTraits]  # optional; EstimatorTraits() when absent
    # Optional classmethod config_identity(options) -> dict: the configuration the options resolve to
    # (presets and defaults included), as plain data; task ids hold it (dipir.estimators.config_identity).

    def estimate(self, scene: Scene) -> InsertionResult: ...


def traits_of(estimator_or_class) -> EstimatorTraits:
    """The declared traits of an estimator (class or instance); the defaults when it declares none."""
    t = getattr(estimator_or_class, "traits", None)
    return t if isinstance(t, EstimatorTraits) else EstimatorTraits()
