"""The differentiable insertion renderer on Mitsuba 3 (DiPIR's image formation, docs/DESIGN.md steps 2–3).

One `InsertionRenderer` per scene builds its Mitsuba scenes ONCE; each `render()` call only writes the
env maps (and optionally the material) into the scene parameters, so the LLVM / CUDA kernels are
compiled on the first call and reused afterwards.

What a call renders (h × w, `cfg.spp` samples per pixel):

- **foreground** `I_fg = PathTrace(X, L_fg, D)`: the object alone under `L_fg`, Mitsuba's `prb`
  integrator (Path Replay Backpropagation, MIS between emitter and BSDF sampling), `D` =
  `cfg.max_depth` surface interactions (Mitsuba `max_depth` = D + 1, since Mitsuba counts the
  emitter hit as a vertex). Emitters are hidden, so a pixel holds the object's radiance times its
  coverage; `fg` is that divided by the coverage V, i.e. the object's radiance where V > 0 (0 where
  V = 0).
- **shadow ratio** `β = PathTrace(X ∪ P, L_sh, 1) / PathTrace(P, L_sh, 1)` on the plane: a small
  direct-lighting estimator written in Dr.Jit (`_shadow_pass`) traces each camera sample to the plane
  once and evaluates numerator and denominator from the SAME emitter and cosine-BSDF samples (MIS,
  power heuristic); the two differ only in whether the object blocks the shadow ray. So β is exactly
  1 wherever no sample is blocked, and its noise in the shadow is correlated. The Lambertian albedo
  cancels in the ratio. Samples whose camera ray hits the object or nothing count in neither sum;
  pixels with no plane sample get β = 1. Gradients flow by plain reverse-mode AD (the estimator has
  no loop, so its graph is small).
- **mask** `V`: the fraction of each pixel where the first hit is the object. It depends only on
  geometry, so it is computed once at construction from stratified ray casts (8 × 8 per pixel).

Material: `render(..., material={...})` overrides the object's principled BSDF `base_color` (3),
`roughness`, `metallic` with torch values, differentiably (PRB); `emission` (3, needs
`RenderConfig(emissive=True)`) is added to fg as the directly seen emitted radiance (not traced as a
light: the object's glow on itself and on the plane is not rendered).

`render_separately()` renders the same quantities the obvious way — three `mi.render` calls with
`prb` on X, X ∪ P and P (max_depth 2 for the last two) plus a mask ray cast per call — for the
together-vs-separately benchmark and as a cross-check of `_shadow_pass` in the tests.

Gradients reach torch through `@dr.wrap(source="torch", target="drjit")`. Each call takes a seed;
the PRB gradient pass uses a different one (`seed + 2**30`), as Mitsuba recommends, and the shadow
pass its own (`seed + 2**31`); seeds are taken mod 2^32 and passed opaquely, so a new seed never
recompiles a kernel.

Env maps: (He, We, 3) linear, in Mitsuba's envmap convention (`dipir.rendering.hdr`). Mitsuba's envmap stores
them as (He, We + 2, 3) with one wrap column on each side; `pad_envmap` writes that layout. An
(He, We, 3) array written directly would be accepted and render wrongly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dipir.rendering.config import RenderConfig
from dipir.scene.assets import load_object_mesh, object_to_world, rotation_between
from dipir.scene.contract import Camera, Scene
from dipir.scene.mesh import Mesh

__all__ = ["RenderConfig", "RenderOutput", "InsertionRenderer", "render_insertion", "pad_envmap",
           "MATERIAL_KEYS"]

# Differentiable material overrides accepted by `render(..., material=...)`.
MATERIAL_KEYS = ("base_color", "roughness", "metallic", "emission")
_GRAD_SEED_OFFSET = 2**30  # PRB's gradient pass: seed + 2^30 (mod 2^32)
_SHADOW_SEED_OFFSET = 2**31  # the shadow pass's own sampler: seed + 2^31, so its noise is not the fg's


def _seed(seed: int, offset: int = 0) -> int:
    return (int(seed) + offset) % 2**32


@dataclass
class RenderOutput:
    fg: torch.Tensor  # (h, w, 3) linear object radiance (0 where mask = 0)
    shadow_ratio: torch.Tensor  # (h, w, 3) β, 1 where there is no plane
    mask: torch.Tensor  # (h, w, 1) object coverage V in [0, 1]
    extras: dict = field(default_factory=dict)  # e.g. shadow numerator / denominator

    def numpy(self) -> dict:
        return {"fg": _np(self.fg), "shadow_ratio": _np(self.shadow_ratio), "mask": _np(self.mask)}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def pad_envmap(env):
    """(H, W, 3) -> (H, W + 2, 3) in Mitsuba's envmap `data` layout: a wrap column on each side."""
    if isinstance(env, torch.Tensor):
        return torch.cat([env[:, -1:], env, env[:, :1]], dim=1)
    env = np.asarray(env, dtype=np.float32)
    return np.concatenate([env[:, -1:], env, env[:, :1]], axis=1)


