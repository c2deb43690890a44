"""Coupling layers in every mask mode, additive and affine, vectors and images."""

import torch

from invertible import ActNorm, AdditiveCoupling, AffineCoupling, Sequential
from invertible.layers.masks import (
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    half_mask,
)
from invertible.models.glow import build_glow
from invertible.models.realnvp import build_realnvp, build_realnvp_2d
from invertible.nets import MLP, ConvResNet, GlowConvNet

from registry import Case, perturb_parameters


def mlp(i: int, o: int) -> MLP:
    return MLP(i, o, hidden=8, layers=2)


def resnet(i: int, o: int) -> ConvResNet:
    return ConvResNet(i, o, hidden=4, blocks=1)


def glownet(i: int, o: int) -> GlowConvNet:
    return GlowConvNet(i, o, hidden=4)


CASES = [
    Case(
        "coupling_additive_vector_half",
        lambda: AdditiveCoupling(half_mask(5), mlp),
        (5,),
        bad_shapes=[(4,), (5, 2, 2)],
    ),
    Case(
        "coupling_affine_vector_alternating",
        lambda: Sequential(
            AffineCoupling(alternating_mask(5), mlp),
            AffineCoupling(alternating_mask(5, flip=True), mlp),
        ),
        (5,),
        bad_shapes=[(6,)],
    ),
    Case(
        "coupling_affine_vector_unclamped",
        lambda: AffineCoupling(half_mask(4, flip=True), mlp, clamp=None),
        (4,),
    ),
    Case(
        "coupling_affine_channel_split",
        lambda: Sequential(
            AffineCoupling(channel_mask(3), resnet),
            AffineCoupling(channel_mask(3, flip=True), glownet),
        ),
        (3, 3, 2),
        bad_shapes=[(2, 3, 2), (3,)],
    ),
    Case(
        "coupling_additive_channel_split",
        lambda: AdditiveCoupling(channel_mask(4), glownet),
        (4, 2, 2),
    ),
    Case(
        "coupling_affine_checkerboard",
        lambda: Sequential(
            AffineCoupling(checkerboard_mask(3, 4), resnet),
            AffineCoupling(checkerboard_mask(3, 4, flip=True), resnet),
        ),
        (1, 3, 4),
        bad_shapes=[(1, 4, 4), (2, 3, 4)],
    ),
    Case(
        "coupling_affine_checkerboard_multichannel",
        lambda: AffineCoupling(checkerboard_mask(2, 3, flip=True), glownet, channels=2),
        (2, 2, 3),
        bad_shapes=[(1, 2, 3)],
    ),
    Case(
        "coupling_additive_checkerboard_full_mask",
        lambda: AdditiveCoupling(checkerboard_mask(2, 2).expand(2, 2, 2), resnet),
        (2, 2, 2),
    ),
]


def _unit_interval(b: int, shape: tuple[int, ...]) -> torch.Tensor:
    return 0.02 + 0.96 * torch.rand(b, *shape, dtype=torch.float64)


def _perturb_and_mark_actnorm(module: torch.nn.Module) -> None:
    perturb_parameters(module)
    for m in module.modules():
        if isinstance(m, ActNorm):
            m.mark_initialized()


CASES += [
    Case(
        "coupling_model_realnvp_2d",
        lambda: build_realnvp_2d(dim=3, depth=3, hidden=8).bijection,
        (3,),
        bad_shapes=[(2,)],
    ),
    Case(
        "coupling_model_realnvp_image",
        lambda: build_realnvp((1, 4, 4), levels=1, depth=2, hidden=4, blocks=1).bijection,
        (1, 4, 4),
        sample=_unit_interval,
        bad_shapes=[(1, 4, 6), (2, 4, 4)],
    ),
    Case(
        "coupling_model_realnvp_two_levels",
        lambda: build_realnvp((1, 4, 8), levels=2, depth=1, hidden=4, blocks=0).bijection,
        (1, 4, 8),
        sample=_unit_interval,
    ),
    Case(
        "coupling_model_glow",
        lambda: build_glow((1, 4, 4), levels=1, depth=1, hidden=8).bijection,
        (1, 4, 4),
        prepare=_perturb_and_mark_actnorm,
        sample=_unit_interval,
        # Glow is fully convolutional: any even H, W of the right channel count is valid.
        bad_shapes=[(1, 4, 3), (3, 4, 4)],
    ),
    Case(
        "coupling_model_glow_two_levels",
        lambda: build_glow((1, 4, 4), levels=2, depth=1, hidden=4).bijection,
        (1, 4, 4),
        prepare=_perturb_and_mark_actnorm,
        sample=_unit_interval,
    ),
]
