"""Layer families, one module each; every class here is a ``Bijection``."""

from . import (
    autoregressive,
    circular_conv,
    coupling,
    downsampling,
    elementwise,
    masks,
    normalization,
    permutation,
    preprocessing,
    reshape,
)
from .autoregressive import *  # noqa: F403
from .circular_conv import *  # noqa: F403
from .coupling import *  # noqa: F403
from .downsampling import *  # noqa: F403
from .elementwise import *  # noqa: F403
from .masks import *  # noqa: F403
from .normalization import *  # noqa: F403
from .permutation import *  # noqa: F403
from .preprocessing import *  # noqa: F403
from .reshape import *  # noqa: F403

__all__ = [
    name
    for module in (
        autoregressive,
        circular_conv,
        coupling,
        downsampling,
        elementwise,
        masks,
        normalization,
        permutation,
        preprocessing,
        reshape,
    )
    for name in module.__all__
]
