"""Ready-made flows (i-ConvNet, Glow, RealNVP, MAF, neural spline flows), the invertible
autoencoder, the Flow-VAE (``VAE``, with its likelihoods), the classifier ladder
(``build_convnet``), and a name -> builder registry of flows.

Every builder returns an ``invertible.Flow``; image models take data in [0, 1]
(dequantized ``(k + u) / n_bins``) of shape ``(B, C, H, W)``.
"""

from .autoencoder import InvertibleAutoencoder, PCAHead, latent_order, with_pca_head
from .classifier import LADDER_STEPS, LadderConvNet, build_convnet
from .glow import build_glow, glow_step
from .iconvnet import IConvNet, build_iconvnet
from .iconvnet_paper import PaperIConvNet, build_iconvnet_paper
from .likelihoods import Bernoulli, DiscretizedLogistic, Likelihood
from .maf import build_maf
from .nsf import build_nsf_ar, build_nsf_coupling
from .realnvp import build_realnvp, build_realnvp_2d
from .registry import (
    MODELS,
    ModelError,
    ModelSpec,
    build_model,
    conditional_models,
    model_lrs,
    model_names,
    register_model,
)
from .vae import POSTERIORS, VAE, build_posterior_flow

__all__ = [
    "LADDER_STEPS",
    "MODELS",
    "POSTERIORS",
    "VAE",
    "Bernoulli",
    "DiscretizedLogistic",
    "IConvNet",
    "InvertibleAutoencoder",
    "LadderConvNet",
    "Likelihood",
    "ModelError",
    "ModelSpec",
    "PCAHead",
    "PaperIConvNet",
    "build_convnet",
    "build_glow",
    "build_iconvnet",
    "build_iconvnet_paper",
    "build_maf",
    "build_model",
    "build_nsf_ar",
    "build_nsf_coupling",
    "build_posterior_flow",
    "build_realnvp",
    "build_realnvp_2d",
    "conditional_models",
    "glow_step",
    "latent_order",
    "model_lrs",
    "model_names",
    "register_model",
    "with_pca_head",
]
