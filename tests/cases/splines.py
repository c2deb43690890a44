"""Rational-quadratic splines: element-wise, coupling (every mask mode), autoregressive,
and the models built on them (NSF coupling and AR, Glow with spline couplings)."""

import torch

from invertible import (
    Inverse,
    MaskedSplineAutoregressive,
    RQSpline,
    Sequential,
    SplineCoupling,
)
from invertible.layers.masks import alternating_mask, channel_mask, checkerboard_mask
from invertible.models.glow import build_glow
from invertible.models.nsf import build_nsf_ar, build_nsf_coupling
from invertible.nets import MLP, ConvResNet, GlowConvNet

from cases.coupling import _perturb_and_mark_actnorm, _unit_interval
from registry import Case

BOUND = 2.0


def with_tails(b: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Mostly inside ``[-BOUND, BOUND]``, some far out in the linear tails, some on the ends."""
    x = 1.5 * torch.randn(b, *shape, dtype=torch.float64)
    flat = x.view(-1)
    flat[::4] *= 4
    flat[1::7] = BOUND
    flat[3::11] = -BOUND
    return x


def mlp(i: int, o: int) -> MLP:
    return MLP(i, o, hidden=8, layers=2)


CASES = [
    Case(
        "spline_elementwise_vector",
        lambda: RQSpline(5, bins=4, tail_bound=BOUND),
        (5,),
        sample=with_tails,
        bad_shapes=[(4,), (5, 1)],
    ),
    Case(
        "spline_elementwise_image",
        lambda: RQSpline((2, 3, 3), bins=3, tail_bound=BOUND),
        (2, 3, 3),
        sample=with_tails,
        bad_shapes=[(2, 3, 4)],
    ),
    Case(
        "spline_coupling_vector",
        lambda: Sequential(
            SplineCoupling(alternating_mask(5), mlp, bins=5, tail_bound=BOUND),
            SplineCoupling(alternating_mask(5, flip=True), mlp, bins=5, tail_bound=BOUND),
        ),
        (5,),
        sample=with_tails,
        bad_shapes=[(6,), (5, 2, 2)],
    ),
    Case(
        "spline_coupling_channel_split",
        lambda: SplineCoupling(
            channel_mask(4), lambda i, o: GlowConvNet(i, o, hidden=4), bins=3, tail_bound=BOUND
        ),
        (4, 2, 3),
        sample=with_tails,
        bad_shapes=[(3, 2, 3), (4,)],
    ),
    Case(
        "spline_coupling_checkerboard",
        lambda: SplineCoupling(
            checkerboard_mask(3, 4), lambda i, o: ConvResNet(i, o, hidden=4, blocks=1),
            bins=4, tail_bound=BOUND, channels=2,
        ),
        (2, 3, 4),
        sample=with_tails,
        bad_shapes=[(2, 4, 4), (1, 3, 4)],
    ),
    Case(
        "spline_autoregressive",
        lambda: Sequential(
            MaskedSplineAutoregressive(4, bins=4, tail_bound=BOUND, hidden=8, order=[3, 1, 0, 2]),
            MaskedSplineAutoregressive(4, bins=6, tail_bound=BOUND, hidden=6, layers=1),
        ),
        (4,),
        sample=with_tails,
        bad_shapes=[(3,), (4, 2)],
    ),
    Case(
        "spline_autoregressive_inverse",
        lambda: Inverse(MaskedSplineAutoregressive(3, bins=4, tail_bound=BOUND, hidden=8)),
        (3,),
        sample=with_tails,
    ),
    Case(
        "spline_model_nsf_coupling",
        lambda: build_nsf_coupling(3, depth=3, hidden=8, bins=4, tail_bound=BOUND).bijection,
        (3,),
        sample=with_tails,
        bad_shapes=[(2,)],
    ),
    Case(
        "spline_model_nsf_ar",
        lambda: build_nsf_ar(3, depth=2, hidden=8, bins=4, tail_bound=BOUND).bijection,
        (3,),
        sample=with_tails,
        bad_shapes=[(4,)],
    ),
    Case(
        "spline_model_glow",
        lambda: build_glow((1, 4, 4), levels=2, depth=1, hidden=4, coupling="spline",
                           bins=4).bijection,
        (1, 4, 4),
        prepare=_perturb_and_mark_actnorm,
        sample=_unit_interval,
        bad_shapes=[(1, 4, 3)],
    ),
]
