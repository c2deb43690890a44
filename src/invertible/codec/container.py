"""The ``.inv`` file format: a header, then independent chunks of entropy-coded images.

All integers are unsigned LEB128 varints unless a size is given; multi-byte fixed fields
are little-endian.

Header::

    magic      4 bytes   b"\\x89INV"
    version    1 byte    FORMAT_VERSION
    model      8 bytes   the first 8 bytes of the model's SHA-256 id (weights + config)
    source     1 byte    what the pixels came from (SOURCES: array, idx, png, folder)
    count      varint    number of images N
    height     varint    rows of each image
    width      varint    columns of each image
    chunk      varint    images per chunk (the last chunk may hold fewer)
    meta       varint length, then that many bytes of UTF-8 JSON: what restoring the input
                         needs beyond the pixels (a .npy's dtype and shape, the file names of
                         a folder); empty for an IDX file

Then ``ceil(N / chunk)`` chunks, each::

    length     varint    bytes of payload
    checksum   4 bytes   CRC32 of the chunk's pixels (uint8, N_c x H x W, row-major),
                         seeded with the CRC32 of the header bytes
    payload    length    the ANS words (uint32 little-endian) of the chunk's images

The checksum covers the header too (through its seed), so a damaged header, a damaged
payload or a stream decoded by different arithmetic all end in a checksum error. Chunks
share nothing but the header: one can be decoded, or found corrupt, without the others.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FORMAT_VERSION", "MAGIC", "SOURCES", "Chunk", "FormatError", "Header",
           "pack_chunk", "pixel_checksum", "read_container"]

MAGIC = b"\x89INV"
FORMAT_VERSION = 1
SOURCES = ("array", "idx", "png", "folder")
MODEL_ID_BYTES = 8
# A header may claim at most this many pixels; more is a corrupt header, not an image set.
_MAX_PIXELS = 1 << 36


class FormatError(ValueError):
    """A file that is not a valid ``.inv`` stream (one-line message)."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise FormatError(f"truncated stream: it ends inside the {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self, what: str) -> int:
        n = shift = 0
        while True:
            byte = self.take(1, what)[0]
            n |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return n
            shift += 7
            if shift > 63:
                raise FormatError(f"corrupt stream: the {what} is not a valid number")


@dataclass
class Header:
    """What a stream holds: ``count`` images of ``height`` x ``width`` from ``source``."""

    model_id: bytes
    source: str
    count: int
    height: int
    width: int
    chunk: int
    meta: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    def pack(self) -> bytes:
        meta = json.dumps(self.meta, sort_keys=True).encode() if self.meta else b""
        return b"".join([MAGIC, bytes([self.version]), self.model_id[:MODEL_ID_BYTES],
                         bytes([SOURCES.index(self.source)]), _varint(self.count),
                         _varint(self.height), _varint(self.width), _varint(self.chunk),
                         _varint(len(meta)), meta])

    @property
    def n_chunks(self) -> int:
        return -(-self.count // self.chunk)

    def chunk_range(self, i: int) -> tuple[int, int]:
        """The images ``[start, stop)`` of chunk ``i``."""
        return i * self.chunk, min((i + 1) * self.chunk, self.count)


@dataclass
class Chunk:
    """One chunk as stored: its pixels' checksum and its payload words."""

    index: int
    checksum: int
    words: np.ndarray


def pixel_checksum(header_crc: int, pixels: np.ndarray) -> int:
    """CRC32 of uint8 pixels, seeded with the header's CRC32."""
    return zlib.crc32(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes(), header_crc)


def pack_chunk(words: np.ndarray, checksum: int) -> bytes:
    payload = np.asarray(words, dtype="<u4").tobytes()
    return _varint(len(payload)) + checksum.to_bytes(4, "little") + payload


def read_container(data: bytes) -> tuple[Header, int, list[Chunk]]:
    """Parse a whole stream: its header, the header's CRC32 and its chunks.

    Raises ``FormatError`` for anything but a complete stream of a known version.
    """
    r = _Reader(data)
    if r.take(len(MAGIC), "magic bytes") != MAGIC:
        raise FormatError("not an invertible stream (wrong magic bytes)")
    version = r.take(1, "header")[0]
    if version != FORMAT_VERSION:
        raise FormatError(f"stream format version {version} is not supported (this version of "
                          f"invertible reads version {FORMAT_VERSION})")
    model_id = r.take(MODEL_ID_BYTES, "header")
    source_code = r.take(1, "header")[0]
    if source_code >= len(SOURCES):
        raise FormatError(f"corrupt header: unknown source kind {source_code}")
    count, height, width = r.varint("header"), r.varint("header"), r.varint("header")
    chunk = r.varint("header")
    if min(count, height, width, chunk) < 1 or count * height * width > _MAX_PIXELS:
        raise FormatError(f"corrupt header: {count} images of {height}x{width} in chunks of "
                          f"{chunk}")
    meta_bytes = r.take(r.varint("header"), "header")
    try:
        meta = json.loads(meta_bytes) if meta_bytes else {}
    except (UnicodeDecodeError, ValueError) as err:
        raise FormatError(f"corrupt header: unreadable metadata ({err})") from None
    if not isinstance(meta, dict):
        raise FormatError("corrupt header: its metadata is not a JSON object")
    header = Header(model_id, SOURCES[source_code], count, height, width, chunk, meta, version)
    header_crc = zlib.crc32(data[: r.pos])
    chunks = []
    for i in range(header.n_chunks):
        what = f"chunk {i + 1} of {header.n_chunks}"
        length = r.varint(what)
        checksum = int.from_bytes(r.take(4, what), "little")
        payload = r.take(length, what)
        if length % 4:
            raise FormatError(f"corrupt stream: {what} is not whole 32-bit words")
        chunks.append(Chunk(i, checksum, np.frombuffer(payload, dtype="<u4")))
    if r.pos != len(data):
        raise FormatError(f"corrupt stream: {len(data) - r.pos} bytes after the last chunk")
    return header, header_crc, chunks