def film_size(camera: Camera, width: int, height: int) -> tuple[int, int]:
    """(width, height) of a film with square pixels that covers what `camera` resized to width × height
    sees: that size itself when its pixels stay square, else one side grown (never shrunk) until they
    are. A render size of another aspect than the scene's stretches the background on one axis;
    Mitsuba's pinhole has square pixels, so it renders this film and the result is resampled to the
    requested size, stretched as the background is (rendered straight at that size, the object and
    its shadow were misplaced against the photo: a 96 × 64 scene at 64 × 64 put the object 4 % of the
    width off)."""
    K = camera.resized(width, height).K()
    r = K[0, 0] / K[1, 1]  # a pixel's height over its width, in angle
    if abs(r - 1) <= 1e-3:
        return width, height
    return (max(1, round(width / r)), height) if r < 1 else (width, max(1, round(height * r)))


def _sensor_dict(mi, cam: Camera, spp: int) -> dict:
    """Mitsuba perspective sensor for a pinhole camera. Intrinsics become a vertical fov (from f_y;
    Mitsuba's perspective camera has square pixels, so f_x is not used) and principal-point offsets
    in film fractions: a film position p looks where the centred camera looks at p + offset, so
    offset_x = (w/2 − c_x)/w and offset_y = (h/2 − c_y)/h."""
    w, h = cam.width, cam.height
    fx, fy, cx, cy = cam.K()[0, 0], cam.K()[1, 1], cam.K()[0, 2], cam.K()[1, 2]
    del fx
    fov_y = math.degrees(2 * math.atan(0.5 * h / fy))
    return {
        "type": "perspective",
        "fov_axis": "y",
        "fov": fov_y,
        "principal_point_offset_x": float((w / 2 - cx) / w),
        "principal_point_offset_y": float((h / 2 - cy) / h),
        "near_clip": 1e-3,
        "far_clip": 1e5,
        "to_world": mi.ScalarTransform4f(np.asarray(cam.to_world, dtype=np.float64).tolist()),
        "film": {"type": "hdrfilm", "width": w, "height": h, "pixel_format": "rgb",
                 "rfilter": {"type": "box"}, "sample_border": False},
        "sampler": {"type": "independent", "sample_count": spp},
    }


MATERIAL_FILE_KEYS = ("base_color", "roughness", "metallic", "emission", "emitter")


