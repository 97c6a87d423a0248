"""TFRecord framing without TensorFlow: streaming reader and writer, checked with CRC-32C.

A record is `uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)`,
little-endian; masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32). The checksum is
CRC-32C (Castagnoli), not zlib's CRC-32. Waymo files are not compressed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import google_crc32c

from dipir.errors import DipirError

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def iter_records(path: str | Path, check_crc: bool = True) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset, payload) per record, reading one record at a time (constant memory)."""
    path = Path(path)
    if not path.is_file():
        raise DipirError("TFRecord file not found", path)
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(12)
            if not header:
                return
            where = f"record at byte {offset}"
            if len(header) < 12:
                raise DipirError(f"truncated record header ({len(header)} of 12 bytes)", path, where)
            length, len_crc = struct.unpack("<QI", header)
            if check_crc and masked_crc32c(header[:8]) != len_crc:
                raise DipirError("CRC mismatch in record length (corrupt or not a TFRecord file)", path, where)
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise DipirError(f"truncated record (expected {length} bytes of data)", path, where)
            if check_crc and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise DipirError("CRC mismatch in record data", path, where)
            yield offset, data
            offset += 16 + length


class TFRecordWriter:
    """Append records to a file; use as a context manager."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "wb")

    def write(self, data: bytes) -> None:
        length = struct.pack("<Q", len(data))
        self._f.write(length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data)))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "TFRecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_records(path: str | Path, records: Iterable[bytes]) -> Path:
    with TFRecordWriter(path) as w:
        for r in records:
            w.write(r)
    return Path(path)
