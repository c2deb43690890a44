"""Registry cases for the autoencoder's PCA head, alone and fitted to data."""

import torch

from invertible import PCAHead, Sequential, SneakyReLU

from registry import Case


def _fitted_head() -> PCAHead:
    head = PCAHead((2, 2, 2))
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(8, 8, generator=g, dtype=torch.float64)
    head.fit_pca_((torch.randn(64, 8, generator=g, dtype=torch.float64) @ mixing)
                  .reshape(64, 2, 2, 2))
    return head


CASES = [
    Case("pca_head_img", lambda: PCAHead((1, 3, 3)), (1, 3, 3), bad_shapes=[(1, 3, 2), (9,)]),
    Case("pca_head_vec", lambda: PCAHead((5,)), (5,), bad_shapes=[(4,)]),
    Case("pca_head_fitted", _fitted_head, (2, 2, 2), prepare=lambda m: None),
    Case("pca_head_after_relu", lambda: Sequential(SneakyReLU(0.3), PCAHead((6,))), (6,)),
]
