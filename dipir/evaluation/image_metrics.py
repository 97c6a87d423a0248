"""Image metrics for comparing a composite (or a sphere render) with its ground truth.

Every function takes float arrays (H, W, 3) and an optional boolean mask (H, W) selecting the pixels
that count; each definition names its source. Composite images are compared in display space
(sRGB-encoded values in [0, 1], what a viewer and LPIPS see); sphere renders are compared in linear
HDR (see `dipir/evaluation/sphere_metrics.py`).

Sources
- RMSE / PSNR: the usual definitions; PSNR = 10 log10(R² / MSE) with data range R (1 for [0, 1]).
- Scale-invariant RMSE: Grosse et al. 2009, "Ground truth dataset and baseline evaluations for
  intrinsic image algorithms" (ICCV), as used for lighting by StyleLight (Wang et al. 2022) and
  DiffusionLight (Phongthawee et al. 2024): the prediction is first multiplied by the closed-form
  least-squares scale α = <p, g> / <p, p>, then RMSE is taken.
- Angular error: mean over pixels of the angle between the predicted and true RGB vectors, in
  degrees (StyleLight / DiffusionLight evaluation `angular`, cos clipped to [0, 1]). Departure: they
  count a pixel whose RGB vector is zero as 0°, which rewards black pixels; here a pixel black in the
  prediction but not in the truth counts 90°, and one black in the truth is left out (see
  `angular_error_deg`).
- Normalized RMSE: DiffusionLight evaluation `norm_rmse`: each image is mapped by
  (x - P0.01) / (P99.9 - P0.01) (percentiles of that whole image, after ExpandNet), then RMSE.
- SSIM: Wang, Bovik, Sheikh, Simoncelli 2004, "Image quality assessment: from error visibility to
  structural similarity" (IEEE TIP): 11x11 Gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03, population
  statistics, computed per channel and averaged (what scikit-image's `structural_similarity` gives
  with gaussian_weights=True, sigma=1.5, use_sample_covariance=False). The SSIM map uses reflected
  borders and is averaged over all pixels, or over the mask's pixels for a region; scikit-image's
  single score instead leaves out a 5-pixel border, so the two means differ near the image's edge.
- LPIPS: Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"
  (CVPR), the `lpips` package with the AlexNet backbone (v0.1). For a region, the spatial LPIPS map
  is averaged over the mask. Available only when the AlexNet ImageNet weights are already on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------
# helpers


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    if p.ndim == 2:
        p, g = p[..., None], g[..., None]
    return p, g


def _mask(mask, shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape[:2], dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(shape[:2]):
        raise ValueError(f"mask {m.shape} does not match image {shape[:2]}")
    return m


def _empty(m: np.ndarray) -> bool:
    return not bool(m.any())


# ---------------------------------------------------------------------------------------------
# pixel-wise errors


def rmse(pred, gt, mask=None, channel_sum: bool = False) -> float:
    """Root mean squared error over the mask's pixels and the channels.

    `channel_sum=True` sums the squared error over the channels and divides by the number of pixels
    only, as the StyleLight / DiffusionLight sphere evaluation does (sqrt(3) x the plain RMSE on a
    grey error); the sphere metrics use it so their numbers sit beside the published tables.
    """
    p, g = _pair(pred, gt)
    m = _mask(mask, p.shape)
    if _empty(m):
        return float("nan")
    se = ((p - g) ** 2)[m]  # (N, C)
    return float(np.sqrt(se.sum(axis=1).mean() if channel_sum else se.mean()))


def optimal_scale(pred, gt, mask=None) -> float:
    """α minimizing ||α p - g||² over the mask: <p, g> / <p, p> (0 when p is all zero)."""
    p, g = _pair(pred, gt)
    m = _mask(mask, p.shape)
    pp = float((p[m] ** 2).sum())
    return float((p[m] * g[m]).sum() / pp) if pp > 0 else 0.0


def si_rmse(pred, gt, mask=None, channel_sum: bool = False) -> float:
    """Scale-invariant RMSE: RMSE(α p, g) with the closed-form optimal α (Grosse et al. 2009)."""
    alpha = optimal_scale(pred, gt, mask)
    return rmse(alpha * np.asarray(pred, dtype=np.float64), gt, mask, channel_sum)


def psnr(pred, gt, mask=None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; +inf for identical images."""
    p, g = _pair(pred, gt)
    m = _mask(mask, p.shape)
    if _empty(m):
        return float("nan")
    mse = float(((p - g) ** 2)[m].mean())
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def angular_error_deg(pred, gt, mask=None) -> float:
    """Mean per-pixel angle between RGB vectors, degrees, after StyleLight / DiffusionLight `angular`
    (cos clipped to [0, 1], so 90° is the worst a pixel scores).

    Departure from their convention, which counts a zero RGB vector as 0° (`nan_to_num` of the
    angle): that makes black the best answer for any pixel, so blacking out three quarters of a
    wrong-hue prediction took its error from 55° to 14°. Here a pixel black in the prediction but
    not in the truth counts 90° (no colour is as wrong as an orthogonal one), and a pixel black in
    the truth is left out (there is no colour to be right or wrong about; RMSE sees its light).
    Undefined (NaN) when no pixel of the mask is non-black in the truth."""
    p, g = _pair(pred, gt)
    m = _mask(mask, p.shape)
    pn, gn = np.linalg.norm(p, axis=-1), np.linalg.norm(g, axis=-1)
    keep = m & (gn > 0)
    if not keep.any():
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip((p * g).sum(axis=-1) / (pn * gn), 0.0, 1.0)
    ang = np.where(pn > 0, np.arccos(cos), np.pi / 2)
    return float(np.degrees(ang[keep].mean()))


