import torch

from invertible import ActNorm, CircularConv2d, Inverse, Sequential, SneakyReLU
from invertible.models.iconvnet import IConvNet
from invertible.models.iconvnet_paper import PaperIConvNet

from registry import Case, perturb_parameters


def _perturbed_actnorm_marked(module: torch.nn.Module) -> None:
    perturb_parameters(module)
    for m in module.modules():
        if isinstance(m, ActNorm):
            m.mark_initialized()


def _unit_interval(b, shape):
    return 0.02 + 0.96 * torch.rand(b, *shape, dtype=torch.float64)


CASES = [
    Case(
        "circ_conv_k3_square_odd",
        lambda: CircularConv2d(2, 3),
        (2, 5, 5),
        bad_shapes=[(3, 5, 5), (2, 2, 5), (2, 5)],
    ),
    Case(
        "circ_conv_k3_nonsquare_even",
        lambda: CircularConv2d(3, 3),
        (3, 4, 6),
        bad_shapes=[(2, 4, 6)],
    ),
    Case("circ_conv_k1", lambda: CircularConv2d(3, 1), (3, 2, 3)),
    Case(
        "circ_conv_k5_mixed_parity", lambda: CircularConv2d(2, 5), (2, 5, 6), bad_shapes=[(2, 4, 6)]
    ),
    Case("circ_conv_k3_real_lifting", lambda: CircularConv2d(2, 3, linalg="real"), (2, 3, 4)),
    Case("circ_conv_k5_fft_path", lambda: CircularConv2d(2, 5, method="fft"), (2, 6, 5)),
    Case(
        "circ_conv_fft_real_nobias",
        lambda: CircularConv2d(2, 3, bias=False, method="fft", linalg="real"),
        (2, 4, 4),
    ),
    Case("circ_conv_single_channel", lambda: CircularConv2d(1, 3), (1, 3, 7)),
    Case("circ_conv_inverse", lambda: Inverse(CircularConv2d(2, 3)), (2, 4, 5)),
    Case(
        "circ_conv_stack",
        lambda: Sequential(CircularConv2d(2, 3), SneakyReLU(0.2), CircularConv2d(2, 3)),
        (2, 4, 4),
    ),
    Case(
        "iconvnet_checkerboard",
        lambda: IConvNet((1, 8, 8), depth=1),
        (1, 8, 8),
        prepare=_perturbed_actnorm_marked,
        sample=_unit_interval,
        bad_shapes=[(1, 8, 6)],
    ),
    Case(
        "iconvnet_haar_no_stem_nonsquare",
        lambda: IConvNet((2, 4, 6), depth=1, downsample="haar", stem=False, actnorm=False),
        (2, 4, 6),
        prepare=_perturbed_actnorm_marked,
        sample=_unit_interval,
    ),
    Case(
        "iconvnet_hybrid_avgpool",
        lambda: IConvNet(
            (1, 4, 4),
            levels=1,
            depth=2,
            downsample="avgpool",
            hybrid=True,
            coupling_hidden=4,
            linalg="real",
        ),
        (1, 4, 4),
        prepare=_perturbed_actnorm_marked,
        sample=_unit_interval,
    ),
    Case(
        "iconvnet_nn_no_logit",
        lambda: IConvNet((1, 4, 4), depth=1, downsample="nn", logit_alpha=None),
        (1, 4, 4),
        prepare=_perturbed_actnorm_marked,
    ),
    Case(
        # The paper's layout: no stem, no ActNorm, average pooling, no factor-out; three
        # scales so that the pooled 4 x 4 and 2 x 2 stages (kernels shrunk to 1) are covered.
        "iconvnet_paper",
        lambda: PaperIConvNet((1, 8, 8), levels=3, depth=2),
        (1, 8, 8),
        sample=_unit_interval,
        bad_shapes=[(1, 8, 6), (2, 8, 8)],
    ),
    Case(
        "iconvnet_paper_rgb_nonsquare",
        lambda: PaperIConvNet((3, 4, 6), levels=2, depth=1, kernel_size=5),
        (3, 4, 6),
        sample=_unit_interval,
    ),
]
