"""The renderer's config (torch-free, so suites, presets and task ids can read it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RenderConfig:
    """What the renderer draws and how: image size, samples, path depth, env-map resolution.

    One config for every renderer user: `dipir insert`/`estimate` build it from their options, a
    suite's `render:` parses straight into it (the GT composite and every method's scored render),
    and DiPIR's `DipirConfig.render` holds the optimizer's own (width/height 0 there: the scene's
    aspect with the long side 512).
    """

    width: int = 128
    height: int = 96
    spp: int = 16
    max_depth: int = 4  # D: surface interactions of the foreground paths
    envmap_height: int = 64
    envmap_width: int = 128
    variant: str | None = None  # None: cuda_ad_rgb with CUDA, else llvm_ad_rgb
    mask_spp_sqrt: int = 8  # mask: mask_spp_sqrt² stratified ray casts per pixel, once
    emissive: bool = False  # the object has an emission term: render(material={"emission": ...}) allowed
    plane_albedo: float = 0.5  # cancels in β; only used by render_separately
    with_object: bool = True  # False: the plane alone (checks, background-only renders)
