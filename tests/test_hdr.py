"""Equirect convention and HDR file I/O, pinned against Mitsuba's own envmap emitter."""

import numpy as np
import pytest

from dipir.errors import DipirError
from dipir.rendering.hdr import (
    direction_to_pixel,
    equirect_directions,
    read_hdr,
    resample_equirect,
    solid_angles,
    write_hdr,
)


def _eval_mitsuba_envmap(img, dirs):
    import drjit as dr

    from dipir.rendering.mitsuba_setup import load_mitsuba

    mi = load_mitsuba()
    em = mi.load_dict({"type": "envmap", "bitmap": mi.Bitmap(img)})
    assert np.array(mi.traverse(em)["data"]).shape == (img.shape[0], img.shape[1] + 2, 3)
    d = dirs.reshape(-1, 3).astype(np.float64)
    si = dr.zeros(mi.SurfaceInteraction3f, d.shape[0])
    si.wi = mi.Vector3f(-d[:, 0], -d[:, 1], -d[:, 2])  # eval looks along -wi
    val = np.array(em.eval(si))
    return (val.T if val.shape[0] == 3 else val).reshape(dirs.shape)


def test_texel_directions_match_mitsuba_envmap():
    rng = np.random.default_rng(0)
    img = rng.random((9, 16, 3)).astype(np.float32)
    got = _eval_mitsuba_envmap(img, equirect_directions(9, 16))
    # Interior rows reproduce each texel exactly; the pole rows collapse to one point in Mitsuba.
    np.testing.assert_allclose(got[1:-1], img[1:-1], atol=1e-5)


def test_axes_land_where_formats_md_says():
    h, w = 33, 64
    for d, (row, col) in {(0, 0, 1): (16, 31.5), (1, 0, 0): (16, 15.5), (0, 1, 0): (0, None)}.items():
        r, c = direction_to_pixel(np.array(d, float), h, w)
        assert r == pytest.approx(row)
        if col is not None:
            assert c == pytest.approx(col)


def test_solid_angles_sum_to_sphere():
    assert solid_angles(64, 128).sum() * 128 == pytest.approx(4 * np.pi, rel=1e-5)


def test_resample_keeps_integral():
    rng = np.random.default_rng(1)
    img = rng.random((64, 128, 3)).astype(np.float32) ** 4 * 100
    small = resample_equirect(img, 16, 32)
    full = (img * solid_angles(64, 128)[..., None]).sum((0, 1))
    low = (small * solid_angles(16, 32)[..., None]).sum((0, 1))
    np.testing.assert_allclose(low, full, rtol=0.03)


def test_exr_and_hdr_round_trip(tmp_path):
    img = (np.random.default_rng(2).random((8, 16, 3)) * 50).astype(np.float32)
    np.testing.assert_allclose(read_hdr(write_hdr(tmp_path / "a.exr", img)), img, rtol=2e-3)
    # RGBE shares one exponent per pixel: error is relative to the pixel's largest channel.
    err = np.abs(read_hdr(write_hdr(tmp_path / "a.hdr", img)) - img)
    assert np.all(err <= 0.01 * img.max(axis=-1, keepdims=True))


def test_real_polyhaven_file_reads(polyhaven_dir):
    img = read_hdr(polyhaven_dir / "venice_sunset_1k.hdr")
    assert img.shape == (512, 1024, 3) and img.max() > 1000


def test_unreadable_hdr_names_the_file(tmp_path):
    bad = tmp_path / "broken.hdr"
    bad.write_bytes(b"#?RADIANCE\nnot really\n")
    with pytest.raises(DipirError, match="broken.hdr"):
        read_hdr(bad)
    with pytest.raises(DipirError, match="missing.exr"):
        read_hdr(tmp_path / "missing.exr")


@pytest.mark.parametrize("resolution", ["-Y 3 +X 4", "+Y 3 +X 4", "-Y 3 -X 4", "+Y 3 -X 4",
                                        "-X 4 +Y 3", "+X 4 -Y 3", "-X 4 -Y 3", "+X 4 +Y 3"])
