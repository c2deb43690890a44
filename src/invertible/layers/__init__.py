"""Layer families, one module each: bijections, masks, padding and the MADE conditioner."""

from . import (
    autoregressive,
    circular_conv,
    coupling,
    dequantization,
    downsampling,
    elementwise,
    masks,
    normalization,
    padding,
    permutation,
    planar,
    reshape,
    splines,
)
from .autoregressive import *
from .circular_conv import *
from .coupling import *
from .dequantization import *
from .downsampling import *
from .elementwise import *
from .masks import *
from .normalization import *
from .padding import *
from .permutation import *
from .planar import *
from .reshape import *
from .splines import *

_FAMILIES = (autoregressive, circular_conv, coupling, dequantization, downsampling, elementwise,
             masks, normalization, padding, permutation, planar, reshape, splines)
__all__ = [name for module in _FAMILIES for name in module.__all__]
