"""Is the sun visible in an LDR background, and where? (used by `sunsky`)

Every clipped region is not the sun: windows and lamps indoors, street lamps at night, a bright
overcast or hazy sky, snow and sunlit walls all clip. The sun in an LDR photograph is one compact,
roughly round clipped blob (its disc plus the clipped circumsolar aureole: a few to ~25° across),
wholly in the frame, in a daylight sky, the only large clipped thing above the horizon. So a
candidate blob (clipped in every channel, or in one channel while far brighter than the typical sky:
a low orange sun; the one with the most glare around it) is the sun only when all of:

- daylight sky: the sky (above the horizon) is brighter than the ground in view. Outdoors by day the
  sky is several times brighter than the ground (2.5-21x on the real Poly Haven crops measured);
  indoors and at night it is not (ceilings and night skies: 0.2-1.0x the floor / lit ground).
- size: at most `max_image_fraction` of the image and `max_diameter_deg` across (a hazy sky or a
  lit wall clips a fifth of the image; the sun's clipped aureole is ~18° at a median exposure).
- shape: thick, not elongated: the largest inscribed disc's radius over the radius of a disc of
  the same area (1 for a disc, 0.89 for a square, 0.51 for a 3:1 strip) at least `min_thickness`.
- whole: it does not touch the image border (a cut blob cannot be told from a bright cloud edge
  or a sunlit wall running out of the frame).
- dominant: it is at least `min_dominance` of all clipped pixels above the horizon (one sun; rooms
  and streets at night have many lamps and windows).
'Saturation' is what makes a candidate: pixels clipped in every channel (a white sun) or in one
channel while far brighter than the typical sky (a low orange sun); `saturated_fraction` reports how
much of the blob is white-clipped.

Each check's value goes into the estimator's extras (`sun_check`), with the reason in words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dipir.rendering.hdr import LUMA


@dataclass(frozen=True)
class SunCheck:
    saturation: float = 0.98  # sRGB value counted as clipped
    peak_ratio: float = 8.0  # one clipped channel counts when this x brighter than the median sky pixel
    min_sky_to_ground: float = 1.5
    min_ground_fraction: float = 0.05  # the daylight test needs this much ground in view
    max_image_fraction: float = 0.08
    max_diameter_deg: float = 30.0
    min_thickness: float = 0.55
    min_dominance: float = 0.7
    min_pixels: int = 3


def _glare_blob(clipped: np.ndarray, lum: np.ndarray) -> np.ndarray:
    """The clipped connected component with the most glare around it: all clipped pixels look
    alike in LDR, so rank components by their summed luminance blurred over ~2% of the image."""
    from scipy.ndimage import gaussian_filter, label

    lab, n = label(clipped)
    glare = gaussian_filter(lum.astype(np.float64), sigma=max(1.0, 0.02 * max(lum.shape)))
    scores = np.bincount(lab.ravel(), weights=glare.ravel(), minlength=n + 1)
    scores[0] = -1
    return lab == int(np.argmax(scores))


def find_sun(srgb: np.ndarray, lin_lum: np.ndarray, dirs: np.ndarray, up: np.ndarray, min_elev: float,
             fov_y_deg: float, cfg: SunCheck = SunCheck()) -> tuple[np.ndarray | None, bool, dict]:
    """(sun direction or None, daylight, extras) from the full-resolution background: `srgb`
    (H, W, 3) in [0, 1], its linear luminance, the pixels' world directions and the up vector.
    `daylight` is False when the scene is judged not to be under a daylight sky (no sun lobe then)."""
    from scipy.ndimage import distance_transform_edt

    h, w = lin_lum.shape
    elev = dirs @ up
    above, below = elev > np.sin(min_elev), elev < 0
    info: dict = {}
    clipped_all = (srgb >= cfg.saturation).all(axis=-1)
    typical = float(np.median(lin_lum[above])) if above.any() else 0.0
    one_channel = (srgb.max(axis=-1) >= cfg.saturation) & (lin_lum >= cfg.peak_ratio * typical)
    clipped = (clipped_all | one_channel) & above

    sky = above & ~clipped
    daylight, ratio = True, None
    if below.mean() >= cfg.min_ground_fraction and sky.any():
        ratio = float(np.median(lin_lum[sky])) / max(float(np.median(lin_lum[below])), 1e-9)
        daylight = ratio >= cfg.min_sky_to_ground
    info["sky_to_ground"] = ratio
    if not clipped.any():
        return None, daylight, {**info, "reason": "nothing clipped above the horizon"}

    blob = _glare_blob(clipped, srgb @ LUMA)
    a = int(blob.sum())
    r_eq = np.sqrt(a / np.pi)
    r_in = float(distance_transform_edt(np.pad(blob, 1))[1:-1, 1:-1].max())
    v = dirs[blob].sum(axis=0)
    v = v / np.linalg.norm(v)
    info.update(pixels=a, image_fraction=a / (h * w), diameter_deg=2 * r_eq * fov_y_deg / h,
                thickness=r_in / max(r_eq, 1e-9), dominance=a / int(clipped.sum()),
                saturated_fraction=float(clipped_all[blob].mean()),
                touches_border=bool(blob[0].any() or blob[-1].any() or blob[:, 0].any() or blob[:, -1].any()),
                direction=v.tolist())
    fails = []
    if not daylight:
        fails.append(f"not a daylight sky (sky/ground luminance {ratio:.2f} < {cfg.min_sky_to_ground})")
    if a < cfg.min_pixels:
        fails.append(f"blob of {a} pixels (< {cfg.min_pixels})")
    if info["image_fraction"] > cfg.max_image_fraction:
        fails.append(f"blob covers {info['image_fraction']:.1%} of the image (> {cfg.max_image_fraction:.0%})")
    if info["diameter_deg"] > cfg.max_diameter_deg:
        fails.append(f"blob is {info['diameter_deg']:.0f}° across (> {cfg.max_diameter_deg:.0f}°)")
    if info["thickness"] < cfg.min_thickness:
        fails.append(f"blob is elongated or thin (thickness {info['thickness']:.2f} < {cfg.min_thickness})")
    if info["touches_border"]:
        fails.append("blob runs out of the frame")
    if info["dominance"] < cfg.min_dominance:
        fails.append(f"blob is {info['dominance']:.0%} of the clipped area (< {cfg.min_dominance:.0%}: many "
                     "lights)")
    if fails:
        return None, daylight, {**info, "reason": "no sun: " + "; ".join(fails)}
    return v, daylight, {**info, "reason": f"sun: one compact clipped blob {info['diameter_deg']:.0f}° across "
                                           "in a daylight sky"}
