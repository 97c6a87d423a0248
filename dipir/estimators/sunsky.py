"""`sunsky`: an outdoor sun + Preetham sky fitted to the visible sky of the background.

Sky model: Preetham, Shirley, Smits 1999, "A Practical Analytic Model for Daylight" (SIGGRAPH),
implemented here from the paper's formulas: the Perez et al. 1993 luminance distribution
F(θ, γ) = (1 + A e^{B / cos θ}) (1 + C e^{D γ} + E cos² γ) for Y and the x, y chromaticities, with the
turbidity-linear coefficients of the paper's Appendix A.2, the zenith luminance
Y_z = (4.0453 T - 4.9710) tan χ - 0.2155 T + 2.4192, χ = (4/9 - T/120)(π - 2 θ_s), and the zenith
chromaticity polynomials of Appendix A.2; Yxy -> XYZ -> linear sRGB (IEC 61966-2-1 matrix).

Estimate:
1. Each background pixel gets its world direction through the scene camera (the background is a
   perspective crop). "Up" is the proxy plane's normal.
2. Sky pixels: above the horizon (elevation > `min_elevation_deg`) and bright: linear luminance at
   least `sky_quantile` of the above-horizon pixels (the sky is the bright part of an outdoor crop).
3. Sun: the clipped blob above the horizon with the most glare (sRGB value >= `saturation` in every
   channel, or in one channel while `peak_ratio` x brighter than the median above-horizon pixel: a
   low, orange sun) is the visible sun only when its size, shape, saturation and context say so
   (`sun_detect.find_sun`: compact, whole in the frame, the only large clipped thing, in a sky
   brighter than the ground; the checks and the reason go to `extras["sun_check"]`). Then its
   direction is the blob's mean direction. Otherwise the sun direction is the one whose Preetham sky
   best explains the visible sky's brightness gradient (a grid search over the upper hemisphere;
   `extras["sun_source"]` says "sky-only fit"); with no usable sky it falls back to 45° elevation
   behind the camera and a default clear sky (`sun_source` "fallback: no usable sky ...", the reason
   in `extras["sky_fallback"]`). A scene whose sky is not brighter than its ground (indoors, night)
   gets no sun lobe at all.
4. The sky: turbidity T from a small grid and a per-channel scale (closed-form least squares) fitted to
   the sky pixels away from the sun (clipped pixels excluded).
5. The sun's intensity cannot be read from clipped LDR pixels; it is set from the fitted sky with a
   clear-sky prior: sun irradiance at normal incidence = `sun_to_sky` x the sky's horizontal
   irradiance (default 4, typical of clear skies), white. The sun is a normalized spherical Gaussian
   lobe about 1.5 texels wide, so a map of any size holds its full energy.
6. Below the horizon: the mean linear colour of the visible ground pixels (or 0.2 x sky irradiance / π
   when none is visible), a uniform Lambertian ground.
"""

from __future__ import annotations

import time

import numpy as np

from dipir.errors import DipirError
from dipir.estimators.base import EstimatorTraits, Lighting, Requirements
from dipir.estimators.common import (
    area_resize,
    check_number,
    check_options,
    finalize,
    load_background_srgb,
    map_size,
    pixel_directions,
)
from dipir.estimators.sun_detect import SunCheck, find_sun
from dipir.rendering.hdr import LUMA, equirect_directions, solid_angles
from dipir.rendering.srgb import srgb_to_linear
from dipir.scene.contract import Scene

# Preetham et al. 1999, Appendix A.2: Perez coefficients [A, B, C, D, E] = M @ [T, 1].
_PEREZ_Y = np.array([[0.1787, -1.4630], [-0.3554, 0.4275], [-0.0227, 5.3251], [0.1206, -2.5771], [-0.0670, 0.3703]])
_PEREZ_x = np.array([[-0.0193, -0.2592], [-0.0665, 0.0008], [-0.0004, 0.2125], [-0.0641, -0.8989], [-0.0033, 0.0452]])
_PEREZ_y = np.array([[-0.0167, -0.2608], [-0.0950, 0.0092], [-0.0079, 0.2102], [-0.0441, -1.6537], [-0.0109, 0.0529]])
# Zenith chromaticity: x_z = [T², T, 1] @ M @ [θs³, θs², θs, 1].
_ZENITH_x = np.array([[0.00166, -0.00375, 0.00209, 0.0], [-0.02903, 0.06377, -0.03202, 0.00394],
                      [0.11693, -0.21196, 0.06052, 0.25886]])
