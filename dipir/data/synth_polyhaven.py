"""Procedural HDRIs with known lighting, written as .exr / .hdr with a JSON sidecar of the truth.

- "sky": a sky gradient (zenith blue to a bright horizon), a darker ground, and a sun disk of
  angular radius `sun_radius_deg` at a known direction.
- "indoor": a dim room (floor, walls, ceiling by elevation) with 2–3 rectangular area lights on the
  ceiling and one window near the horizon; the brightest is listed first.
Directions are in Mitsuba's envmap convention (+Y up, u = 0.5 looks along +Z; dipir.rendering.hdr), as unit
vectors and as (elevation, azimuth u·360) in degrees, in the sidecar `<name>.json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dipir.rendering.hdr import equirect_directions

CONVENTION = "mitsuba envmap: +Y up, image centre (u=0.5) looks along +Z, u=0.25 is +X, row 0 is +Y"


@dataclass
class SynthHDRIConfig:
    width: int = 512
    height: int = 256
    sun_radius_deg: float = 1.5
    sun_radiance: float = 2000.0
    sun_elevation_deg: tuple = (15.0, 60.0)  # range the sun's elevation is drawn from
    kinds: tuple = ("sky", "indoor")
    formats: tuple = ("exr", "hdr")


def direction(elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    """Unit direction at elevation above the horizon and azimuth = u · 360 (Mitsuba convention)."""
    th = np.radians(90.0 - elevation_deg)
    ph = np.radians(azimuth_deg)
    return np.array([np.sin(th) * np.sin(ph), np.cos(th), -np.sin(th) * np.cos(ph)])


def sky_hdri(cfg: SynthHDRIConfig, sun_dir: np.ndarray) -> np.ndarray:
    d = equirect_directions(cfg.height, cfg.width).astype(np.float64)
    y = d[..., 1:2]
    zenith, horizon, ground = np.array([0.25, 0.45, 0.9]), np.array([0.9, 0.95, 1.0]), np.array([0.12, 0.1, 0.08])
    t = np.clip(y, 0, 1) ** 0.5
    img = np.where(y >= 0, (1 - t) * horizon + t * zenith, ground * (1 + 0.5 * np.clip(y + 1, 0, 1)))
    cos = np.clip(d @ sun_dir, -1, 1)
    ang = np.degrees(np.arccos(cos))
    # Soft-edged disk (half a texel of falloff) so the sun survives resampling.
    edge = 0.5 * 180.0 / (cfg.height - 1)
    w = np.clip((cfg.sun_radius_deg + edge - ang) / (2 * edge), 0, 1)[..., None]
    img = img + w * cfg.sun_radiance * np.array([1.0, 0.95, 0.85])
    return img.astype(np.float32)


def indoor_hdri(cfg: SynthHDRIConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    d = equirect_directions(cfg.height, cfg.width).astype(np.float64)
    y = d[..., 1:2]
    wall, floor_, ceil = np.array([0.35, 0.3, 0.25]), np.array([0.15, 0.1, 0.07]), np.array([0.5, 0.5, 0.5])
    img = np.where(y < -0.3, floor_, np.where(y > 0.6, ceil, wall)) * 0.5
    lights = []
    n = int(rng.integers(2, 4))
    for i in range(n + 1):
        window = i == n
        el = rng.uniform(5, 20) if window else rng.uniform(50, 80)
        az = rng.uniform(0, 360)
        half_el, half_az = (12.0, 15.0) if window else (rng.uniform(4, 8), rng.uniform(6, 12))
        radiance = (rng.uniform(20, 40) if window else rng.uniform(60, 200)) * (2.0 if i == 0 else 1.0)
        c = direction(el, az)
        # A patch spanning ±half_el in elevation and ±half_az (measured on the sphere) in azimuth.
        elev = np.degrees(np.arcsin(np.clip(y[..., 0], -1, 1)))
        phi = np.degrees(np.arctan2(d[..., 0], -d[..., 2])) % 360
        daz = (phi - az + 180) % 360 - 180
        mask = (np.abs(elev - el) <= half_el) & (np.abs(daz) * np.cos(np.radians(elev)) <= half_az)
        color = np.array([1.0, 0.9, 0.75]) if not window else np.array([0.8, 0.9, 1.0])
        img = np.where(mask[..., None], radiance * color, img)
        lights.append({"kind": "window" if window else "area", "direction": c.tolist(), "elevation_deg": float(el),
                       "azimuth_deg": float(az), "half_extent_deg": [float(half_el), float(half_az)],
                       "radiance": float(radiance)})
    lights.sort(key=lambda L: -L["radiance"] * L["half_extent_deg"][0] * L["half_extent_deg"][1])
    return img.astype(np.float32), lights


def write_hdris(out: str | Path, count: int = 4, seed: int = 0, config: SynthHDRIConfig | None = None) -> list[Path]:
    """Write `count` procedural HDRIs (alternating kinds and formats) with `<name>.json` sidecars."""
    from dipir.rendering.hdr import write_hdr

    cfg = config or SynthHDRIConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        rng = np.random.default_rng(seed * 1000 + i)
        kind = cfg.kinds[i % len(cfg.kinds)]
        fmt = cfg.formats[(i // len(cfg.kinds)) % len(cfg.formats)]
        name = f"synth_{kind}_{seed:03d}_{i:03d}"
        truth: dict = {"name": name, "kind": kind, "seed": seed * 1000 + i, "convention": CONVENTION,
                       "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}}
        if kind == "sky":
            el, az = float(rng.uniform(*cfg.sun_elevation_deg)), float(rng.uniform(0, 360))
            sun = direction(el, az)
            img = sky_hdri(cfg, sun)
            truth.update({"sun_direction": sun.tolist(), "sun_elevation_deg": el, "sun_azimuth_deg": az,
                          "sun_angular_radius_deg": cfg.sun_radius_deg, "sun_radiance": cfg.sun_radiance})
        elif kind == "indoor":
            img, lights = indoor_hdri(cfg, rng)
            truth.update({"lights": lights, "dominant_direction": lights[0]["direction"]})
        else:
            raise ValueError(f"unknown HDRI kind {kind!r}")
        path = write_hdr(out / f"{name}.{fmt}", img)
        (out / f"{name}.json").write_text(json.dumps(truth, indent=1))
        paths.append(path)
    return paths
