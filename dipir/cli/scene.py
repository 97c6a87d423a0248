"""`dipir scene waymo|polyhaven ...`: write a scene folder (scene.yaml, background.png, and
points.ply or envmap.exr) that `dipir insert` accepts."""

from __future__ import annotations

from pathlib import Path

import typer

from dipir.cli.params import DEGREES, ELEVATION, FOV, METRES, SIDE, Exposure, Int, OutDir, opt


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
        import math

        from dipir.errors import DipirError

        try:
            d["position"] = [float(x) for x in position.split(",")]
            assert len(d["position"]) == 3 and all(math.isfinite(x) and abs(x) <= 1e4 for x in d["position"])
        except (ValueError, AssertionError):
            raise DipirError(f"expected x,y,z (finite, |x| <= 1e4 metres), got {position!r}",
                             field="--position") from None
    return d or None


def register(app: typer.Typer) -> None:
    from dipir.data.polyhaven import PROTOCOL as ph  # the Poly Haven crop protocol's defaults

    scene_app = typer.Typer(help="Make scene folders from datasets.", no_args_is_help=True)
    app.add_typer(scene_app, name="scene")

    mesh_opt = typer.Option(None, "--object", help="Mesh file or builtin:car|vase|bucket|box.")
    cls_opt = typer.Option(None, "--class",
                           help="Object class name for prompts (builtins: their name; mesh files need it).")
    dist_opt = opt(None, "--distance", kind=METRES, help="Auto placement: metres in front of the camera.")
    yaw_opt = opt(None, "--yaw", kind=DEGREES, help="Object yaw in degrees (0 = facing the camera).")
    scale_opt = opt(None, "--scale", kind=METRES, help="Object scale.")
    pos_opt = typer.Option(None, "--position", help="Explicit object position x,y,z (snapped onto the plane).")

    @scene_app.command("waymo")
    def waymo(
        path: Path = typer.Argument(..., help="A v1 .tfrecord segment file or a v2 root folder."),
        frame: int = opt(0, "--frame", kind=Int(0, 1_000_000), help="Frame index (0-based, in file / timestamp order)."),
        camera: str = typer.Option("FRONT", "--camera", help="FRONT, FRONT_LEFT, FRONT_RIGHT, SIDE_LEFT, SIDE_RIGHT."),
        out: Path = opt(..., "--out", kind=OutDir(), help="Scene folder to write."),
        width: int = opt(None, "--width", kind=Int(8, 8192), help="Resize the background to this width."),
        segment: str = typer.Option(None, "--segment", help="v2: segment context name (default: the first)."),
        ground: str = typer.Option("auto", "--ground", help="Ground plane from: lidar (fit to the range images), "
                                   "calibration (the vehicle frame's z = 0 plane), auto (lidar when the frame "
                                   "has range images, else calibration)."),
        mesh: str = mesh_opt, cls: str = cls_opt, distance: float = dist_opt, yaw: float = yaw_opt,
        scale: float = scale_opt, position: str = pos_opt,
    ) -> None:
        """Scene from one Waymo frame: camera image, calibration, and the ground plane (LiDAR fit or calibration)."""
        from dipir.data.waymo import make_scene
        from dipir.io import staged_dir

        obj = _object(mesh, cls, distance, yaw, scale, position)
        with staged_dir(out) as stage:  # a failure leaves an existing scene folder as it was
            p = make_scene(path, stage, frame_index=frame, camera=camera, width=width, segment=segment, ground=ground,
                           object=obj)
        typer.echo(f"wrote {out / p.name}")

    @scene_app.command("polyhaven")
    def polyhaven(
        hdri: Path = typer.Argument(..., help="Equirectangular .hdr / .exr file."),
        out: Path = opt(..., "--out", kind=OutDir(), help="Scene folder to write."),
        azimuth: float = opt(180.0, "--azimuth", kind=DEGREES, help="Degrees; the crop looks at HDRI column u = azimuth/360."),
        elevation: float = opt(ph.elevation_deg, "--elevation", kind=ELEVATION,
                               help="Camera pitch in degrees (negative: down, to see the ground)."),
        fov: float = opt(ph.fov_deg, "--fov", kind=FOV, help="Vertical field of view in degrees."),
        width: int = opt(ph.width, "--width", kind=SIDE),
        height: int = opt(ph.height, "--height", kind=SIDE),
        camera_height: float = opt(ph.camera_height, "--camera-height", kind=METRES, help="Metres above the ground plane."),
        exposure: str = opt("auto", "--exposure", kind=Exposure(),
                            help="'auto' (log-average to 0.18, dark maps kept dark) or an EV number in [-30, 30]."),
        mesh: str = mesh_opt, cls: str = cls_opt, distance: float = dist_opt, yaw: float = yaw_opt,
        scale: float = scale_opt, position: str = pos_opt,
    ) -> None:
        """Scene from an HDRI: perspective LDR crop, rotated ground-truth env map, ground plane."""
        from dipir.data.polyhaven import make_scene, refuse_own_output
        from dipir.io import staged_dir

        obj = _object(mesh, cls, distance, yaw, scale, position)
        refuse_own_output(hdri, out)  # make_scene writes to a stage: the final folder is checked here
        with staged_dir(out) as stage:  # a failure leaves an existing scene folder as it was
            p = make_scene(hdri, stage, azimuth_deg=azimuth, elevation_deg=elevation, fov_deg=fov, width=width,
                           height=height, camera_height=camera_height, exposure=exposure, object=obj)
        typer.echo(f"wrote {out / p.name}")
