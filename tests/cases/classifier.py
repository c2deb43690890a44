"""Registry cases for the invertible ladder steps' bodies (everything before the head)."""

import torch

from invertible import build_convnet

from registry import Case, perturb_parameters


def _body(step: str, shape=(1, 8, 8)):
    def make():
        model = build_convnet(shape, 10, step)
        model.train()
        model(torch.rand(16, *shape))  # ActNorm's data init, as training starts
        return model.body

    return make


CASES = [
    Case(f"ladder_{step}_body", _body(step), (1, 8, 8), sample=lambda b, s: torch.rand(b, *s),
         bad_shapes=[(1, 8, 6), (2, 8, 8)])
    for step in ("checkerboard", "nn", "avgpool")
] + [
    # 16x16 grey images: stages at 8x8, 4x4 and 2x2, the kernel shrinking to fit the last.
    # Gentler perturbation: 0.1 per weight would make its 64-channel convolutions
    # ill-conditioned (a float64 round trip then loses more than 1e-10).
    Case("ladder_avgpool_body_16", _body("avgpool", (1, 16, 16)), (1, 16, 16),
         prepare=lambda m: perturb_parameters(m, 0.02), sample=lambda b, s: torch.rand(b, *s),
         jacobian=False),
]
