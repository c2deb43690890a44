import torch

from invertible import (
    ElementwiseAffine,
    Exp,
    Inverse,
    LeakyReLU,
    Logit,
    Sigmoid,
    SneakyReLU,
)

from registry import Case


def _unit_interval(b, shape):
    return 0.05 + 0.9 * torch.rand(b, *shape, dtype=torch.float64)


CASES = [
    Case("elementwise_affine_vec", lambda: ElementwiseAffine(5), (5,), bad_shapes=[(4,)]),
    Case(
        "elementwise_affine_img",
        lambda: ElementwiseAffine((2, 3, 4)),
        (2, 3, 4),
        bad_shapes=[(2, 4, 3)],
    ),
    Case("exp_vec", Exp, (4,)),
    Case("exp_img", Exp, (2, 3, 3)),
    Case("sigmoid_vec", Sigmoid, (4,)),
    Case("logit_vec", Logit, (4,), sample=_unit_interval),
    Case("logit_img", Logit, (1, 3, 2), sample=_unit_interval),
    Case("leaky_relu_vec", lambda: LeakyReLU(0.2), (6,)),
    Case("sneaky_relu_vec", lambda: SneakyReLU(0.1), (6,)),
    Case("sneaky_relu_img", lambda: SneakyReLU(0.3), (2, 3, 5)),
    Case("sneaky_relu_slope_one_is_identity", lambda: SneakyReLU(1.0), (2, 3, 5)),
    Case("sneaky_relu_wide_range", lambda: SneakyReLU(0.05), (8,),
         sample=lambda b, s: 20 * torch.randn(b, *s, dtype=torch.float64)),
    Case("inverse_of_sigmoid", lambda: Inverse(Sigmoid()), (4,), sample=_unit_interval),
]
