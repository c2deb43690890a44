"""invertible: exact bijections, normalizing flows and invertible convolutional networks.

Every layer maps data to latent: ``forward(x) -> (z, logabsdet)`` and
``inverse(z) -> (x, logabsdet)``, with ``logabsdet`` of shape ``(batch,)``.
"""

from . import core, distributions, layers, nets
from .core import *  # noqa: F403
from .distributions import *  # noqa: F403
from .layers import *  # noqa: F403
from .nets import *  # noqa: F403

__version__ = "0.1.0"

__all__ = [*core.__all__, *distributions.__all__, *layers.__all__, *nets.__all__]
