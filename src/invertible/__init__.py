"""invertible: exact bijections, normalizing flows and invertible convolutional networks.

Every layer maps data to latent: ``forward(x) -> (z, logabsdet)`` and
``inverse(z) -> (x, logabsdet)``, with ``logabsdet`` of shape ``(batch,)``.
"""

from . import codec, core, distributions, evaluation, layers, models, nets, privacy, training
from .codec import *
from .core import *
from .distributions import *
from .evaluation import *
from .layers import *
from .models import *
from .nets import *
from .privacy import *
from .training import *

__version__ = "0.1.0"

# Built from the submodules so that a new public name needs declaring only once.
__all__ = [  # noqa: PLE0604
    *codec.__all__,
    *core.__all__,
    *distributions.__all__,
    *evaluation.__all__,
    *layers.__all__,
    *models.__all__,
    *nets.__all__,
    *privacy.__all__,
    *training.__all__,
]
