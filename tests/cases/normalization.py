import torch

from invertible import ActNorm, InvertibleConv1x1, Sequential

from registry import Case, perturb_parameters


def _perturbed_and_marked(module: torch.nn.Module) -> None:
    """Move parameters off identity and declare every ActNorm initialised (no data init)."""
    perturb_parameters(module)
    for m in module.modules():
        if isinstance(m, ActNorm):
            m.mark_initialized()


def _data_initialised(module: torch.nn.Module) -> None:
    """Run the data-dependent init on a shifted, scaled batch, then perturb."""
    module.train()
    with torch.no_grad():
        module(3.0 + 2.0 * torch.randn(8, 3, 4, 4, dtype=torch.float64))
    perturb_parameters(module, scale=0.05)


CASES = [
    Case(
        "actnorm_vec",
        lambda: ActNorm(5),
        (5,),
        prepare=_perturbed_and_marked,
        bad_shapes=[(4,), (3, 2, 2)],
    ),
    Case(
        "actnorm_img",
        lambda: ActNorm(3),
        (3, 2, 3),
        prepare=_perturbed_and_marked,
        bad_shapes=[(2, 2, 3)],
    ),
    Case(
        "actnorm_data_init_img",
        lambda: Sequential(ActNorm(3), InvertibleConv1x1(3)),
        (3, 2, 2),
        prepare=_data_initialised,
    ),
]