def test_radiance_files_in_every_orientation_read_as_the_same_image(tmp_path, resolution):
    """Radiance allows eight scan orders; Mitsuba's reader, the fallback, takes only -Y H +X W (others
    failed with "I/O error ... Success"). Each file here stores one 3x4 image in its own order (flat RGBE)."""
    rgbe = np.zeros((3, 4, 4), np.uint8)
    rgbe[..., 0] = np.arange(12).reshape(3, 4) * 10 + 5  # every pixel its own red
    rgbe[..., 3] = 129  # exponent: value = c * 2^(129 - 136)
    truth = rgbe[..., 0].astype(np.float32) * 2.0 ** -7
    a1, _, a2, _ = resolution.split()
    scan = rgbe if a1[1] == "Y" else rgbe.transpose(1, 0, 2)  # scanlines: rows, or columns
    sign = {a1[1]: a1[0], a2[1]: a2[0]}
    if sign["Y"] == "+":  # from the bottom up
        scan = scan[::-1] if a1[1] == "Y" else scan[:, ::-1]
    if sign["X"] == "-":  # from right to left
        scan = scan[:, ::-1] if a1[1] == "Y" else scan[::-1]
    p = tmp_path / "o.hdr"
    p.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + resolution.encode() + b"\n"
                  + np.ascontiguousarray(scan).tobytes())
    img = read_hdr(p)
    assert img.shape == (3, 4, 3)
    np.testing.assert_array_equal(img[..., 0], truth)


def test_an_exr_whose_name_is_not_utf8_says_so(tmp_path):
    """OpenEXR refused `caf\\xe9.exr` with "pass a filesystem path as str", read as a damaged file."""
    import os
    from pathlib import Path

    good = write_hdr(tmp_path / "good.exr", np.ones((4, 8, 3), np.float32))
    odd = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.exr"))
    os.replace(good, odd)
    with pytest.raises(DipirError, match="name is not UTF-8; rename the file"):
        read_hdr(odd)


def test_a_short_rle_file_claiming_a_huge_image_is_refused_before_allocating(tmp_path):
    """A 40-byte file whose header claims 16384 x 16384 run-length-encoded pixels allocated the 1 GiB
    pixel buffer before finding the body truncated; the least a scanline can take is known up front."""
    import tracemalloc

    p = tmp_path / "huge.hdr"
    p.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 16384 +X 16384\n" + b"\x02\x02\x40\x00" + b"\x80" * 8)
    tracemalloc.start()
    try:
        with pytest.raises(DipirError, match=r"huge\.hdr.*truncated"):
            read_hdr(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak


def test_exr_layouts_other_than_plain_rgb_keep_their_colour_and_place(tmp_path):
    """Luminance/chroma (Y, RY, BY: OpenEXR's YC layout) is a colour image, not grey; a data window
    inside the display window (an autocropped map) is placed in it, zero outside, as the format
    defines, so the sphere keeps its geometry; a data window with no RGB or Y channels is refused."""
    import OpenEXR

    h, w = 32, 64
    red = np.zeros((h, w, 3), np.float32)
    red[..., 0] = 1.0
    y = (red @ np.array([0.2126, 0.7152, 0.0722], np.float32)).astype(np.float32)
    head = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(head, {"Y": y, "RY": (red[..., 0] - y) / y, "BY": (red[..., 2] - y) / y}) as f:
        f.write(str(tmp_path / "yc.exr"))
    np.testing.assert_allclose(read_hdr(tmp_path / "yc.exr")[0, 0], [1, 0, 0], atol=1e-3)

    crop = np.full((16, 32, 3), 2.0, np.float32)
    windows = {"displayWindow": ((0, 0), (63, 31)), "dataWindow": ((16, 8), (47, 23))}
    with OpenEXR.File({**head, **windows}, {"RGB": crop}) as f:
        f.write(str(tmp_path / "cropped.exr"))
    img = read_hdr(tmp_path / "cropped.exr")
    assert img.shape == (32, 64, 3)
    assert (img[8:24, 16:48] == 2.0).all() and img.sum() == crop.sum()
    with OpenEXR.File({**head, **windows}, {"Z": crop[..., 0]}) as f:
        f.write(str(tmp_path / "depth.exr"))
    with pytest.raises(DipirError, match=r"data window \[\[16, 8\], \[47, 23\]\] is not its display window .*"
                                         r"\(channels: Z\)"):
        read_hdr(tmp_path / "depth.exr")
