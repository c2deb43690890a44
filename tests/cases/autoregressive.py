"""Masked autoregressive flows: MAF (one-pass density) and IAF (its inverse)."""

from invertible import Inverse, MaskedAutoregressive, Sequential
from invertible.models.maf import build_maf

from registry import Case

CASES = [
    Case(
        "autoregressive_maf",
        lambda: MaskedAutoregressive(4, hidden=8, layers=2),
        (4,),
        bad_shapes=[(3,), (4, 2)],
    ),
    Case(
        "autoregressive_maf_custom_order",
        lambda: Sequential(
            MaskedAutoregressive(3, hidden=6, layers=1, order=[2, 0, 1]),
            MaskedAutoregressive(3, hidden=6, layers=3, clamp=None),
        ),
        (3,),
    ),
    Case(
        "autoregressive_iaf",
        lambda: Inverse(MaskedAutoregressive(5, hidden=8, layers=2)),
        (5,),
        bad_shapes=[(6,)],
    ),
    Case(
        "autoregressive_model_maf",
        lambda: build_maf(3, depth=3, hidden=6).bijection,
        (3,),
        bad_shapes=[(4,)],
    ),
]
