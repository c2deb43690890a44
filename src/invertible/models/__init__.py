"""Ready-made flows (i-ConvNet, Glow, RealNVP, MAF) and a name -> builder registry."""

from .registry import MODELS, ModelError, ModelSpec, build_model, model_names, register_model

__all__ = ["MODELS", "ModelError", "ModelSpec", "build_model", "model_names", "register_model"]
