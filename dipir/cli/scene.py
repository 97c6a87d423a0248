"""`dipir scene waymo|polyhaven ...`: write a scene folder (scene.yaml, background.png, and
points.ply or envmap.exr) that `dipir insert` accepts."""

from __future__ import annotations


from pathlib import Path

import typer


def _object(mesh: str | None, cls: str | None, distance: float | None, yaw: float | None, scale: float | None,
            position: str | None) -> dict | None:
    d: dict = {}
    if mesh:
        d["mesh"] = mesh
    if cls:
        d["class"] = cls
    if distance is not None:
        d["distance"] = distance
    if yaw is not None:
        d["yaw_deg"] = yaw
    if scale is not None:
        d["scale"] = scale
    if position:
        from dipir.errors import DipirError

        try:
            d["position"] = [float(x) for x in position.split(",")]
            assert len(d["position"]) == 3
        except (ValueError, AssertionError):
            raise DipirError(f"expected x,y,z, got {position!r}", field="--position") from None
    return d or None


def register(app: typer.Typer) -> None:
    from dipir.data.polyhaven import PROTOCOL as ph  # the Poly Haven crop protocol's defaults

    scene_app = typer.Typer(help="Make scene folders from datasets.", no_args_is_help=True)
    app.add_typer(scene_app, name="scene")

    mesh_opt = typer.Option(None, "--object", help="Mesh file or builtin:car|vase|bucket|box.")
    cls_opt = typer.Option(None, "--class",
                           help="Object class name for prompts (builtins: their name; mesh files need it).")
    dist_opt = typer.Option(None, "--distance", help="Auto placement: metres in front of the camera.")
    yaw_opt = typer.Option(None, "--yaw", help="Object yaw in degrees (0 = facing the camera).")
    scale_opt = typer.Option(None, "--scale", help="Object scale.")
    pos_opt = typer.Option(None, "--position", help="Explicit object position x,y,z (snapped onto the plane).")

    @scene_app.command("waymo")
    def waymo(
        path: Path = typer.Argument(..., help="A v1 .tfrecord segment file or a v2 root folder."),
        frame: int = typer.Option(0, "--frame", help="Frame index (0-based, in file / timestamp order)."),
        camera: str = typer.Option("FRONT", "--camera", help="FRONT, FRONT_LEFT, FRONT_RIGHT, SIDE_LEFT, SIDE_RIGHT."),
        out: Path = typer.Option(..., "--out", help="Scene folder to write."),
        width: int = typer.Option(None, "--width", help="Resize the background to this width."),
        segment: str = typer.Option(None, "--segment", help="v2: segment context name (default: the first)."),
        ground: str = typer.Option("auto", "--ground", help="Ground plane from: lidar (fit to the range images), "
                                   "calibration (the vehicle frame's z = 0 plane), auto (lidar when the frame "
                                   "has range images, else calibration)."),
        mesh: str = mesh_opt, cls: str = cls_opt, distance: float = dist_opt, yaw: float = yaw_opt,
        scale: float = scale_opt, position: str = pos_opt,
    ) -> None:
        """Scene from one Waymo frame: camera image, calibration, and the ground plane (LiDAR fit or calibration)."""
        from dipir.data.waymo import make_scene

        p = make_scene(path, out, frame_index=frame, camera=camera, width=width, segment=segment, ground=ground,
                       object=_object(mesh, cls, distance, yaw, scale, position))
        typer.echo(f"wrote {p}")

    @scene_app.command("polyhaven")
    def polyhaven(
        hdri: Path = typer.Argument(..., help="Equirectangular .hdr / .exr file."),
        out: Path = typer.Option(..., "--out", help="Scene folder to write."),
        azimuth: float = typer.Option(180.0, "--azimuth", help="Degrees; the crop looks at HDRI column u = azimuth/360."),
        elevation: float = typer.Option(ph.elevation_deg, "--elevation",
                                        help="Camera pitch in degrees (negative: down, to see the ground)."),
        fov: float = typer.Option(ph.fov_deg, "--fov", help="Vertical field of view in degrees."),
        width: int = typer.Option(ph.width, "--width"),
        height: int = typer.Option(ph.height, "--height"),
        camera_height: float = typer.Option(ph.camera_height, "--camera-height", help="Metres above the ground plane."),
        exposure: str = typer.Option("auto", "--exposure", help="'auto' (log-average to 0.18) or an EV number."),
        mesh: str = mesh_opt, cls: str = cls_opt, distance: float = dist_opt, yaw: float = yaw_opt,
        scale: float = scale_opt, position: str = pos_opt,
    ) -> None:
        """Scene from an HDRI: perspective LDR crop, rotated ground-truth env map, ground plane."""
        from dipir.data.polyhaven import make_scene

        exp = exposure if exposure == "auto" else _ev(exposure)
        p = make_scene(hdri, out, azimuth_deg=azimuth, elevation_deg=elevation, fov_deg=fov, width=width,
                       height=height, camera_height=camera_height, exposure=exp,
                       object=_object(mesh, cls, distance, yaw, scale, position))
        typer.echo(f"wrote {p}")


def _ev(s: str) -> float:
    from dipir.errors import DipirError

    try:
        return float(s)
    except ValueError:
        raise DipirError(f"exposure must be 'auto' or a number, got {s!r}", field="--exposure") from None



