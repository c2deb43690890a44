"""Ready-made flows (i-ConvNet, Glow, RealNVP, MAF, neural spline flows), the invertible
autoencoder, the classifier ladder (``build_convnet``), and a name -> builder registry of
flows.

Every builder returns an ``invertible.Flow``; image models take data in [0, 1]
(dequantized ``(k + u) / n_bins``) of shape ``(B, C, H, W)``.
"""

from .autoencoder import InvertibleAutoencoder, PCAHead, latent_order, with_pca_head
from .classifier import LADDER_STEPS, LadderConvNet, build_convnet
from .glow import build_glow, glow_step
from .iconvnet import IConvNet, build_iconvnet
from .maf import build_maf
from .nsf import build_nsf_ar, build_nsf_coupling
from .realnvp import build_realnvp, build_realnvp_2d
from .registry import (
    MODELS,
    ModelError,
    ModelSpec,
    build_model,
    model_lrs,
    model_names,
    register_model,
)

__all__ = [
    "LADDER_STEPS",
    "MODELS",
    "IConvNet",
    "InvertibleAutoencoder",
    "LadderConvNet",
    "ModelError",
    "ModelSpec",
    "PCAHead",
    "build_convnet",
    "build_glow",
    "build_iconvnet",
    "build_maf",
    "build_model",
    "build_nsf_ar",
    "build_nsf_coupling",
    "build_realnvp",
    "build_realnvp_2d",
    "glow_step",
    "latent_order",
    "model_lrs",
    "model_names",
    "register_model",
    "with_pca_head",
]