def percentile_normalize(x: np.ndarray) -> np.ndarray:
    """(x - P0.01) / (P99.9 - P0.01) over the whole image (ExpandNet; DiffusionLight norm_rmse)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = np.percentile(x, 0.01), np.percentile(x, 99.9)
    return (x - lo) / (hi - lo) if hi > lo else x - lo


def normalized_rmse(pred, gt, mask=None, channel_sum: bool = False) -> float:
    """RMSE after percentile-normalizing each image separately (DiffusionLight `norm_rmse`)."""
    return rmse(percentile_normalize(pred), percentile_normalize(gt), mask, channel_sum)


# ---------------------------------------------------------------------------------------------
# SSIM (Wang et al. 2004)

SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def ssim_map(pred, gt, data_range: float = 1.0) -> np.ndarray:
    """Per-pixel SSIM (H, W), averaged over channels; Gaussian window σ = 1.5 truncated at 11x11."""
    from scipy.ndimage import gaussian_filter

    p, g = _pair(pred, gt)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    # truncate=3.5 gives radius int(3.5*1.5+0.5) = 5, the 11x11 window of the paper.
    blur = lambda a: gaussian_filter(a, sigma=SSIM_SIGMA, truncate=3.5, mode="reflect")  # noqa: E731
    out = np.zeros(p.shape[:2])
    for c in range(p.shape[2]):
        x, y = p[..., c], g[..., c]
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        out += ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return out / p.shape[2]


def ssim(pred, gt, mask=None, data_range: float = 1.0) -> float:
    """Mean SSIM over the mask's pixels (1 for identical images)."""
    p, _ = _pair(pred, gt)
    m = _mask(mask, p.shape)
    if _empty(m):
        return float("nan")
    return float(ssim_map(pred, gt, data_range)[m].mean())


# ---------------------------------------------------------------------------------------------
# LPIPS, only with real pretrained weights

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision AlexNet_Weights.IMAGENET1K_V1
# torch.hub's check_hash convention: the file name carries the first digits of the file's sha256.
ALEXNET_SHA256_PREFIX = ALEXNET_FILE.rsplit("-", 1)[1].split(".")[0]


def _sha256(path: Path) -> str:
    from dipir.hashing import process_file_hashes

    return process_file_hashes().file(path)  # cached by size, mtime, inode: read once per process


