"""Privacy: differentially private training (DP-SGD with opacus's accountants), the release
of encoded data, and measured leakage (attacks on the codes and on the model).

- ``dpsgd``, ``accounting``: ``train --dp-epsilon``; per-sample gradients, clipping, noise
  and the spent epsilon.
- ``release``: codes of a data split for an analyst (``encode --data``), bound to the model
  that made them (``model_id``); only the weights decode them.
- ``attacks``, ``membership``, ``utility``, ``report``: ``invertible privacy-report``.
"""

from .accounting import ACCOUNTANTS, DPBudget, noise_multiplier_for, spent_epsilon
from .attacks import ConvDecoder, MLPDecoder, fresh_models, psnr, ssim, train_decoder
from .dpsgd import DPSGD, per_sample_gradients, skip_data_dependent_init
from .membership import likelihood_scores, mia_auc, tpr_at_fpr
from .release import ReleaseError, decode_codes, encode_levels, model_id
from .report import SECTIONS, ReportSettings, measure
from .utility import CLASSIFIERS, classifier_accuracy, synthetic_samples

__all__ = [
    "ACCOUNTANTS",
    "CLASSIFIERS",
    "DPSGD",
    "SECTIONS",
    "ConvDecoder",
    "DPBudget",
    "MLPDecoder",
    "ReleaseError",
    "ReportSettings",
    "classifier_accuracy",
    "decode_codes",
    "encode_levels",
    "fresh_models",
    "likelihood_scores",
    "measure",
    "mia_auc",
    "model_id",
    "noise_multiplier_for",
    "per_sample_gradients",
    "psnr",
    "skip_data_dependent_init",
    "spent_epsilon",
    "ssim",
    "synthetic_samples",
    "tpr_at_fpr",
    "train_decoder",
]
