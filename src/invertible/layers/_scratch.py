"""A reusable per-thread scratch buffer for large temporaries on the CPU (private).

PyTorch's CPU allocator hands large tensors straight to the C library, which maps fresh
pages for each and returns them on free; the first touch of every page then faults. For
the uncached log-det at c = 64 on a 32 x 32 image, the 16 MiB spectrum that the LU
factorises in place spent ~10 ms (a third of the log-det) in page faults on the
benchmark machine. Reusing one buffer per thread keeps those pages mapped. Accelerators
have caching allocators, so there a fresh tensor is returned.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

_LOCAL = threading.local()


def scratch(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """An uninitialised contiguous tensor of ``shape`` whose storage is reused by the next
    call on this thread with the same dtype: read it only until then, and never return it.

    The buffer grows to the largest request and is kept for the thread's lifetime.
    """
    if device.type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    buffers: dict[torch.dtype, Tensor] = _LOCAL.__dict__.setdefault("buffers", {})
    numel = math.prod(shape)
    buf = buffers.get(dtype)
    if buf is None or buf.numel() < numel:
        # A plain tensor even under inference mode, so that later writes outside it work.
        with torch.inference_mode(False):
            buf = torch.empty(numel, dtype=dtype)
        buffers[dtype] = buf
    return buf[:numel].view(shape)
