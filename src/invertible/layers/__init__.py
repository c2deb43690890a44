"""Layer families, one module each: bijections, masks and the MADE conditioner."""

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
from .autoregressive import *
from .circular_conv import *
from .coupling import *
from .downsampling import *
from .elementwise import *
from .masks import *
from .normalization import *
from .permutation import *
from .preprocessing import *
from .reshape import *

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