@dataclass
class LpipsStatus:
    available: bool
    reason: str = ""
    backbone: Path | None = None  # torchvision AlexNet ImageNet weights
    linear: Path | None = None  # LPIPS v0.1 linear calibration layers (shipped in the package)


def _torch_hub_dir() -> Path:
    # torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub.
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]) / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "torch" / "hub"


def lpips_status(backbone_path: str | Path | None = None) -> LpipsStatus:
    """Whether LPIPS can give a real number here, looking only at files (never downloads).

    The backbone is searched at `backbone_path`, then $DIPIR_LPIPS_BACKBONE, then torch hub's cache
    (`<hub>/checkpoints/alexnet-owt-7be5be79.pth`); the first file found must be torchvision's
    ImageNet weights (its sha256 starts with the digits in that name), else LPIPS is unavailable.
    """
    try:
        import importlib.util

        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return LpipsStatus(False, "the lpips package is not installed")
    linear = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    if not linear.is_file():
        return LpipsStatus(False, f"LPIPS linear weights not found at {linear}")
    candidates = [Path(p) for p in (backbone_path, os.environ.get("DIPIR_LPIPS_BACKBONE")) if p]
    candidates.append(_torch_hub_dir() / "checkpoints" / ALEXNET_FILE)
    for c in candidates:
        if c.is_file():
            digest = _sha256(c)
            if not digest.startswith(ALEXNET_SHA256_PREFIX):
                # Any AlexNet-shaped file loads, random weights too: the number would look like LPIPS.
                return LpipsStatus(False, f"{c} is not torchvision's ImageNet AlexNet (sha256 {digest[:8]}…, "
                                          f"expected {ALEXNET_SHA256_PREFIX}…): LPIPS from other weights is not LPIPS")
            return LpipsStatus(True, "", backbone=c, linear=linear)
    return LpipsStatus(False, f"AlexNet ImageNet weights for LPIPS not on disk (looked for {candidates[-1]}; "
                              "set DIPIR_LPIPS_BACKBONE or place the file in torch hub's cache)")


class Lpips:
    """LPIPS (AlexNet, v0.1) built without any download: the backbone is created with random
    weights and then overwritten from the file `lpips_status` found; if that fails, construction
    raises and the caller records the metric as unavailable."""

    def __init__(self, status: LpipsStatus | None = None):
        status = status or lpips_status()
        if not status.available:
            raise RuntimeError(status.reason)
        # pnet_rand=True: no torchvision download path is touched; pretrained=True loads the
        # linear layers from the package's own file.
        import warnings

        import lpips
        import torch
        from torchvision.models import alexnet

        with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" from inside lpips
            warnings.simplefilter("ignore", UserWarning)
            self.model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True,
                                     spatial=True, verbose=False)
        features = alexnet(weights=None)
        features.load_state_dict(torch.load(status.backbone, map_location="cpu", weights_only=True))
        feats = features.features
        # lpips' alexnet slices hold features[i] under the child name str(i).
        for sl in (self.model.net.slice1, self.model.net.slice2, self.model.net.slice3,
                   self.model.net.slice4, self.model.net.slice5):
            for name, module in sl.named_children():
                module.load_state_dict(feats[int(name)].state_dict())
        self.model.eval()

    def distance_map(self, pred, gt) -> np.ndarray:
        """Spatial LPIPS (H, W) for images in [0, 1]."""
        import torch

        def t(a):
            a = np.clip(np.asarray(a, dtype=np.float32), 0, 1)
            return torch.from_numpy(a).permute(2, 0, 1)[None] * 2 - 1

        with torch.no_grad():
            d = self.model(t(pred), t(gt))
        return d[0, 0].numpy().astype(np.float64)

    def __call__(self, pred, gt, mask=None) -> float:
        p, _ = _pair(pred, gt)
        m = _mask(mask, p.shape)
        if _empty(m):
            return float("nan")
        return float(self.distance_map(pred, gt)[m].mean())
