"""The insertion renderer: camera, mask, shadow ratio, the +X lighting convention, env map layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.render import make_scene, plane_points, project

from dipir.rendering.config import RenderConfig
from dipir.rendering.hdr import equirect_directions, solid_angles
from dipir.rendering.lighting import SGLighting
from dipir.rendering.renderer import InsertionRenderer, pad_envmap, render_insertion

W = H = 64
ENV = (32, 64)


def sun_and_sky(axis, sun=40.0, sky=0.3):
    """A sharp bright lobe along `axis` over a dim, almost uniform sky."""
    return SGLighting.from_params([[sun] * 3, [sky] * 3], [axis, [0, 1, 0]], [0.12, 3.0])


def env_of(sg, shape=ENV):
    with torch.no_grad():
        return sg.envmap(*shape)


def renderer(scene, spp=16, **kw):
    return InsertionRenderer(scene, RenderConfig(width=W, height=H, spp=spp, envmap_height=ENV[0],
                                                 envmap_width=ENV[1], **kw))


@pytest.fixture(scope="module")
def box_scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("box"))


@pytest.fixture(scope="module")
def box_renderer(box_scene):
    return renderer(box_scene)


def test_pad_envmap_layout():
    env = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    pad = pad_envmap(env)
    assert pad.shape == (2, 6, 3)
    assert torch.equal(pad[:, 1:-1], env) and torch.equal(pad[:, 0], env[:, -1]) and torch.equal(pad[:, -1], env[:, 0])
    np.testing.assert_array_equal(pad_envmap(env.numpy()), pad.numpy())


def test_camera_rays_match_intrinsics(tmp_path):
    # An off-centre principal point and a non-square image: Mitsuba's rays must go where K says.
    scene = make_scene(tmp_path, size=(80, 60), intrinsics=(70.0, 70.0, 30.0, 35.0))
    r = InsertionRenderer(scene, RenderConfig(width=40, height=30, spp=1, envmap_height=8, envmap_width=16))
    mi = r.mi
    sensor = r.scene_sh.sensors()[0]
    cam = scene.camera.resized(40, 30)
    k = cam.K()
    for u, v in [(0.5, 0.5), (20.0, 15.0), (39.5, 3.0), (7.0, 29.5)]:
        ray, _ = sensor.sample_ray(0.0, 0.5, mi.Point2f(u / 40, v / 30), mi.Point2f(0.5))
        d = np.array(ray.d).ravel()
        local = np.array([-(u - k[0, 2]) / k[0, 0], -(v - k[1, 2]) / k[1, 1], 1.0])
        want = cam.to_world[:3, :3] @ local
        np.testing.assert_allclose(d, want / np.linalg.norm(want), atol=1e-4)


def test_mask_covers_the_projected_box(box_scene, box_renderer):
    m = box_renderer.mask.numpy()[..., 0]
    assert 0 < m.min() + 1e-9 and m.max() == 1.0 or m.max() == pytest.approx(1.0)
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (0.0, 1.0) for z in (-0.5, 0.5)])
    uv = project(box_scene, corners, W, H)
    lo, hi = uv.min(0), uv.max(0)
    ys, xs = np.nonzero(m > 0.5)
    # The mask's extent is the projected bounding box of the box's corners (within a pixel).
    assert xs.min() >= lo[0] - 1 and xs.max() <= hi[0] + 1 and ys.min() >= lo[1] - 1 and ys.max() <= hi[1] + 1
    centre = project(box_scene, np.array([0.0, 0.5, 0.0]), W, H)
    assert m[int(centre[1]), int(centre[0])] == 1.0
    assert set(np.unique(np.round(m, 6))) - {0.0, 1.0}, "edge pixels should have partial coverage"


def test_plus_x_lobe_lights_plus_x_side_and_shadows_minus_x(box_scene, box_renderer):
    """The convention test: a bright lobe from world +X (slightly above the horizon) over a dim sky."""
    sg = sun_and_sky([1.0, 0.45, 0.0])
    out = box_renderer.render(env_of(sg), seed=3)
    fg = out.fg.numpy().mean(-1)
    beta = out.shadow_ratio.numpy().mean(-1)
    mask = out.mask.numpy()[..., 0]

    # Where do the box's +X and -Z faces land in the image? (The camera at (3, 3, -5) sees both.)
    def face_mean(centre):
        u, v = project(box_scene, np.array(centre, float), W, H)
        r, c = int(v), int(u)
        assert mask[r, c] == 1.0
        return fg[r - 1:r + 2, c - 1:c + 2].mean()

    plus_x, minus_z = face_mean([0.5, 0.5, 0.0]), face_mean([0.0, 0.5, -0.5])
    assert plus_x > 3 * minus_z, (plus_x, minus_z)

    # Darkest shadow pixel: on the plane on the -X side of the box.
    pts = plane_points(box_scene, W, H)
    cand = (mask == 0) & np.isfinite(pts[..., 0])
    r, c = np.unravel_index(np.argmin(np.where(cand, beta, np.inf)), beta.shape)
    assert beta[r, c] < 0.3
    assert pts[r, c, 0] < -0.5, pts[r, c]
    # And the plane on the +X side of the box is not in shadow.
    u, v = project(box_scene, np.array([1.5, 0.0, 0.0]), W, H)
    assert beta[int(v), int(u)] > 0.8


def test_shadow_ratio_is_one_far_from_object(box_scene, box_renderer):
    out = box_renderer.render(env_of(sun_and_sky([0.3, 1.0, 0.2])), seed=1)
    beta = out.shadow_ratio.numpy()
    pts = plane_points(box_scene, W, H)
    dist = np.linalg.norm(pts[..., [0, 2]], axis=-1)
    far = (out.mask.numpy()[..., 0] == 0) & (dist > 6)
    assert far.sum() > 50
    # Only sky occlusion by a 1 m box remains out there: a few per cent at most.
    assert beta[far].mean() > 0.98 and beta[far].min() > 0.85
    # Sky and background pixels (no plane) are exactly 1.
    assert np.all(beta[~np.isfinite(pts[..., 0])] == 1.0)


def test_plane_only_ratio_is_one_and_denominator_is_irradiance(tmp_path):
    scene = make_scene(tmp_path)
    r = renderer(scene, spp=32, with_object=False)
    sg = sun_and_sky([0.4, 1.0, -0.3], sun=10.0, sky=0.5)
    env = env_of(sg)
    out = r.render(env, seed=5)
    np.testing.assert_allclose(out.shadow_ratio.numpy(), 1.0, atol=1e-6)
    assert out.mask.sum() == 0
    # The denominator is the plane's exit radiance / albedo = E / π, the same at every point.
    d = equirect_directions(*ENV)
    cos = np.clip(d[..., 1], 0, None)
    e_over_pi = (env.numpy() * (cos * solid_angles(*ENV))[..., None]).sum((0, 1)) / np.pi
    den = out.extras["shadow_den"].numpy()
    on_plane = den.sum(-1) > 0
    np.testing.assert_allclose(den[on_plane].mean(0), e_over_pi, rtol=0.02)


def test_shadow_pass_agrees_with_mitsuba_prb(box_scene):
    # The custom correlated estimator vs. independent Mitsuba prb renders of X∪P and P.
    r = renderer(box_scene, spp=64)
    env = env_of(sun_and_sky([1.0, 0.8, 0.3], sun=20.0))
    a = r.render(env, seed=7)
    b = r.render_separately(env, seed=8)
    keep = (a.mask.numpy()[..., 0] == 0) & (a.extras["shadow_den"].numpy().sum(-1) > 0)
    for key in ("shadow_num", "shadow_den"):
        # Mitsuba's plane radiance carries the albedo; ours is divided by it.
        x = a.extras[key].numpy()[keep].mean()
        y = b.extras[key].numpy()[keep].mean() / r.cfg.plane_albedo
        assert x == pytest.approx(y, rel=0.03), key
    sa, sb = a.shadow_ratio.numpy()[keep], b.shadow_ratio.numpy()[keep]
    assert abs(sa.mean() - sb.mean()) < 0.02
    fa, fb = a.fg.numpy(), b.fg.numpy()
    inside = a.mask.numpy()[..., 0] == 1
    assert fa[inside].mean() == pytest.approx(fb[inside].mean(), rel=0.05)


def test_env_shadow_and_env_fg_are_separate(box_scene, box_renderer):
    bright = env_of(sun_and_sky([1.0, 0.45, 0.0]))
    out = box_renderer.render(bright, env_shadow=torch.full_like(bright, 0.5), seed=2)
    # A uniform sky casts only a soft contact shadow; the sun's hard shadow is gone.
    beta = out.shadow_ratio.numpy().mean(-1)
    assert beta[out.mask.numpy()[..., 0] == 0].min() > 0.3
    assert out.fg.numpy().max() > 1.0


def test_bad_envmap_shape_is_refused(box_renderer):
    with pytest.raises(ValueError, match="expected env map of shape"):
        box_renderer.render(torch.ones(ENV[0], ENV[1] + 2, 3))


def test_material_override_is_differentiable(box_scene, box_renderer):
    env = env_of(sun_and_sky([1.0, 0.45, 0.0]))
    color = torch.tensor([0.2, 0.5, 0.8], requires_grad=True)
    out = box_renderer.render(env, seed=4, material={"base_color": color, "roughness": torch.tensor(0.9)})
    inside = out.mask[..., 0] == 1
    means = out.fg[inside].mean(0)
    means.sum().backward()
    assert torch.all(color.grad > 0)
    # Brighter albedo channel -> brighter radiance in that channel (grey-ish light).
    assert means[2] > means[0]
    with pytest.raises(ValueError, match="unknown material key"):
        box_renderer.render(env, material={"colour": color})


def test_render_insertion_returns_numpy(box_scene):
    env = env_of(sun_and_sky([1.0, 0.45, 0.0]), shape=(64, 128)).numpy()
    res = render_insertion(box_scene, env, RenderConfig(width=32, height=32, spp=4, envmap_height=16, envmap_width=32))
    assert set(res) == {"composite", "fg", "shadow_ratio", "mask"}
    assert res["composite"].shape == (32, 32, 3) and res["mask"].shape == (32, 32, 1)
    assert 0 <= res["composite"].min() and res["composite"].max() <= 1
    # Far from the object, the composite is the background (flat 128 grey).
    assert res["composite"][0, 0] == pytest.approx(np.full(3, 128 / 255), abs=2e-3)


def test_emission_override(box_scene):
    r = renderer(box_scene, spp=4, emissive=True)
    e = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    out = r.render(torch.zeros(*ENV, 3), seed=1, material={"emission": e})  # no light: only emission
    inside = out.mask[..., 0] == 1
    torch.testing.assert_close(out.fg[inside].mean(0), e.detach())
    out.fg[inside].mean(0).sum().backward()
    assert torch.all(e.grad > 0)
    with pytest.raises(ValueError, match="emissive=True"):
        renderer(box_scene, spp=4).render(torch.zeros(*ENV, 3), material={"emission": e})


def test_seed_gives_fresh_noise_and_is_reproducible(box_renderer):
    env = env_of(sun_and_sky([1.0, 0.45, 0.0]))
    a, b, c = (box_renderer.render(env, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.fg, b.fg) and torch.equal(a.shadow_ratio, b.shadow_ratio)
    assert not torch.equal(a.fg, c.fg) and not torch.equal(a.shadow_ratio, c.shadow_ratio)


def test_new_seeds_and_env_values_reuse_compiled_kernels(box_scene):
    """The scene is built once; later iterations (new seed, new lighting) compile nothing."""
    import drjit as dr

    r = renderer(box_scene, spp=2)
    sg = SGLighting.init_random(3, seed=0)
    dr.set_flag(dr.JitFlag.KernelHistory, True)
    try:
        for i in range(3):
            dr.kernel_history()  # clears
            with torch.no_grad():
                sg.raw_log_colors += 0.1
            out = r.render(sg.envmap(*ENV), seed=1000 + i)
            (out.fg.sum() + out.shadow_ratio.sum()).backward()
            jit = [k for k in dr.kernel_history() if k.get("type") == dr.KernelType.JIT]
            if i > 0:
                assert jit and all(k.get("cache_hit") and not k.get("cache_disk") for k in jit), i
    finally:
        dr.set_flag(dr.JitFlag.KernelHistory, False)


def test_written_envmap_evaluates_to_the_input_texels(box_renderer):
    """What Mitsuba's emitter returns at each texel direction after a render is the env map we gave
    (pins the (H, W + 2, 3) padded layout: an unpadded write would shift or garble it)."""
    import drjit as dr

    mi = box_renderer.mi
    rng = np.random.default_rng(0)
    env = torch.from_numpy(rng.random((*ENV, 3)).astype(np.float32))
    box_renderer.render(env, env_shadow=env * 2, seed=0, spp=1)
    d = equirect_directions(*ENV).reshape(-1, 3).astype(np.float64)
    for emitter, want in ((box_renderer.env_sh, env * 2), (box_renderer.scene_fg.emitters()[0], env)):
        si = dr.zeros(mi.SurfaceInteraction3f, d.shape[0])
        si.wi = mi.Vector3f(-d[:, 0], -d[:, 1], -d[:, 2])
        got = np.array(emitter.eval(si))
        got = (got.T if got.shape[0] == 3 else got).reshape(*ENV, 3)
        np.testing.assert_allclose(got[1:-1], want.numpy()[1:-1], rtol=1e-4, atol=1e-4)


def test_emissive_object_still_reflects_the_env_map(box_scene):
    env = env_of(sun_and_sky([1.0, 0.45, 0.0]))
    plain = renderer(box_scene, spp=4).render(env, seed=1).fg
    r = renderer(box_scene, spp=4, emissive=True)
    torch.testing.assert_close(r.render(env, seed=1, material={"emission": torch.zeros(3)}).fg, plain)
    glow = r.render(env, seed=1, material={"emission": torch.full((3,), 0.25)}).fg
    inside = r.mask[..., 0] > 0
    torch.testing.assert_close(glow[inside], plain[inside] + 0.25)


@pytest.mark.parametrize("intrinsics", [None, (80.0, 80.0, 40.0, 30.0)])
def test_a_render_of_another_aspect_is_stretched_as_the_background(tmp_path, intrinsics):
    """A 96 × 64 scene rendered at 64 × 64 or 96 × 32: the background is resized per axis, so the object
    must land where the native projection lands scaled the same way (Mitsuba's pinhole has square
    pixels: rendered straight at that size, it was cropped or misplaced against the photo). Gradients
    still reach the env map through the resampling."""
    scene = make_scene(tmp_path, size=(96, 64), intrinsics=intrinsics)
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (0.0, 1.0) for z in (-0.5, 0.5)])
    native = project(scene, corners, 96, 64)
    for w, h in [(64, 64), (96, 32)]:
        r = InsertionRenderer(scene, RenderConfig(width=w, height=h, spp=4, envmap_height=8, envmap_width=16))
        m = r.mask.numpy()[..., 0]
        assert m.shape == (h, w)
        uv = native * [w / 96, h / 64]
        lo, hi = uv.min(0), uv.max(0)
        ys, xs = np.nonzero(m > 0.5)
        assert abs(xs.min() - lo[0]) <= 1.5 and abs(xs.max() + 1 - hi[0]) <= 1.5, (w, h, xs.min(), xs.max(), lo, hi)
        assert abs(ys.min() - lo[1]) <= 1.5 and abs(ys.max() + 1 - hi[1]) <= 1.5, (w, h, ys.min(), ys.max(), lo, hi)
        env = torch.full((8, 16, 3), 0.5, requires_grad=True)
        out = r.render(env, seed=1)
        assert out.fg.shape == (h, w, 3) and out.shadow_ratio.shape == (h, w, 3)
        (out.fg.sum() + out.shadow_ratio.sum()).backward()
        assert env.grad is not None and env.grad.abs().sum() > 0
