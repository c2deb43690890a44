"""Integer images <-> ANS words: the integer flow's latents, entropy coded with constriction.

Each latent symbol is coded with a categorical model over the symbols near its mixture's
components (``prior.windows``) plus an escape, with the probabilities that
``prior.probability_table`` computes from the flow's mixture parameters. A symbol outside
its window is coded as the escape and then as a 32-bit integer (two uniform 16-bit words),
so every image can be coded.

Why the encoder and the decoder agree bit for bit. The decoder recomputes every parameter
from symbols it has already decoded, with the same network on the same values, so it must
also get the same floats:

- the model runs in float32 with one intra-op thread (``single_thread``), on the same
  batch of images in the same memory layout on both sides, so every convolution runs the
  same kernel with the same summation order, whatever the caller's thread count;
- the tables are then built in float64 by elementwise arithmetic (no reduction whose order
  could change), and constriction quantizes them to integers deterministically.

Different hardware or library builds may still compute different floats; the file's pixel
checksum turns that case into an error, never into wrong pixels.

The ANS coder is a stack: the decoder reads scales last to first (``IntegerFlow.decode``),
so the encoder pushes them first to last, and within a scale pushes the escapes' payloads
before the symbols (they are read after them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import constriction
import numpy as np
import torch
from torch import Tensor

from . import prior
from .integer_flow import IntegerFlow

__all__ = ["MAX_BATCH", "CodingError", "decode_images", "encode_images", "single_thread"]

# Table entries built at once (memory: 24 bytes each per mixture component).
_TABLE_ENTRIES = 1 << 19
# Images per model call: a chunk of many large images' tiles is coded in several calls.
MAX_BATCH = 256
_HALF = 1 << 16


class CodingError(ValueError):
    """A stream that does not decode (corrupt, truncated, or made by another model)."""


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the model with one intra-op thread and no autograd, restoring the caller's count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.set_num_threads(before)


def _groups(params: Tensor, n_bins: int) -> list[tuple[Tensor, Tensor, int]]:
    """The order in which a scale's symbols are coded, from their parameters ``(N, 3K)``.

    Windows lie within ``-n_bins .. n_bins - 1``. Symbols are grouped by table width (the power of two at least their window's), narrow
    first, and cut into blocks of bounded memory; each group is ``(positions, lows, width)``.
    Both sides derive it from the same parameters, so they agree on it.
    """
    # Latents stay near the centred pixel range; rarer symbols take the escape.
    low, count = prior.windows(params, (-n_bins, n_bins - 1))
    width = torch.clamp(count, min=2)
    width = torch.pow(2, torch.ceil(torch.log2(width.double()))).to(torch.int64)
    groups = []
    for w in torch.unique(width).tolist():
        where = torch.nonzero(width == w).reshape(-1)
        step = max(64, _TABLE_ENTRIES // w)
        for i in range(0, len(where), step):
            pos = where[i : i + step]
            groups.append((pos, low[pos], int(w)))
    return groups


def _push(coder: constriction.stream.stack.AnsCoder, z: Tensor, params: Tensor,
          n_bins: int) -> None:
    symbols = z.reshape(-1).to(torch.int64)
    p = params.reshape(-1, params.shape[-1])
    groups = _groups(p, n_bins)
    escaped = torch.zeros(len(symbols), dtype=torch.bool)
    coded = []
    for pos, low, w in groups:
        j = symbols[pos] - low
        out = (j < 0) | (j >= w)
        escaped[pos[out]] = True
        coded.append(torch.where(out, w, j).numpy().astype(np.int32))
    if bool(escaped.any()):
        values = symbols[escaped]
        if bool((values.abs() >= 1 << 30).any()):
            raise CodingError("a latent symbol exceeds 30 bits: this model cannot code the image")
        zigzag = ((values << 1) ^ (values >> 63)).numpy().astype(np.int64)
        halves = np.stack([zigzag >> 16, zigzag & (_HALF - 1)], axis=1).reshape(-1)
        coder.encode_reverse(halves.astype(np.int32), constriction.stream.model.Uniform(_HALF))
    model = constriction.stream.model.Categorical(perfect=False)
    for (pos, low, w), indices in zip(reversed(groups), reversed(coded), strict=True):
        table = prior.probability_table(p[pos], low, w).numpy()
        coder.encode_reverse(indices, model, table)


def _pop(coder: constriction.stream.stack.AnsCoder, params: Tensor, shape: tuple[int, ...],
         n_bins: int) -> Tensor:
    p = params.reshape(-1, params.shape[-1])
    model = constriction.stream.model.Categorical(perfect=False)
    symbols = torch.zeros(len(p), dtype=torch.int64)
    escaped = torch.zeros(len(p), dtype=torch.bool)
    for pos, low, w in _groups(p, n_bins):
        table = prior.probability_table(p[pos], low, w).numpy()
        j = torch.from_numpy(np.asarray(coder.decode(model, table), dtype=np.int64))
        symbols[pos] = low + j
        escaped[pos[j == w]] = True
    n_escaped = int(escaped.sum())
    if n_escaped:
        words = np.asarray(coder.decode(constriction.stream.model.Uniform(_HALF), 2 * n_escaped),
                           dtype=np.int64).reshape(-1, 2)
        zigzag = torch.from_numpy((words[:, 0] << 16) | words[:, 1])
        symbols[escaped] = (zigzag >> 1) ^ -(zigzag & 1)
    return symbols.reshape(shape)


def _batches(n: int) -> list[slice]:
    """The model calls a stream of ``n`` images is coded in (bounded memory); both sides
    derive them from ``n`` alone, so they run the same batches."""
    return [slice(i, min(i + MAX_BATCH, n)) for i in range(0, n, MAX_BATCH)]


def encode_images(flow: IntegerFlow, images: Tensor) -> np.ndarray:
    """Integer levels ``(B, C, H, W)`` -> compressed words (uint32), one ANS stream."""
    coder = constriction.stream.stack.AnsCoder()
    with single_thread():
        # The decoder pops the last batch first.
        for part in _batches(len(images)):
            latents, params = flow(images[part].to(flow.top_params.device))
            for z, p in zip(latents, params, strict=True):
                _push(coder, z.cpu(), p.cpu(), flow.n_bins)
    return np.asarray(coder.get_compressed(), dtype=np.uint32)


def decode_images(flow: IntegerFlow, words: np.ndarray, count: int) -> Tensor:
    """Compressed words from ``encode_images`` -> the ``count`` images, int64 ``(N, C, H, W)``.

    Raises ``CodingError`` when the words do not decode to exactly that many images (the
    caller still verifies the pixels against their checksum).
    """
    if words.size == 0:
        raise CodingError("empty stream")
    coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
    device = flow.top_params.device
    parts = []
    with single_thread():
        for part in reversed(_batches(count)):
            batch = part.stop - part.start

            def draw(i: int, params: Tensor, batch: int = batch) -> Tensor:
                shape = (batch, *flow.latent_shapes[i])
                return _pop(coder, params.cpu(), shape, flow.n_bins).to(device)

            try:
                parts.append(flow.decode(batch, draw))
            except (ValueError, RuntimeError) as err:  # constriction's errors on bad data
                raise CodingError(f"the stream does not decode ({err})") from None
    if not coder.is_empty():
        raise CodingError("the stream holds more data than its images")
    return torch.cat(parts[::-1]).round().to(torch.int64).cpu()
