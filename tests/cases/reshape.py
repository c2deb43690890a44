from invertible import (
    ElementwiseAffine,
    FactorOut,
    Flatten,
    Inverse,
    Reshape,
    Sequential,
    SneakyReLU,
    Squeeze,
)

from registry import Case

CASES = [
    Case("squeeze", Squeeze, (2, 4, 6), bad_shapes=[(2, 3, 4)]),
    Case("unsqueeze", lambda: Inverse(Squeeze()), (8, 2, 3)),
    Case("reshape", lambda: Reshape((2, 6), (3, 4)), (2, 6), bad_shapes=[(4, 3)]),
    Case("flatten", lambda: Flatten((2, 3, 2)), (2, 3, 2)),
    Case(
        "factor_out_multiscale",
        lambda: Sequential(
            Squeeze(),
            ElementwiseAffine((4, 2, 2)),
            FactorOut(2, Sequential(ElementwiseAffine((2, 2, 2)), SneakyReLU(0.2))),
            Inverse(Squeeze()),
        ),
        (1, 4, 4),
    ),
]
