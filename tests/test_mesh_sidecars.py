"""The files a mesh references (an OBJ's .mtl, a glTF's .bin): what task ids hash with the mesh."""

from __future__ import annotations

import json
import struct
import tracemalloc

import numpy as np

from dipir.hashing import FileHashCache
from dipir.scene.assets import load_mesh_file, mesh_sidecar_hashes, mesh_sidecars

_BOX = ("".join(f"v {x} {y} {z}\n" for x in (-.5, .5) for y in (0, 1) for z in (-.5, .5))
        + "f 1 2 4 3\nf 5 7 8 6\nf 1 5 6 2\nf 3 4 8 7\nf 1 3 7 5\nf 2 6 8 4\n")
_TRI = np.array([[0, 0, 0], [2, 0, 0], [0, 1, 0]], np.float32).tobytes() + np.array([0, 1, 2, 0], np.uint16).tobytes()


def _gltf(buffers: list[dict], **more) -> dict:
    return {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}], "buffers": buffers,
            "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36},
                            {"buffer": 0, "byteOffset": 36, "byteLength": 6}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
                          {"bufferView": 1, "componentType": 5123, "count": 3, "type": "SCALAR"}], **more}


def _glb(tree: dict, binary: bytes | None = None) -> bytes:
    """A GLB: 12-byte header, the JSON chunk (space-padded to 4 bytes), an optional BIN chunk."""
    text = json.dumps(tree).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<2I", len(text), 0x4E4F534A) + text
    if binary is not None:
        body += struct.pack("<2I", len(binary), 0x004E4942) + binary
    return struct.pack("<3I", 0x46546C67, 2, 12 + len(body)) + body


def test_obj_mtllib_names_are_relative_to_the_obj(tmp_path, monkeypatch):
    """Every mtllib line, several names on one line, names relative to the OBJ's folder (not the
    working one); a missing .mtl is not a sidecar, but its appearance changes the hashes."""
    meshes = tmp_path / "meshes"
    (meshes / "sub").mkdir(parents=True)
    for name in ("a.mtl", "sub/b.mtl", "c.mtl"):
        (meshes / name).write_text("newmtl red\nKd 0.8 0.1 0.1\nmap_Kd red.png\n")  # the texture is not one
    (meshes / "box.obj").write_text("# a box\nmtllib a.mtl sub/b.mtl\n" + _BOX + "\t mtllib c.mtl\nmtllib gone.mtl\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert mesh_sidecars("../meshes/box.obj") == [meshes / "a.mtl", meshes / "sub" / "b.mtl", meshes / "c.mtl"]

    before = mesh_sidecar_hashes(meshes / "box.obj", FileHashCache(None))
    (meshes / "gone.mtl").write_text("newmtl red\nKd 0.8 0.1 0.1\n")
    assert mesh_sidecars(meshes / "box.obj")[-1] == meshes / "gone.mtl"
    assert mesh_sidecar_hashes(meshes / "box.obj", FileHashCache(None)) != before


def test_a_large_obj_is_streamed(tmp_path):
    """An mtllib line across the 1 MiB read boundary, and one after megabytes of vertices, are found
    without holding the whole OBJ in memory."""
    (tmp_path / "head.mtl").write_text("newmtl red\nKd 0.8 0.1 0.1\n")
    (tmp_path / "tail.mtl").write_text("newmtl red\nKd 0.8 0.1 0.1\n")
    pad = "# " + "x" * ((1 << 20) - 3 - 5) + "\n"  # "mtllib" starts 5 bytes before the first MiB ends
    vertices = "v 0.125 0.25 0.5\n" * ((8 << 20) // 17 + 1)
    path = tmp_path / "big.obj"
    path.write_text(pad + "mtllib head.mtl\n" + vertices + "mtllib tail.mtl\n" + _BOX)
    assert path.stat().st_size > 8 << 20
    tracemalloc.start()
    try:
        found = mesh_sidecars(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found == [tmp_path / "head.mtl", tmp_path / "tail.mtl"]
    assert peak < 6 << 20


def test_gltf_external_buffers(tmp_path, monkeypatch):
    """A .gltf's buffers[].uri, URL-decoded and relative to the .gltf; not data: URIs, not images."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "tri data.bin").write_bytes(_TRI)
    (tmp_path / "m" / "tex.png").write_bytes(b"\x89PNG")
    tree = _gltf([{"uri": "tri%20data.bin", "byteLength": len(_TRI)},
                  {"uri": "data:application/octet-stream;base64,AAAA", "byteLength": 3}],
                 images=[{"uri": "tex.png"}])
    (tmp_path / "m" / "tri.gltf").write_text(json.dumps(tree))
    monkeypatch.chdir(tmp_path)
    assert mesh_sidecars("m/tri.gltf") == [tmp_path / "m" / "tri data.bin"]

    (tmp_path / "m" / "plain.gltf").write_text(json.dumps(_gltf([{"uri": "tri data.bin", "byteLength": 44}])))
    assert load_mesh_file(tmp_path / "m" / "plain.gltf").vertices[:, 0].max() == 1.0  # the .bin's triangle
    assert mesh_sidecars(tmp_path / "m" / "plain.gltf") == [tmp_path / "m" / "tri data.bin"]


def test_glb_external_buffers_from_its_json_chunk(tmp_path):
    """A .glb may keep a buffer outside (a uri in its JSON chunk); one with its buffer inside has none."""
    (tmp_path / "ext.bin").write_bytes(_TRI)
    outside = tmp_path / "outside.glb"
    outside.write_bytes(_glb(_gltf([{"uri": "ext.bin", "byteLength": len(_TRI)}])))
    assert load_mesh_file(outside).vertices[:, 0].max() == 1.0
    assert mesh_sidecars(outside) == [tmp_path / "ext.bin"]
    inside = tmp_path / "inside.glb"
    inside.write_bytes(_glb(_gltf([{"byteLength": len(_TRI)}]), _TRI))
    assert load_mesh_file(inside).vertices[:, 0].max() == 1.0
    assert mesh_sidecars(inside) == [] and mesh_sidecar_hashes(inside, FileHashCache(None)) == []


def test_files_that_do_not_read_have_no_sidecars(tmp_path):
    """Malformed or other files: none (loading the mesh reports the problem)."""
    (tmp_path / "x.bin").write_bytes(b"")
    files = {"broken.gltf": b'{"buffers": [{"uri": "x.bin"', "list.gltf": b'[{"uri": "x.bin"}]',
             "short.glb": b"glTF\x02\x00", "text.glb": b'{"buffers": [{"uri": "x.bin"}]}' + b" " * 20,
             "huge.glb": _glb({"buffers": [{"uri": "x.bin"}]})[:12] + struct.pack("<2I", 1 << 31, 0x4E4F534A),
             "binary.obj": bytes(range(256)) * 4, "mesh.ply": b"ply\nformat ascii 1.0\nend_header\n"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert mesh_sidecars(tmp_path / name) == [], name
    assert mesh_sidecars(tmp_path / "absent.obj") == []
    (tmp_path / "folder.obj").mkdir()
    assert mesh_sidecars(tmp_path / "folder.obj") == []