def _bsdf_dict(material: dict, source=None) -> dict:
    """Mitsuba principled BSDF from a material mapping; bad values raise DipirError naming
    `object.material.<key>` in the scene file."""
    from dipir.errors import DipirError

    m = dict(material or {})

    def fail(key, msg):
        raise DipirError(msg, source, f"object.material.{key}")

    for key in m:
        if key not in MATERIAL_FILE_KEYS:
            fail(key, f"unknown material key (allowed: {', '.join(MATERIAL_FILE_KEYS)})")

    def number(key, default):
        v = m.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            fail(key, f"expected a number in [0, 1], got {v!r}")
        return float(v)

    c = m.get("base_color", [0.6, 0.6, 0.6])
    try:
        rgb = np.broadcast_to(np.asarray(c, dtype=np.float64), 3)
    except (TypeError, ValueError):
        fail("base_color", f"expected 3 numbers in [0, 1], got {c!r}")
    if not np.all(np.isfinite(rgb)) or rgb.min() < 0 or rgb.max() > 1:
        fail("base_color", f"expected 3 numbers in [0, 1], got {c!r}")
    return {"type": "principled", "base_color": {"type": "rgb", "value": [float(x) for x in rgb]},
            "roughness": number("roughness", 0.5), "metallic": number("metallic", 0.0)}


