"""Registry cases for the fixed input maps: LogitTransform and Scale."""

import torch

from invertible import ElementwiseAffine, Inverse, LogitTransform, Scale, Sequential

from registry import Case


def _closed_unit(b, shape):
    """Points in [0, 1] including both ends, as dequantized 8-bit data can reach 0."""
    x = torch.rand(b, *shape, dtype=torch.float64)
    flat = x.view(-1)
    flat[0], flat[-1] = 0.0, 1.0
    return x


def _open_unit(b, shape):
    return 0.02 + 0.96 * torch.rand(b, *shape, dtype=torch.float64)


CASES = [
    Case("logit_transform_vec", lambda: LogitTransform(0.05), (5,), sample=_closed_unit),
    Case("logit_transform_img", lambda: LogitTransform(1e-6), (2, 3, 3), sample=_closed_unit),
    Case("logit_transform_alpha0", lambda: LogitTransform(0.0), (4,), sample=_open_unit),
    Case(
        "logit_transform_then_affine",
        lambda: Sequential(LogitTransform(0.1), ElementwiseAffine((1, 2, 2))),
        (1, 2, 2),
        sample=_closed_unit,
        bad_shapes=[(1, 2, 3)],
    ),
    Case("scale_vec", lambda: Scale(2.5, 0.3), (4,)),
    Case("scale_negative_img", lambda: Scale(-0.5, 1.0), (3, 2, 2)),
    Case("scale_centre_inverse", lambda: Inverse(Scale(1.0, -0.5)), (6,), sample=_closed_unit),
]
