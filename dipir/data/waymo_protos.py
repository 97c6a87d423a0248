"""The Waymo Open Dataset protos, from the `waymo-open-dataset-tf-2-12-0` package.

The package is installed with `--no-deps` (it pins TensorFlow 2.13 and old numpy/pandas); only its
generated `dataset_pb2` module is used here, which needs nothing but the protobuf runtime.
"""

from __future__ import annotations

from dipir.errors import DipirError

CAMERA_NAMES = {"FRONT": 1, "FRONT_LEFT": 2, "FRONT_RIGHT": 3, "SIDE_LEFT": 4, "SIDE_RIGHT": 5}
LASER_NAMES = {"TOP": 1, "FRONT": 2, "SIDE_LEFT": 3, "SIDE_RIGHT": 4, "REAR": 5}


def dataset_pb2():
    """The generated `waymo_open_dataset.dataset_pb2` module (Frame, MatrixFloat, ...)."""
    try:
        from waymo_open_dataset import dataset_pb2 as pb
    except ImportError as err:
        raise DipirError(
            "the Waymo protos are not installed: pip install --no-deps waymo-open-dataset-tf-2-12-0 "
            f"({err.__class__.__name__}: {err})") from None
    return pb


def camera_id(name: str | int) -> int:
    if isinstance(name, int):
        return name
    key = name.upper()
    if key not in CAMERA_NAMES:
        raise DipirError(f"unknown camera {name!r} (have: {', '.join(CAMERA_NAMES)})", field="camera")
    return CAMERA_NAMES[key]


def camera_name(camera: str | int) -> str:
    """The name of a camera (id or name) for messages; an unknown id as its number."""
    cam = camera_id(camera)
    return next((k for k, v in CAMERA_NAMES.items() if v == cam), str(cam))
