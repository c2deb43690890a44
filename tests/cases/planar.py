"""Planar flows: one layer, a stack of them (float64, N(0, 1) inputs with a far tail), and
the amortized (conditional) layer of the Flow-VAE's planar posterior."""

import torch

from invertible import PlanarFlow, Sequential

from registry import Case


def with_far_rows(b: int, shape: tuple[int, ...]) -> torch.Tensor:
    """N(0, 1), with every third row scaled out to where the tanh saturates."""
    x = torch.randn(b, *shape, dtype=torch.float64)
    x[::3] *= 10
    return x


CASES = [
    Case("planar", lambda: PlanarFlow(5), (5,), bad_shapes=[(4,), (5, 1)]),
    Case(
        "planar_stack",
        lambda: Sequential(PlanarFlow(4), PlanarFlow(4), PlanarFlow(4)),
        (4,),
        sample=with_far_rows,
        bad_shapes=[(3,)],
    ),
    Case(
        "planar_conditional_stack",
        lambda: Sequential(PlanarFlow(4, context_features=3), PlanarFlow(4),
                           PlanarFlow(4, context_features=3)),
        (4,),
        sample=with_far_rows,
        bad_shapes=[(5,)],
        context_shape=(3,),
    ),
]