class InsertionRenderer:
    """Renders fg, shadow ratio and mask for one scene; see the module docstring."""

    def __init__(self, scene: Scene, cfg: RenderConfig | None = None, mesh: Mesh | None = None):
        from dipir.errors import DipirError
        from dipir.rendering.mitsuba_setup import load_mitsuba

        self.cfg = cfg = cfg or RenderConfig()
        if cfg.width < 1 or cfg.height < 1 or cfg.spp < 1 or cfg.max_depth < 1:
            raise DipirError("width, height, spp and max_depth must be >= 1", field="render")
        self.mi = mi = load_mitsuba(cfg.variant)
        import drjit as dr

        self.dr = dr
        self.scene = scene
        self.camera = scene.camera.resized(cfg.width, cfg.height)  # the output's (its pixels may not be square)
        self.film = film_size(scene.camera, cfg.width, cfg.height)  # what Mitsuba renders: square pixels
        self.film_camera = film_camera = scene.camera.resized(*self.film)
        self.mesh = mesh if mesh is not None else load_object_mesh(scene.object)
        self.to_world = object_to_world(scene.object, scene.plane)
        self.device = torch.device("cuda") if mi.variant().startswith("cuda") else torch.device("cpu")
        blank = mi.Bitmap(np.full((cfg.envmap_height, cfg.envmap_width, 3), 0.5, dtype=np.float32))

        # Foreground scene: the object alone, emitters hidden (pixels hold radiance × coverage).
        fg_dict = {
            "type": "scene",
            "integrator": {"type": "prb", "max_depth": cfg.max_depth + 1, "hide_emitters": True},
            "sensor": _sensor_dict(mi, film_camera, cfg.spp),
            "env": {"type": "envmap", "bitmap": blank},
        }
        if cfg.with_object:
            fg_dict["object"] = self._mi_mesh("object", with_bsdf=True)
        self.scene_fg = mi.load_dict(fg_dict)
        self.params_fg = mi.traverse(self.scene_fg)
        self.params_fg.keep([k for k in self.params_fg.keys()
                             if k == "env.data" or k in self._MATERIAL_PARAM.values()])

        # Shadow scene: object and plane (visibility and the plane's first hit only).
        self.obj_sh = self._mi_mesh("object_shadow", with_bsdf=False) if cfg.with_object else None
        self.plane = mi.load_dict(self._plane_dict())
        sh_dict = {
            "type": "scene",
            "integrator": {"type": "prb", "max_depth": 2, "hide_emitters": True},
            "sensor": _sensor_dict(mi, film_camera, cfg.spp),
            "env": {"type": "envmap", "bitmap": blank},
            "plane": self.plane,
        }
        if cfg.with_object:
            sh_dict["object"] = self.obj_sh
        self.scene_sh = mi.load_dict(sh_dict)
        self.params_sh = mi.traverse(self.scene_sh)
        self.params_sh.keep(["env.data"])
        self.env_sh = self.scene_sh.emitters()[0]
        self._sampler = mi.load_dict({"type": "independent"})
        self._scene_plane = None  # built on demand by render_separately
        self.mask = self._render_mask(cfg.mask_spp_sqrt, seed=0)

    def _to_output(self, t: torch.Tensor) -> torch.Tensor:
        """(film h, film w, C) → (h, w, C): linear resampling (antialiased where it shrinks) of
        per-pixel means, differentiable; the identity when the film is the output."""
        h, w = self.cfg.height, self.cfg.width
        if tuple(t.shape[:2]) == (h, w):
            return t
        x = t.permute(2, 0, 1)[None]
        y = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return y[0].permute(1, 2, 0)

    # -- scene pieces ----------------------------------------------------------------------------
    def _mi_mesh(self, name: str, with_bsdf: bool):
        mi, m = self.mi, self.mesh
        v = np.asarray(m.vertices, dtype=np.float64)
        vw = v @ self.to_world[:3, :3].T + self.to_world[:3, 3]
        has_n = m.normals is not None
        props = mi.Properties()
        props["bsdf"] = mi.load_dict(_bsdf_dict(m.material, self.scene.source) if with_bsdf else {"type": "diffuse"})
        mesh = mi.Mesh(name, len(vw), len(m.faces), props, has_vertex_normals=has_n)
        p = mi.traverse(mesh)
        p["vertex_positions"] = mi.Float(vw.astype(np.float32).ravel())
        p["faces"] = mi.UInt32(np.asarray(m.faces, dtype=np.uint32).ravel())
        if has_n:
            nrm = np.asarray(m.normals, dtype=np.float64) @ np.linalg.inv(self.to_world[:3, :3])
            nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
            p["vertex_normals"] = mi.Float(nrm.astype(np.float32).ravel())
        p.update()
        return mesh

    def _plane_dict(self) -> dict:
        pl = self.scene.plane
        m = np.eye(4)
        m[:3, :3] = rotation_between(np.array([0.0, 0, 1]), np.asarray(pl.normal, float)) * (pl.size / 2)
        m[:3, 3] = pl.point
        return {"type": "rectangle", "to_world": self.mi.ScalarTransform4f(m.tolist()),
                "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [self.cfg.plane_albedo] * 3}}}

    # -- primary rays ----------------------------------------------------------------------------
    def _camera_rays(self, spp: int, seed: int, stratified_sqrt: int | None = None):
        """One ray per sample, samples of a pixel consecutive. Returns (ray, pixel index, sampler)."""
        mi, dr = self.mi, self.dr
        w, h = self.film
        n = w * h * spp
        sampler = self._sampler
        sampler.seed(dr.opaque(mi.UInt32, seed) if not isinstance(seed, mi.UInt32) else seed, n)
        idx = dr.arange(mi.UInt32, n)
        pix = idx // spp
        if stratified_sqrt:
            k = idx % spp
            jitter = mi.Vector2f((mi.Float(k % stratified_sqrt) + 0.5) / stratified_sqrt,
                                 (mi.Float(k // stratified_sqrt) + 0.5) / stratified_sqrt)
        else:
            jitter = sampler.next_2d()
        pos = mi.Vector2f(mi.Float(pix % w), mi.Float(pix // w)) + jitter
        film = pos / mi.ScalarVector2f(w, h)
        sensor = self.scene_sh.sensors()[0]
        ray, _ = sensor.sample_ray(0.0, 0.5, film, mi.Point2f(0.5))
        return ray, pix, sampler

    def _render_mask(self, sqrt_spp: int, seed: int) -> torch.Tensor:
        mi, dr, cfg = self.mi, self.dr, self.cfg
        spp = sqrt_spp * sqrt_spp
        if self.obj_sh is None:
            return torch.zeros(cfg.height, cfg.width, 1, device=self.device)
        w, h = self.film
        with dr.suspend_grad():
            ray, pix, _ = self._camera_rays(spp, seed, stratified_sqrt=sqrt_spp)
            si = self.scene_sh.ray_intersect(ray)
            hit = si.is_valid() & (si.shape == mi.ShapePtr(self.obj_sh))
            acc = dr.zeros(mi.Float, w * h)
            dr.scatter_reduce(dr.ReduceOp.Add, acc, dr.select(hit, 1.0 / spp, 0.0), pix)
            m = np.array(acc, dtype=np.float32).reshape(h, w, 1)
        return self._to_output(torch.from_numpy(np.clip(m, 0, 1)).to(self.device)).clamp(0, 1)

    # -- the shadow estimator --------------------------------------------------------------------
    def _shadow_pass(self, spp: int, seed):
        """Numerator and denominator of β as flat (h·w·3) Float arrays (differentiable w.r.t. the
        shadow env map via plain AD). See the module docstring."""
        mi, dr = self.mi, self.dr
        ray, pix, sampler = self._camera_rays(spp, seed)
        si = self.scene_sh.ray_intersect(ray)
        on_plane = si.is_valid() & (si.shape == mi.ShapePtr(self.plane))
        # Shade the side of the plane the camera sees.
        n = dr.select(dr.dot(si.n, ray.d) < 0, si.n, -si.n)
        em = self.env_sh
        inv_pi = 1.0 / math.pi

        # Emitter sampling.
        ds, w_em = em.sample_direction(si, sampler.next_2d(), on_plane)
        cos_e = dr.maximum(dr.dot(n, ds.d), 0.0)
        pdf_b_of_e = cos_e * inv_pi
        mis_e = dr.select(ds.pdf > 0, dr.square(ds.pdf) / (dr.square(ds.pdf) + dr.square(pdf_b_of_e)), 0.0)
        c_e = w_em * (cos_e * inv_pi * mis_e)
        vis_e = ~self.scene_sh.ray_test(si.spawn_ray(ds.d), on_plane & (cos_e > 0))

        # Cosine-weighted (Lambertian BSDF) sampling.
        local = mi.warp.square_to_cosine_hemisphere(sampler.next_2d())
        d_b = mi.Frame3f(n).to_world(local)
        pdf_b = local.z * inv_pi
        si_e = dr.zeros(mi.SurfaceInteraction3f)
        si_e.wi = -d_b
        l_b = em.eval(si_e, on_plane)
        ds_b = dr.zeros(mi.DirectionSample3f)
        ds_b.d = d_b
        pdf_e_of_b = em.pdf_direction(si, ds_b, on_plane)
        mis_b = dr.select(pdf_b > 0, dr.square(pdf_b) / (dr.square(pdf_b) + dr.square(pdf_e_of_b)), 0.0)
        c_b = l_b * mis_b  # f·cos/pdf = 1 for the cosine-sampled Lambertian (albedo cancels)
        vis_b = ~self.scene_sh.ray_test(si.spawn_ray(d_b), on_plane & (pdf_b > 0))

        den = dr.select(on_plane, c_e + c_b, 0.0)
        num = dr.select(on_plane, dr.select(vis_e, c_e, 0.0) + dr.select(vis_b, c_b, 0.0), 0.0)
        npx = self.film[0] * self.film[1]
        num_acc = dr.zeros(mi.Float, npx * 3)
        den_acc = dr.zeros(mi.Float, npx * 3)
        for c in range(3):  # per-pixel means
            dr.scatter_reduce(dr.ReduceOp.Add, num_acc, num[c] / spp, pix * 3 + c)
            dr.scatter_reduce(dr.ReduceOp.Add, den_acc, den[c] / spp, pix * 3 + c)
        return num_acc, den_acc

    # -- public API ------------------------------------------------------------------------------
    def _check_env(self, env: torch.Tensor, name: str) -> torch.Tensor:
        want = (self.cfg.envmap_height, self.cfg.envmap_width, 3)
        if not isinstance(env, torch.Tensor):
            env = torch.as_tensor(np.asarray(env, dtype=np.float32))
        if tuple(env.shape) != want:
            raise ValueError(f"{name}: expected env map of shape {want}, got {tuple(env.shape)}")
        return env.to(device=self.device, dtype=torch.float32)

    def _material_tensors(self, material: dict | None) -> list[torch.Tensor]:
        if not material:
            return []
        out = []
        for k, v in material.items():
            if k not in MATERIAL_KEYS:
                raise ValueError(f"unknown material key {k!r} (allowed: {', '.join(MATERIAL_KEYS)})")
            if k == "emission" and not self.cfg.emissive:
                raise ValueError("material['emission'] needs RenderConfig(emissive=True)")
            t = torch.as_tensor(v, dtype=torch.float32, device=self.device).reshape(-1)
            want = 3 if k in ("base_color", "emission") else 1
            if t.numel() != want:
                raise ValueError(f"material[{k!r}]: expected {want} values, got {t.numel()}")
            out.append(t)
        return out

    _MATERIAL_PARAM = {"base_color": "object.bsdf.base_color.value", "roughness": "object.bsdf.roughness.value",
                       "metallic": "object.bsdf.metallic.value"}

    def render(self, env_fg: torch.Tensor, env_shadow: torch.Tensor | None = None, seed: int = 0,
               spp: int | None = None, material: dict | None = None) -> RenderOutput:
        """Render fg, shadow ratio and mask; differentiable w.r.t. both env maps (and `material`:
        torch values for any of base_color (3), roughness, metallic, emission (3; needs
        cfg.emissive)). Use a different `seed` per optimization step."""
        mi, dr, cfg = self.mi, self.dr, self.cfg
        spp = int(spp or cfg.spp)
        env_fg = self._check_env(env_fg, "env_fg")
        env_shadow = env_fg if env_shadow is None else self._check_env(env_shadow, "env_shadow")
        mat_keys = list(material.keys()) if material else []
        mat_vals = self._material_tensors(material)
        w, h = self.film

        @dr.wrap(source="torch", target="drjit")
        def _render(env_fg_pad, env_sh_pad, *mat):
            self.params_fg["env.data"] = env_fg_pad
            for k, v in zip(mat_keys, mat):
                if k == "emission":
                    continue  # added in torch below
                key = self._MATERIAL_PARAM[k]
                a = v.array  # flat Float, AD-attached
                if k == "base_color":
                    self.params_fg[key] = mi.Color3f(*(dr.gather(mi.Float, a, i) for i in range(3)))
                else:
                    self.params_fg[key] = a
            self.params_fg.update()
            self.params_sh["env.data"] = env_sh_pad
            self.params_sh.update()
            fg = mi.render(self.scene_fg, self.params_fg, seed=_seed(seed), seed_grad=_seed(seed, _GRAD_SEED_OFFSET), spp=spp)
            num, den = self._shadow_pass(spp, _seed(seed, _SHADOW_SEED_OFFSET))
            return fg, mi.TensorXf(num, (h, w, 3)), mi.TensorXf(den, (h, w, 3))

        fg, num, den = _render(pad_envmap(env_fg), pad_envmap(env_shadow), *mat_vals)
        out = self._finish(*map(self._to_output, (fg, num, den)), self.mask)
        if "emission" in mat_keys:
            # Emission is the radiance the camera sees leaving the object, added to fg here. It is not
            # a Mitsuba area emitter: with hide_emitters, Mitsuba ends every camera path whose first
            # hit is an emitter, which would also drop the object's reflected env light. So the
            # object's light on itself (concave parts) and on the plane is not traced.
            e = mat_vals[mat_keys.index("emission")]
            out.fg = out.fg + (self.mask > 0).to(out.fg.dtype) * e
        return out

    def _finish(self, fg, num, den, mask) -> RenderOutput:
        safe_mask = mask.clamp_min(1e-6)
        fg = torch.where(mask > 0, fg / safe_mask, torch.zeros_like(fg))
        has_plane = den > 0
        beta = torch.where(has_plane, num / torch.where(has_plane, den, torch.ones_like(den)), torch.ones_like(num))
        return RenderOutput(fg=fg, shadow_ratio=beta, mask=mask, extras={"shadow_num": num, "shadow_den": den})

    def render_separately(self, env_fg: torch.Tensor, env_shadow: torch.Tensor | None = None, seed: int = 0,
                          spp: int | None = None) -> RenderOutput:
        """The same quantities from independent Mitsuba renders (benchmark baseline / cross-check):
        prb on X (fg), prb max_depth 2 on X ∪ P and on P (β's numerator and denominator, same seed),
        and a fresh mask ray cast; each is its own torch↔Dr.Jit call."""
        mi, dr, cfg = self.mi, self.dr, self.cfg
        spp = int(spp or cfg.spp)
        env_fg = self._check_env(env_fg, "env_fg")
        env_shadow = env_fg if env_shadow is None else self._check_env(env_shadow, "env_shadow")
        if self._scene_plane is None:
            self._scene_plane = mi.load_dict({
                "type": "scene",
                "integrator": {"type": "prb", "max_depth": 2, "hide_emitters": True},
                "sensor": _sensor_dict(mi, self.film_camera, cfg.spp),
                "env": {"type": "envmap", "bitmap": mi.Bitmap(np.full((cfg.envmap_height, cfg.envmap_width, 3), 0.5, dtype=np.float32))},
                "plane": self._plane_dict(),
            })
            self._params_plane = mi.traverse(self._scene_plane)
            self._params_plane.keep(["env.data"])

        def one(scene, params):
            @dr.wrap(source="torch", target="drjit")
            def _r(env_pad):
                params["env.data"] = env_pad
                params.update()
                return mi.render(scene, params, seed=_seed(seed), seed_grad=_seed(seed, _GRAD_SEED_OFFSET), spp=spp)
            return _r

        fg, num, den = (self._to_output(t) for t in (one(self.scene_fg, self.params_fg)(pad_envmap(env_fg)),
                                                      one(self.scene_sh, self.params_sh)(pad_envmap(env_shadow)),
                                                      one(self._scene_plane, self._params_plane)(pad_envmap(env_shadow))))
        mask = self._render_mask(int(round(math.sqrt(spp))) or 1, _seed(seed))
        # Pixels where the object is seen: the plane-only render still sees the plane there.
        den = torch.where(mask > 0, torch.zeros_like(den), den)
        return self._finish(fg, num, den, mask)


def render_insertion(scene: Scene, envmap_np: np.ndarray, cfg: RenderConfig | None = None, seed: int = 0,
                     renderer: InsertionRenderer | None = None) -> dict:
    """Non-differentiable convenience: render `envmap_np` (any size; area-resampled to the config's
    env resolution) into the scene's background. Returns numpy arrays: composite (h, w, 3) sRGB in
    [0, 1], fg (h, w, 3) linear, shadow_ratio (h, w, 3), mask (h, w, 1)."""
    from dipir.rendering.composite import composite
    from dipir.rendering.hdr import resample_equirect

    cfg = cfg or RenderConfig()
    r = renderer or InsertionRenderer(scene, cfg)
    env = resample_equirect(np.asarray(envmap_np, dtype=np.float32), r.cfg.envmap_height, r.cfg.envmap_width)
    bg = load_background(scene, r.cfg.width, r.cfg.height)
    with torch.no_grad():
        out = r.render(torch.from_numpy(env), seed=seed)
        comp = composite(torch.from_numpy(bg).to(r.device), out)
    res = out.numpy()
    res["composite"] = _np(comp)
    return res


def load_background(scene: Scene, width: int, height: int) -> np.ndarray:
    """The scene's background as sRGB float32 (height, width, 3) in [0, 1], resized (Lanczos) to the
    render size."""
    from dipir.io import read_rgb

    return read_rgb(scene.background, size=(width, height), named=scene.source or scene.background,
                    field="background")
