"""Pixels <-> ``.inv`` streams: the integer flow, the ANS coder and the container together.

Images the size of the model's input are coded as they are. Other sizes are cut into tiles
of the model's size after padding the right and bottom edges by repeating the last row and
column (cheap to code); the stream records the true size and the decoder crops the padding
away. Chunks are coded independently, so they can be decoded in parallel (``workers``) and
a damaged chunk is reported on its own.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .coder import MAX_BATCH, CodingError, decode_images, encode_images, single_thread
from .container import Chunk, FormatError, Header, pack_chunk, pixel_checksum, read_container
from .images import SourceImages
from .integer_flow import IntegerFlow

__all__ = ["Compressor", "StreamError", "default_chunk"]

# Tiles per chunk by default (one model call): enough that the per-chunk bytes (length,
# checksum, coder state) stay small, few enough to decode chunks in parallel.
_TILES_PER_CHUNK = MAX_BATCH


class StreamError(ValueError):
    """A stream that cannot be decoded into the pixels it was made from (one-line message)."""


def default_chunk(height: int, width: int, tile: tuple[int, int]) -> int:
    """Images per chunk: about ``_TILES_PER_CHUNK`` tiles, at least one image."""
    return max(1, _TILES_PER_CHUNK // _tiles_per_image(height, width, tile))


def _tiles_per_image(height: int, width: int, tile: tuple[int, int]) -> int:
    return -(-height // tile[0]) * -(-width // tile[1])


class Compressor:
    """Codes grey images with a trained ``IntegerFlow`` (single-channel) under ``model_id``,
    the SHA-256 digest (bytes) naming its weights and config."""

    def __init__(self, flow: IntegerFlow, model_id: bytes) -> None:
        if flow.shape[0] != 1:
            raise StreamError(f"this model codes {flow.shape[0]}-channel images; the codec's "
                              "inputs are grey (1 channel)")
        self.flow = flow.eval()
        self.model_id = model_id
        self.tile = (flow.shape[1], flow.shape[2])
        self.max_level = flow.n_bins - 1

    # -- tiles ---------------------------------------------------------------------------
    def _to_tiles(self, pixels: np.ndarray) -> torch.Tensor:
        n, h, w = pixels.shape
        th, tw = self.tile
        ph, pw = -(-h // th) * th, -(-w // tw) * tw
        if (ph, pw) != (h, w):
            pixels = np.pad(pixels, ((0, 0), (0, ph - h), (0, pw - w)), mode="edge")
        tiles = pixels.reshape(n, ph // th, th, pw // tw, tw).transpose(0, 1, 3, 2, 4)
        return torch.from_numpy(np.ascontiguousarray(tiles).reshape(-1, 1, th, tw))

    def _from_tiles(self, tiles: torch.Tensor, n: int, h: int, w: int) -> np.ndarray:
        th, tw = self.tile
        rows, cols = -(-h // th), -(-w // tw)
        a = tiles.numpy().reshape(n, rows, cols, th, tw).transpose(0, 1, 3, 2, 4)
        return a.reshape(n, rows * th, cols * tw)[:, :h, :w]

    # -- compress ------------------------------------------------------------------------
    def compress(self, images: SourceImages, chunk: int | None = None,
                 progress: Callable[[int], None] | None = None) -> bytes:
        """The ``.inv`` stream of ``images``; ``chunk`` images per chunk (default: about
        256 tiles); ``progress(k)`` is called after each chunk of ``k`` images."""
        px = images.pixels
        if px.ndim != 3 or px.dtype != np.uint8 or px.size == 0:
            raise StreamError(f"expected uint8 images (N, H, W), got {px.dtype} {px.shape}")
        if int(px.max()) > self.max_level:
            raise StreamError(f"pixel value {int(px.max())} exceeds this model's "
                              f"{self.max_level + 1} levels")
        n, h, w = px.shape
        chunk = chunk or default_chunk(h, w, self.tile)
        header = Header(self.model_id, images.source, n, h, w, chunk, images.meta)
        head = header.pack()
        header_crc = zlib.crc32(head)
        parts = [head]
        for i in range(header.n_chunks):
            start, stop = header.chunk_range(i)
            words = encode_images(self.flow, self._to_tiles(px[start:stop]))
            parts.append(pack_chunk(words, pixel_checksum(header_crc, px[start:stop])))
            if progress:
                progress(stop - start)
        return b"".join(parts)

    # -- decompress ----------------------------------------------------------------------
    def read_header(self, data: bytes) -> tuple[Header, int, list[Chunk]]:
        """Parse ``data`` and check that this model made it."""
        try:
            header, header_crc, chunks = read_container(data)
        except FormatError as err:
            raise StreamError(str(err)) from None
        if header.model_id != self.model_id[: len(header.model_id)]:
            raise StreamError(f"the stream was made by another model (id "
                              f"{header.model_id.hex()}, this run is "
                              f"{self.model_id[:len(header.model_id)].hex()}): decode it with "
                              "the run that compressed it")
        return header, header_crc, chunks

    def _decode_chunk(self, header: Header, header_crc: int, chunk: Chunk) -> np.ndarray:
        start, stop = header.chunk_range(chunk.index)
        n = stop - start
        where = (f"chunk {chunk.index + 1} of {header.n_chunks} (images {start}..{stop - 1})")
        tiles_per = _tiles_per_image(header.height, header.width, self.tile)
        try:
            tiles = decode_images(self.flow, chunk.words, n * tiles_per)
        except CodingError as err:
            raise StreamError(f"{where} is corrupt: {err}") from None
        if int(tiles.min()) < 0 or int(tiles.max()) > self.max_level:
            raise StreamError(f"{where} is corrupt: it decodes to values outside the pixel range")
        px = self._from_tiles(tiles.to(torch.uint8), n, header.height, header.width)
        if pixel_checksum(header_crc, px) != chunk.checksum:
            raise StreamError(f"{where} is corrupt: the decoded pixels fail their checksum")
        return px

    def decompress(self, data: bytes, workers: int = 1,
                   progress: Callable[[int], None] | None = None) -> SourceImages:
        """The images of a stream from ``compress``, verified against their checksums.

        ``workers`` threads decode chunks in parallel (each with one intra-op thread, so the
        result never depends on it). Raises ``StreamError`` naming the first bad chunk.
        """
        header, header_crc, chunks = self.read_header(data)

        def one(chunk: Chunk) -> np.ndarray:
            px = self._decode_chunk(header, header_crc, chunk)
            if progress:
                progress(len(px))
            return px

        with single_thread():
            if workers > 1 and len(chunks) > 1:
                with ThreadPoolExecutor(workers) as pool:
                    parts = list(pool.map(one, chunks))
            else:
                parts = [one(c) for c in chunks]
        return SourceImages(np.concatenate(parts), header.source, header.meta)