_ZENITH_y = np.array([[0.00275, -0.00610, 0.00317, 0.0], [-0.04214, 0.08970, -0.04153, 0.00516],
                      [0.15346, -0.26756, 0.06670, 0.26688]])
_XYZ_TO_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                         [0.0556434, -0.2040259, 1.0572252]])


def _perez(coef: np.ndarray, cos_theta: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    A, B, C, D, E = coef
    return (1 + A * np.exp(B / cos_theta)) * (1 + C * np.exp(D * gamma) + E * np.cos(gamma) ** 2)


def preetham_sky(dirs: np.ndarray, up: np.ndarray, sun: np.ndarray, turbidity: float) -> np.ndarray:
    """Linear sRGB sky radiance (..., 3) of the Preetham model (absolute scale: kcd/m² luminance),
    for view directions above the horizon (others are evaluated at the horizon)."""
    T = float(turbidity)
    cos_t = np.clip(dirs @ up, 0.01, 1.0)  # the Perez form diverges below the horizon
    cos_ts = float(np.clip(sun @ up, 0.01, 1.0))
    theta_s = np.arccos(cos_ts)
    gamma = np.arccos(np.clip(dirs @ sun, -1, 1))
    chi = (4 / 9 - T / 120) * (np.pi - 2 * theta_s)
    Yz = (4.0453 * T - 4.9710) * np.tan(chi) - 0.2155 * T + 2.4192
    tv, sv = np.array([T * T, T, 1.0]), np.array([theta_s ** 3, theta_s ** 2, theta_s, 1.0])
    xz, yz = tv @ _ZENITH_x @ sv, tv @ _ZENITH_y @ sv
    out = []
    for zen, M in ((Yz, _PEREZ_Y), (xz, _PEREZ_x), (yz, _PEREZ_y)):
        coef = M @ np.array([T, 1.0])
        out.append(zen * _perez(coef, cos_t, gamma) / _perez(coef, np.array(1.0), np.array(theta_s)))
    Y, x, y = out
    y = np.maximum(y, 1e-6)
    xyz = np.stack([x / y * Y, Y, (1 - x - y) / y * Y], axis=-1)
    return np.clip(xyz @ _XYZ_TO_SRGB.T, 0, None)


def _fibonacci_hemisphere(n: int, up: np.ndarray, min_elev: float) -> np.ndarray:
    """~n roughly uniform directions above `min_elev` radians of elevation."""
    i = np.arange(n) + 0.5
    z = np.sin(min_elev) + (1 - np.sin(min_elev)) * i / n
    phi = np.pi * (1 + 5 ** 0.5) * i
    r = np.sqrt(1 - z * z)
    a = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 0, 1.0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    return (r * np.cos(phi))[:, None] * a + (r * np.sin(phi))[:, None] * b + z[:, None] * up


def _scale_fit(model: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-channel least-squares scale of model -> obs and the relative residual."""
    s = (model * obs).sum(axis=0) / np.maximum((model * model).sum(axis=0), 1e-20)
    res = ((model * s - obs) ** 2).sum() / max((obs ** 2).sum(), 1e-20)
    return s, float(res)


# Turbidities the Preetham fits hold for (the default grid's span): below 2 or above ~10 parts of the
# model's sky come out black.
TURBIDITY_RANGE = (2.0, 10.0)
# Bounds of the numeric options (check_number's keywords).
_NUMBER_OPTIONS = {
    "min_elevation_deg": dict(lo=-90.0, hi=90.0),
    "sky_quantile": dict(lo=0.0, hi=1.0),
    "saturation": dict(lo=0.0, hi=1.0, lo_open=True),  # an sRGB value; 0 would count every pixel as clipped
    "peak_ratio": dict(lo=0.0, lo_open=True),
    "sun_to_sky": dict(lo=0.0),  # 0: no sun lobe; finalize would zero a negative lobe into a black hole
    "fit_pixels": dict(lo=1, integer=True),
    "sun_candidates": dict(lo=1, integer=True),
}


class SunSkyEstimator:
    name = "sunsky"
    requires = Requirements()
    # 1: what it has made since before versions existed. Bump with a change to its results and
    # say what changed here (base.EstimatorTraits.output_version).
    traits = EstimatorTraits(output_version=1)

    def __init__(self, height: int, min_elevation_deg: float = 2.0, sky_quantile: float = 0.5,
                 saturation: float = 0.98, peak_ratio: float = 8.0, sun_to_sky: float = 4.0, fit_pixels: int = 160,
                 turbidities: tuple[float, ...] = (2.0, 3.0, 4.5, 6.0, 8.0, 10.0), sun_candidates: int = 400):
        self.height, self.width = height, 2 * height
        self.min_elev = np.radians(min_elevation_deg)
        self.sky_quantile, self.saturation, self.sun_to_sky = sky_quantile, saturation, sun_to_sky
        self.peak_ratio = peak_ratio
        self.fit_pixels, self.turbidities, self.sun_candidates = fit_pixels, tuple(turbidities), sun_candidates

    @classmethod
    def from_options(cls, options: dict) -> "SunSkyEstimator":
        keys = {"height", "min_elevation_deg", "sky_quantile", "saturation", "peak_ratio", "sun_to_sky", "fit_pixels",
                "turbidities", "sun_candidates"}
        check_options(cls.name, options, keys)
        kw = {k: check_number(options[k], f"options.{k}", **bounds) for k, bounds in _NUMBER_OPTIONS.items()
              if k in options}
        if "turbidities" in options:
            ts = options["turbidities"]
            if not isinstance(ts, (list, tuple)) or not ts:
                raise DipirError(f"expected a non-empty list of turbidities, got {ts!r}", field="options.turbidities")
            kw["turbidities"] = tuple(float(check_number(t, f"options.turbidities[{i}]", *TURBIDITY_RANGE))
                                      for i, t in enumerate(ts))
        return cls(map_size(options).height, **kw)

    def estimate(self, scene: Scene) -> Lighting:
        t0 = time.perf_counter()
        up = np.asarray(scene.plane.normal, dtype=np.float64)
        up /= np.linalg.norm(up)
        srgb = load_background_srgb(scene)
        h, w = srgb.shape[:2]
        scale = min(1.0, self.fit_pixels / max(h, w))
        sh, sw = max(2, round(h * scale)), max(2, round(w * scale))
        srgb_s = area_resize(srgb, sh, sw)
        sh, sw = srgb_s.shape[:2]
        lin = srgb_to_linear(srgb_s).astype(np.float64)
        dirs = pixel_directions(scene.camera, sw, sh).astype(np.float64)
        lum = lin @ LUMA
        elev_sin = dirs @ up
        above = elev_sin > np.sin(self.min_elev)
        extras: dict = {"sun_visible": False}

        # The sun: a clipped blob at full resolution, when its size, shape and context say it is the
        # sun (sun_detect); otherwise the sky-only fit below places it.
        sun, daylight = None, True
        if above.any():
            fdirs = pixel_directions(scene.camera, w, h).astype(np.float64)
            sun, daylight, check = find_sun(srgb, srgb_to_linear(srgb) @ LUMA, fdirs, up, self.min_elev,
                                            scene.camera.fov_y_deg,
                                            SunCheck(saturation=self.saturation, peak_ratio=self.peak_ratio))
            extras["sun_check"] = check
            if sun is not None:
                extras.update(sun_visible=True, sun_blob_pixels=check["pixels"])

        # Sky pixels for the fit: above the horizon, bright, not clipped.
        sky = above & ((srgb_s < self.saturation).any(axis=-1))
        if sky.any():
            sky &= lum >= np.quantile(lum[above], self.sky_quantile)
        obs, sky_dirs = lin[sky], dirs[sky]
        if sun is not None and len(obs):
            keep = sky_dirs @ sun < np.cos(np.radians(5.0))  # the glare around the sun is not sky
            obs, sky_dirs = obs[keep], sky_dirs[keep]

        if len(obs) > 2000:  # the grid search needs few samples; a fixed stride keeps it deterministic
            idx = np.linspace(0, len(obs) - 1, 2000).astype(int)
            obs, sky_dirs = obs[idx], sky_dirs[idx]
        best, fallback = None, None
        if len(obs) >= 8:
            cands = [sun] if sun is not None else list(_fibonacci_hemisphere(self.sun_candidates, up, self.min_elev))
            for s_dir in cands:
                for T in self.turbidities:
                    model = preetham_sky(sky_dirs, up, s_dir, T)
                    s, res = _scale_fit(model, obs)
                    if best is None or res < best[0]:
                        best = (res, s_dir, T, s)
        if best is None:
            # No usable sky: a clear sky with the sun 45° up, behind the camera, scaled to the image.
            fallback = ("no background pixel above the horizon" if not above.any() else
                        f"{len(obs)} usable sky pixels (above the horizon, bright, not clipped; 8 needed)")
            fwd = scene.camera.to_world[:3, 2]
            back = -(fwd - (fwd @ up) * up)
            back = back / np.linalg.norm(back) if np.linalg.norm(back) > 1e-6 else np.array([1.0, 0, 0])
            s_dir = sun if sun is not None else (back + up) / np.sqrt(2)
            T = 3.0
            ref = preetham_sky(up[None], up, s_dir, T)[0]
            s = np.full(3, float(lin.mean()) / max(float(ref.mean()), 1e-12))
            best = (float("nan"), s_dir, T, s)
        # Labelled once the fit is known: with no usable sky nothing was fitted, and the record says so.
        if sun is not None:
            extras["sun_source"] = "visible blob"
        elif fallback:
            extras["sun_source"] = ("fallback: no usable sky (default clear sky, sun 45° up)" if daylight
                                    else "none: not a daylight sky (no usable sky, no sun lobe)")
        else:
            extras["sun_source"] = "sky-only fit" if daylight else "none: not a daylight sky (sky-only fit, no sun lobe)"
        extras["sky_fallback"] = fallback  # why the sky is the fallback clear sky; None when it was fitted
        res, sun_dir, T, chan_scale = best
        sun_dir = sun_dir / np.linalg.norm(sun_dir)
        extras.update(sun_direction=sun_dir.tolist(), turbidity=T,
                      sky_fit_residual=None if res != res else res,  # None: no sky to fit
                      sky_scale=np.asarray(chan_scale).tolist())

        H, W = self.height, self.width
        md = equirect_directions(H, W).astype(np.float64)
        env = preetham_sky(md, up, sun_dir, T) * chan_scale
        sa = solid_angles(H, W).astype(np.float64)
        horizontal = float(((env @ LUMA) * np.clip(md @ up, 0, None) * sa).sum())  # sky E_h (luminance)
        below = md @ up < 0
        ground_px = (~above) & (elev_sin < 0)
        ground = lin[ground_px].mean(axis=0) if ground_px.any() else np.full(3, 0.2 * horizontal / np.pi)
        env[below] = ground

        # The sun: a normalized SG lobe whose integral is the sun's irradiance at normal incidence.
        texel = np.pi / (H - 1)
        sharp = 1.0 / (1.5 * texel) ** 2  # lobe exp(-(1 - cos) * sharp): ~1.5 texels wide
        lobe = np.exp(-(1 - np.clip(md @ sun_dir, -1, 1)) * sharp) * (md @ up > 0)
        norm = float((lobe * sa).sum())
        e_sun = self.sun_to_sky * horizontal if daylight else 0.0  # indoors / at night: no sun
        if norm > 0 and sun_dir @ up > 0:
            env += (lobe / norm * e_sun)[..., None] * np.ones(3)
        extras["sun_irradiance"] = e_sun
        return Lighting(envmap=finalize(env), seconds=time.perf_counter() - t0, extras=extras)
