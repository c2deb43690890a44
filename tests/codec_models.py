"""Integer flows for the codec tests: untrained, with every weight perturbed so that each
coupling's rounded translation and each prior are far from their identity/flat start."""

from __future__ import annotations

import torch

from invertible.codec import IntegerFlow


def perturbed_flow(shape: tuple[int, int, int], n_bins: int = 256, levels: int = 2,
                   depth: int = 2, hidden: int = 16, seed: int = 0,
                   scale: float = 0.05) -> IntegerFlow:
    """An ``IntegerFlow`` in eval mode whose weights carry seeded noise of size ``scale``."""
    torch.manual_seed(seed)
    flow = IntegerFlow(shape, n_bins, levels=levels, depth=depth, hidden=hidden)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return flow.eval()
