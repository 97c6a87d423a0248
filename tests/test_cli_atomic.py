"""A failed command leaves its output folder exactly as it was (dipir/io.py), and `scene polyhaven`
reads HDRIs without Mitsuba and keeps night maps dark under auto exposure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dipir.cli.main import main
from dipir.errors import DipirError
from dipir.io import publish_dir, staged_dir, write_json_atomic

REPO = Path(__file__).resolve().parents[1]
POLYHAVEN = REPO.parent / "shared" / "data" / "polyhaven"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(root.rglob("*"))}


def _hdri(tmp_path: Path, scale: float = 1.0) -> Path:
    """A small sky-over-ground equirect map (a real file written with write_hdr)."""
    from dipir.rendering.hdr import write_hdr

    h, w = 32, 64
    img = np.ones((h, w, 3), np.float32) * np.linspace(2.0, 0.2, h, dtype=np.float32)[:, None, None]
    img[4:6, 20:22] = 500.0  # a sun
    return write_hdr(tmp_path / f"sky{scale:g}.exr", img * scale)


def _run(argv) -> int:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code


def test_staged_dir_publishes_on_success_and_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError):
        with staged_dir(out) as stage:
            (stage / "x.txt").write_text("half")
            raise RuntimeError("fail")
    assert list(tmp_path.iterdir()) == []  # not even the parents it made
    with staged_dir(out) as stage:
        (stage / "x.txt").write_text("one")
        (stage / "sub").mkdir()
        (stage / "sub" / "y").write_text("y")
    (out / "mine.txt").write_text("kept")
    with staged_dir(out) as stage:
        (stage / "x.txt").write_text("two")
        (stage / "sub").mkdir()
    assert (out / "x.txt").read_text() == "two" and (out / "mine.txt").read_text() == "kept"
    assert not (out / "sub" / "y").exists()  # a folder is replaced whole
    assert sorted(p.name for p in out.parent.iterdir()) == ["b"]
    with pytest.raises(DipirError, match="not a folder"):
        with staged_dir(out / "x.txt"):
            pass


def test_write_json_atomic_keeps_old_file_when_encoding_fails(tmp_path):
    p = write_json_atomic(tmp_path / "m.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(p, {"a": object()})
    assert p.read_text().strip().startswith("{") and [q.name for q in tmp_path.iterdir()] == ["m.json"]


def test_failed_scene_polyhaven_keeps_the_old_scene(tmp_path, capsys):
    out = tmp_path / "scene"
    hdri = _hdri(tmp_path)
    assert _run(["scene", "polyhaven", hdri, "--out", out, "--width", "32", "--height", "24"]) == 0
    before = _tree(tmp_path)
    # Fails after the background and env map are made (the object comes last): nothing may change.
    other = _hdri(tmp_path, 0.5)
    before = _tree(tmp_path)
    code = _run(["scene", "polyhaven", other, "--out", out, "--width", "48", "--height", "32",
                 "--object", tmp_path / "missing.obj"])
    err = capsys.readouterr().err
    assert code == 2 and "missing.obj" in err
    assert _tree(tmp_path) == before


def test_evaluate_out_folder_leaves_no_temporary(tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    code = _run(["evaluate", "--scene", tmp_path / "s", "--pred", tmp_path / "p", "--out", tmp_path / "dir"])
    assert code == 2 and "is a folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["dir"] and not any((tmp_path / "dir").iterdir())


def test_scene_polyhaven_loads_no_renderer(tmp_path):
    """Reading an HDR and writing an EXR need neither Mitsuba nor torch (the CUDA probe)."""
    hdri = sorted(POLYHAVEN.glob("*.hdr"))[:1] or [_hdri(tmp_path)]
    code = ("import sys; from dipir.cli.main import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('HEAVY=' + ','.join(m for m in ('mitsuba', 'drjit', 'torch') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code, "scene", "polyhaven", str(hdri[0]), "--out", str(tmp_path / "o"),
                        "--width", "64", "--height", "48"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "HEAVY="
    from dipir.scene.contract import load_scene

    sc = load_scene(tmp_path / "o")
    assert sc.envmap.is_file() and sc.camera.width == 64


def test_rgbe_reader_matches_mitsuba():
    from dipir.rendering.hdr import _read_mitsuba, read_hdr

    files = sorted(POLYHAVEN.glob("*.hdr"))
    if not files:
        pytest.skip("no real Poly Haven HDRIs in shared/data/polyhaven")
    a = read_hdr(files[0])
    b = _read_mitsuba(files[0])
    assert a.shape == b.shape and a.flags["C_CONTIGUOUS"] and np.array_equal(a, b)


def _pfm(path, img: np.ndarray, little: bool = True, header: bytes | None = None):
    c = 1 if img.ndim == 2 else 3
    h, w = img.shape[:2]
    head = header or b"%s\n%d %d\n%s\n" % (b"PF" if c == 3 else b"Pf", w, h, b"-1.0" if little else b"1.0")
    path.write_bytes(head + np.ascontiguousarray(img[::-1]).astype("<f4" if little else ">f4").tobytes())
    return path


def test_pfm_reader_matches_mitsuba(tmp_path):
    # Both byte orders and grey maps, against Mitsuba's own reading of the same files.
    from dipir.rendering.hdr import _read_mitsuba, read_hdr

    rgb = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32) * 20
    for little in (True, False):
        p = _pfm(tmp_path / f"rgb{little}.pfm", rgb, little)
        assert np.array_equal(read_hdr(p), rgb) and np.array_equal(read_hdr(p), _read_mitsuba(p))
    grey = _pfm(tmp_path / "grey.pfm", rgb[..., 0])
    assert np.array_equal(read_hdr(grey), np.repeat(rgb[..., :1], 3, axis=-1))


@pytest.mark.parametrize("header,cut,words", [
    (b"PF\n0 0\n-1.0\n", 0, "0 x 0"),  # Mitsuba's reader dies of SIGFPE on this one
    (None, 40, "PFM cut short"),
    (b"PF\nseven 5\n-1.0\n", 0, "must be numbers"),
    (b"P6\n7 5\n255\n", 0, "not a PFM"),
    (b"PF\n7", 0, "header cut short"),
], ids=["zero_size", "truncated", "words", "ppm", "short_header"])
def test_damaged_pfm_is_one_line(header, cut, words, tmp_path, capsys):
    p = _pfm(tmp_path / "m.pfm", np.ones((5, 7, 3), np.float32), header=header)
    if cut:
        p.write_bytes(p.read_bytes()[:-cut])
    if header == b"PF\n7":
        p.write_bytes(header)
    with pytest.raises(SystemExit) as exc:
        main(["scene", "polyhaven", str(p), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and str(p) in err and words in err, err
    assert not (tmp_path / "o").exists()


def test_truncated_rgbe_is_one_line(tmp_path):
    from dipir.rendering.hdr import read_hdr

    files = sorted(POLYHAVEN.glob("*.hdr"))
    if not files:
        pytest.skip("no real Poly Haven HDRIs in shared/data/polyhaven")
    bad = tmp_path / "cut.hdr"
    bad.write_bytes(files[0].read_bytes()[:5000])
    with pytest.raises(DipirError, match="unreadable HDR"):
        read_hdr(bad)


def test_auto_exposure_keeps_a_dark_map_dark(tmp_path):
    """Auto exposure used to map every crop to mid-grey: a map 16x darker than daylight now stays
    darker; a daylight map is exposed as before (log-average to the 0.18 key)."""
    from PIL import Image

    from dipir.data.polyhaven import make_scene

    means = {}
    for scale in (1.0, 1 / 16):
        out = tmp_path / f"s{scale:g}"
        make_scene(_hdri(tmp_path, scale), out, width=48, height=32)
        means[scale] = np.asarray(Image.open(out / "background.png"), float).mean()
    assert means[1 / 16] < 0.6 * means[1.0]
    assert 90 < means[1.0] < 200


def test_real_night_map_is_not_daylight(tmp_path):
    from PIL import Image

    from dipir.data.polyhaven import make_scene

    night = POLYHAVEN / "dikhololo_night_1k.hdr"
    day = POLYHAVEN / "venice_sunset_1k.hdr"
    if not (night.is_file() and day.is_file()):
        pytest.skip("dikhololo_night_1k.hdr / venice_sunset_1k.hdr not in shared/data/polyhaven")
    m = {}
    for f in (night, day):
        make_scene(f, tmp_path / f.stem, width=64, height=48)
        m[f.stem] = np.asarray(Image.open(tmp_path / f.stem / "background.png"), float).mean()
    assert m[night.stem] < 80 < m[day.stem]


def test_build_lock_makes_concurrent_builders_take_turns(tmp_path):
    """Two builders of the same cached folder: the second waits for the first and loads its result
    (one build, not two), as two Ray actors wanting one concept set or LoRA do."""
    import threading
    import time

    from dipir.io import build_lock

    folder = tmp_path / "cache" / "concepts" / "key"
    builds, inside, overlaps = [], [], []

    def builder(name):
        with build_lock(folder):
            inside.append(name)
            if len(inside) > 1:  # somebody else is in the block (an assert here would die with its thread)
                overlaps.append(list(inside))
            if not (folder / "index.json").is_file():
                time.sleep(0.3)
                folder.mkdir(parents=True)
                (folder / "index.json").write_text(name)
                builds.append(name)
            inside.remove(name)

    threads = [threading.Thread(target=builder, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps and len(builds) == 1 and (folder / "index.json").read_text() == builds[0]
    assert (folder.parent / ".key.lock").is_file()


def test_publish_dir_first_writer_wins_or_replaces_and_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "cache" / "entry"
    with publish_dir(out, replace=False) as d:
        assert d.parent == out.parent and d.name.startswith(".") and not out.exists()  # hidden until done
        (d / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"
    with publish_dir(out, replace=False) as d:  # a cache entry another process finished first: theirs stays
        (d / "a.txt").write_text("second")
    assert (out / "a.txt").read_text() == "first"
    with publish_dir(out, replace=True) as d:  # a model folder: the new one replaces the old one whole
        (d / "b.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    with pytest.raises(RuntimeError), publish_dir(out, replace=True) as d:
        (d / "c.txt").write_text("half")
        raise RuntimeError("writer failed")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    with pytest.raises(RuntimeError), publish_dir(tmp_path / "cache" / "never", replace=False) as d:
        raise RuntimeError("writer failed")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["entry"]  # no staging folder left
