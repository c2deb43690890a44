from invertible import (
    HaarDownsample,
    Inverse,
    InvertibleAvgPool2d,
    NNDownsample,
    Sequential,
    SneakyReLU,
)

from registry import Case

_ODD = [(2, 3, 4), (2, 4, 5), (2, 3, 3)]

CASES = [
    Case("down_nn_square", NNDownsample, (2, 4, 4), bad_shapes=_ODD),
    Case("down_nn_nonsquare", NNDownsample, (1, 2, 6), bad_shapes=_ODD),
    Case("down_nn_inverse", lambda: Inverse(NNDownsample()), (4, 3, 2), bad_shapes=[(3, 3, 2)]),
    Case("down_avgpool_square", InvertibleAvgPool2d, (2, 4, 4), bad_shapes=_ODD),
    Case("down_avgpool_nonsquare", InvertibleAvgPool2d, (3, 2, 4), bad_shapes=_ODD),
    Case(
        "down_avgpool_inverse",
        lambda: Inverse(InvertibleAvgPool2d()),
        (8, 1, 3),
        bad_shapes=[(6, 1, 3)],
    ),
    Case("down_haar_square", HaarDownsample, (1, 4, 4), bad_shapes=_ODD),
    Case("down_haar_nonsquare", HaarDownsample, (2, 6, 2), bad_shapes=_ODD),
    Case("down_haar_inverse", lambda: Inverse(HaarDownsample()), (4, 1, 5), bad_shapes=[(5, 1, 5)]),
    Case(
        "down_pool_then_sneaky",
        lambda: Sequential(InvertibleAvgPool2d(), SneakyReLU(0.3), Inverse(HaarDownsample())),
        (1, 4, 2),
    ),
]
