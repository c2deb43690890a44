"""Conditional bijections: every layer whose conditioner reads a context, in each mask mode,
the containers that pass a context on, and the conditional models.

Vector contexts ``(B, K)`` everywhere (broadcast over the pixels for image couplings); two
image couplings take an image-shaped context ``(B, K, H, W)`` instead. Spline inputs are
N(0, 1), not in the tails: a row wholly in the identity tails would not see its context
(the tails themselves are covered by ``cases/splines.py``).
"""

from invertible import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    FactorOut,
    Inverse,
    InvertibleConv1x1,
    MaskedAutoregressive,
    MaskedSplineAutoregressive,
    Sequential,
    SplineCoupling,
)
from invertible.layers.masks import alternating_mask, channel_mask, checkerboard_mask, half_mask
from invertible.models.glow import build_glow
from invertible.models.iconvnet import build_iconvnet
from invertible.models.maf import build_maf
from invertible.models.nsf import build_nsf_ar, build_nsf_coupling
from invertible.models.realnvp import build_realnvp, build_realnvp_2d

from cases.coupling import _perturb_and_mark_actnorm, _unit_interval, glownet, mlp, resnet
from registry import Case

CASES = [
    # -- couplings, vectors --------------------------------------------------------------
    Case(
        "cond_coupling_additive_vector_half",
        lambda: AdditiveCoupling(half_mask(5), mlp, context_features=3),
        (5,),
        bad_shapes=[(4,), (5, 2, 2)],
        context_shape=(3,),
    ),
    Case(
        "cond_coupling_affine_vector_alternating",
        lambda: Sequential(
            AffineCoupling(alternating_mask(5), mlp, context_features=2),
            AffineCoupling(alternating_mask(5, flip=True), mlp, context_features=2),
        ),
        (5,),
        bad_shapes=[(6,)],
        context_shape=(2,),
    ),
    Case(
        "cond_coupling_spline_vector",
        lambda: SplineCoupling(alternating_mask(4), mlp, bins=4, tail_bound=2.0,
                               context_features=2),
        (4,),
        context_shape=(2,),
    ),
    # -- couplings, images: channel split and checkerboard -------------------------------
    Case(
        "cond_coupling_affine_channel_split",
        lambda: AffineCoupling(channel_mask(3), resnet, context_features=2),
        (3, 3, 2),
        bad_shapes=[(2, 3, 2)],
        context_shape=(2,),
    ),
    Case(
        "cond_coupling_additive_channel_split_image_context",
        lambda: AdditiveCoupling(channel_mask(4), glownet, context_features=2),
        (4, 2, 2),
        bad_shapes=[(3, 2, 2)],
        context_shape=(2, 2, 2),
    ),
    Case(
        "cond_coupling_spline_channel_split",
        lambda: SplineCoupling(channel_mask(2), glownet, bins=3, context_features=3),
        (2, 2, 2),
        context_shape=(3,),
    ),
    Case(
        "cond_coupling_affine_checkerboard",
        lambda: Sequential(
            AffineCoupling(checkerboard_mask(3, 4), resnet, context_features=2),
            AffineCoupling(checkerboard_mask(3, 4, flip=True), resnet, context_features=2),
        ),
        (1, 3, 4),
        bad_shapes=[(1, 4, 4)],
        context_shape=(2,),
    ),
    Case(
        "cond_coupling_spline_checkerboard_image_context",
        lambda: SplineCoupling(checkerboard_mask(2, 3), glownet, bins=3, channels=2,
                               context_features=2),
        (2, 2, 3),
        context_shape=(2, 2, 3),
    ),
    # -- autoregressive: MAF, IAF, NSF-AR ------------------------------------------------
    Case(
        "cond_autoregressive_maf",
        lambda: MaskedAutoregressive(4, hidden=8, layers=2, context_features=3),
        (4,),
        bad_shapes=[(3,)],
        context_shape=(3,),
    ),
    Case(
        "cond_autoregressive_iaf",
        lambda: Inverse(MaskedAutoregressive(5, hidden=8, layers=1, context_features=2)),
        (5,),
        context_shape=(2,),
    ),
    Case(
        "cond_autoregressive_nsf_ar",
        lambda: MaskedSplineAutoregressive(3, bins=4, tail_bound=2.0, hidden=6,
                                           context_features=2),
        (3,),
        context_shape=(2,),
    ),
    # -- containers mixing plain and conditional layers ----------------------------------
    Case(
        "cond_mixed_sequential_factor_out",
        lambda: Sequential(
            ActNorm(4),
            InvertibleConv1x1(4),
            AffineCoupling(channel_mask(4), glownet, context_features=2),
            FactorOut(2, AdditiveCoupling(channel_mask(2, flip=True), glownet,
                                          context_features=2)),
        ),
        (4, 2, 2),
        prepare=_perturb_and_mark_actnorm,
        bad_shapes=[(3, 2, 2)],
        context_shape=(2,),
    ),
    # -- conditional models --------------------------------------------------------------
    Case(
        "cond_model_glow_two_levels",
        lambda: build_glow((1, 4, 4), levels=2, depth=1, hidden=4,
                           context_features=3).bijection,
        (1, 4, 4),
        prepare=_perturb_and_mark_actnorm,
        sample=_unit_interval,
        bad_shapes=[(1, 4, 3)],
        context_shape=(3,),
    ),
    Case(
        "cond_model_glow_spline",
        lambda: build_glow((1, 4, 4), levels=1, depth=1, hidden=4, coupling="spline", bins=3,
                           context_features=2).bijection,
        (1, 4, 4),
        prepare=_perturb_and_mark_actnorm,
        sample=_unit_interval,
        context_shape=(2,),
    ),
    Case(
        "cond_model_realnvp_image",
        lambda: build_realnvp((1, 4, 4), levels=1, depth=1, hidden=4, blocks=0,
                              context_features=2).bijection,
        (1, 4, 4),
        sample=_unit_interval,
        context_shape=(2,),
    ),
    Case(
        "cond_model_realnvp_2d",
        lambda: build_realnvp_2d(dim=3, depth=2, hidden=8, context_features=2).bijection,
        (3,),
        context_shape=(2,),
    ),
    Case(
        "cond_model_maf",
        lambda: build_maf(3, depth=2, hidden=6, context_features=2).bijection,
        (3,),
        bad_shapes=[(4,)],
        context_shape=(2,),
    ),
    Case(
        "cond_model_nsf_coupling",
        lambda: build_nsf_coupling(3, depth=2, hidden=6, bins=4, tail_bound=2.0,
                                   context_features=2).bijection,
        (3,),
        context_shape=(2,),
    ),
    Case(
        "cond_model_nsf_ar",
        lambda: build_nsf_ar(3, depth=2, hidden=6, bins=4, tail_bound=2.0,
                             context_features=2).bijection,
        (3,),
        context_shape=(2,),
    ),
    Case(
        "cond_model_iconvnet_hybrid",
        lambda: build_iconvnet((1, 4, 4), levels=1, depth=1, hybrid=True, coupling_hidden=4,
                               context_features=2).bijection,
        (1, 4, 4),
        prepare=_perturb_and_mark_actnorm,
        sample=_unit_interval,
        bad_shapes=[(1, 4, 6)],
        context_shape=(2,),
    ),
]
