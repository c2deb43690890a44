"""Invertible autoencoders: one bijection is both the encoder and the decoder.

``encode(x)`` maps data to the latent ``z = f(x)`` and keeps its first ``k`` coordinates in a
fixed coarse-to-fine order (``latent_order``); ``decode(code)`` completes the code with a
fill (zeros, the prior's mode, or a draw from the prior) and runs the exact inverse. With
``k = D`` nothing is dropped and ``decode(encode(x)) == x`` to float round-off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from ..core import Bijection, InvalidInputError, Sequential
from ..distributions import Flow, StandardNormal
from ..layers.elementwise import ElementwiseAffine
from ..layers.permutation import InvertibleConv1x1
from ..layers.reshape import FactorOut

__all__ = ["InvertibleAutoencoder", "PCAHead", "latent_order", "with_pca_head"]

Fill = Literal["zeros", "sample"]


def _spread_rank(h: int, w: int) -> Tensor:
    """``(h, w)`` ranks that visit the grid coarse-to-fine: the first 4 positions fall in
    the four quadrants, the first 16 on a 4x4 lattice, and so on (bit-reversed Morton order).
    """
    bits = max(1, math.ceil(math.log2(max(h, w))))
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    code = torch.zeros(h, w, dtype=torch.int64)
    for b in range(bits):
        # Interleave, most significant bit first, so that reversing gives coarse first.
        code |= ((ys >> (bits - 1 - b)) & 1) << (2 * b)
        code |= ((xs >> (bits - 1 - b)) & 1) << (2 * b + 1)
    return code


@torch.no_grad()
def _scale_tags(bijection: Bijection, shape: tuple[int, ...]) -> Tensor | None:
    """Per latent coordinate, how many multi-scale factor-outs it passed (``(*shape)``),
    or None when the layers after a factor-out mix coordinates (then there is no such tag).

    A dry run in eval mode whose ``FactorOut`` outputs are overwritten with their nesting
    depth: the parts factored out at depth ``d`` get ``d``, the innermost scale ``d + 1``.
    Only permutations (squeezes) follow a factor-out in Glow/RealNVP, so the tags arrive
    intact in the latent layout.
    """
    outs = [m for m in bijection.modules() if isinstance(m, FactorOut)]
    if not outs:
        return None
    depth = {id(m): sum(1 for o in outs if o is not m and any(x is m for x in o.modules()))
             for m in outs}
    innermost = {id(m): not any(isinstance(x, FactorOut) for x in m.inner.modules())
                 for m in outs}

    def hook(module: nn.Module, args: object, output: tuple[Tensor, Tensor]) -> tuple:
        z, ld = output
        z = z.clone()
        d = depth[id(module)]
        keep = module.keep
        z[:, keep:] = d
        if innermost[id(module)]:
            z[:, :keep] = d + 1
        return z, ld

    p = next(bijection.parameters(), None)
    x = torch.full((2, *shape), 0.5, dtype=p.dtype if p is not None else torch.float32,
                   device=p.device if p is not None else None)
    was = bijection.training
    bijection.eval()
    handles = [m.register_forward_hook(hook) for m in outs]
    try:
        z, _ = bijection(x)
    finally:
        for h in handles:
            h.remove()
        bijection.train(was)
    tags = z[0].detach().cpu()
    top = max(depth.values()) + 1
    if not torch.equal(tags, tags.round()) or tags.min() < 0 or tags.max() > top:
        return None
    return tags.round().to(torch.int64)


def latent_order(bijection: Bijection, shape: Sequence[int]) -> Tensor:
    """A permutation ``(D,)`` of the flattened latent, most informative coordinates first.

    Multi-scale flows (Glow, RealNVP, the i-ConvNet with a permutation downsampling) factor
    out half of the coordinates at each scale: the ones kept longest saw the most layers
    and the widest receptive field, so they come first (coarse to fine). Within a scale,
    and for flows without factor-out, images are ordered by position in bit-reversed
    Morton order (the first codes spread over the whole image) and then by channel;
    vectors keep their index order.
    """
    shape = tuple(int(s) for s in shape)
    d = math.prod(shape)
    if len(shape) != 3:
        return torch.arange(d)
    c, h, w = shape
    tags = _scale_tags(bijection, shape)
    spread = _spread_rank(h, w).expand(c, h, w)
    channel = torch.arange(c).view(c, 1, 1).expand(c, h, w)
    scale = tags if tags is not None else torch.zeros(c, h, w, dtype=torch.int64)
    # Sort by (coarsest scale first, spread position, channel); all keys are < 2**20.
    key = (-scale.reshape(-1)) * 2**40 + spread.reshape(-1) * 2**20 + channel.reshape(-1)
    return torch.argsort(key, stable=True)


class PCAHead(Bijection):
    """``z = W (x - m)`` on the flattened coordinates of ``(B, *shape)``, shape kept.

    ``m`` is an ``ElementwiseAffine`` shift and ``W`` a learned ``D x D`` matrix in LU form
    (``InvertibleConv1x1`` on ``(B, D, 1, 1)``), so the inverse is two triangular solves and
    the log-det a sum. ``fit_pca_(u)`` sets ``m`` to the mean of samples ``u`` and the rows
    of ``W`` to their principal axes, largest variance first: an autoencoder that keeps the
    first ``k`` outputs then starts as PCA of its input, and training moves on from there.
    """

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.dims = math.prod(self.shape)
        self.center = ElementwiseAffine(self.shape)
        self.linear = InvertibleConv1x1(self.dims)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x, [("B", *self.shape)])
        y, ld = self.center(x)
        z, ld2 = self.linear(y.reshape(x.shape[0], self.dims, 1, 1))
        return z.reshape(x.shape), ld + ld2

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(z, [("B", *self.shape)])
        y, ld2 = self.linear.inverse(z.reshape(z.shape[0], self.dims, 1, 1))
        x, ld = self.center.inverse(y.reshape(z.shape))
        return x, ld + ld2

    @torch.no_grad()
    def fit_pca_(self, u: Tensor) -> Tensor:
        """Set ``m`` and ``W`` from samples ``u`` ``(N, *shape)`` in place (an optimizer
        holding the parameters keeps working); returns the variances, largest first."""
        flat = u.reshape(u.shape[0], -1).double()
        mean = flat.mean(0)
        cov = torch.cov((flat - mean).T) if flat.shape[0] > 1 else torch.eye(self.dims)
        var, vecs = torch.linalg.eigh(cov.double().reshape(self.dims, self.dims))
        var, vecs = var.flip(0), vecs.flip(1)
        dtype = self.center.shift.dtype
        self.center.shift.copy_((-mean).reshape(self.shape).to(dtype))
        self.center.log_scale.zero_()
        fitted = InvertibleConv1x1.from_matrix(vecs.T.contiguous())
        self.linear.load_state_dict({k: v.to(dtype) for k, v in fitted.state_dict().items()})
        return var.clamp_min(0).to(dtype)


def with_pca_head(flow: Flow) -> tuple[Flow, PCAHead]:
    """``flow`` followed by a ``PCAHead`` on its latent (same base); see ``PCAHead``."""
    head = PCAHead(flow.event_shape)
    p = next(flow.parameters(), None)
    if p is not None:
        head = head.to(device=p.device, dtype=p.dtype)
    return Flow(Sequential(flow.bijection, head), flow.base), head


class InvertibleAutoencoder(nn.Module):
    """An autoencoder whose encoder and decoder are one bijection ``f`` (data -> latent).

    ``flow``: a ``Flow`` (its base is the prior for sampled fills and ``sample``) or a bare
    ``Bijection`` with ``data_shape`` (the prior is then a standard normal). ``code_size``
    ``k`` in ``[1, D]``: ``encode`` keeps the first ``k`` latent coordinates in the order
    ``latent_order`` gives (coarse scales first; see there), ``order`` overrides it.

    Shapes: ``encode: (B, *data_shape) -> (B, k)``, ``decode: (B, k) -> (B, *data_shape)``.
    """

    order: Tensor
    inverse_order: Tensor

    def __init__(self, flow: Flow | Bijection, code_size: int,
                 data_shape: Sequence[int] | None = None, order: Tensor | None = None) -> None:
        super().__init__()
        if isinstance(flow, Flow):
            self.flow = flow
        else:
            if data_shape is None:
                raise ValueError("InvertibleAutoencoder: a bare bijection needs data_shape")
            self.flow = Flow(flow, StandardNormal(tuple(data_shape)))
        self.data_shape = tuple(int(s) for s in self.flow.event_shape)
        self.dims = math.prod(self.data_shape)
        if isinstance(code_size, bool) or not isinstance(code_size, int) \
                or not 1 <= code_size <= self.dims:
            raise ValueError(f"InvertibleAutoencoder: code_size must be an integer in "
                             f"[1, {self.dims}] (the data dimension), got {code_size}")
        self.code_size = code_size
        if order is None:
            order = latent_order(self.flow.bijection, self.data_shape)
        order = torch.as_tensor(order, dtype=torch.int64)
        if not torch.equal(torch.sort(order).values, torch.arange(self.dims)):
            raise ValueError(f"InvertibleAutoencoder: order must be a permutation of "
                             f"0..{self.dims - 1}")
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))

    @property
    def bijection(self) -> Bijection:
        return self.flow.bijection

    def _k(self, k: int | None) -> int:
        k = self.code_size if k is None else k
        if not 1 <= k <= self.dims:
            raise InvalidInputError(f"InvertibleAutoencoder: k must lie in [1, {self.dims}], "
                                    f"got {k}")
        return k

    # -- latent layout ----------------------------------------------------------------------
    def to_ordered(self, z: Tensor) -> Tensor:
        """Latent ``(B, *data_shape)`` -> ordered coordinates ``(B, D)``."""
        return z.reshape(z.shape[0], -1).index_select(1, self.order)

    def from_ordered(self, v: Tensor) -> Tensor:
        """Ordered coordinates ``(B, D)`` -> latent ``(B, *data_shape)``."""
        return v.index_select(1, self.inverse_order).reshape(v.shape[0], *self.data_shape)

    def latent(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, *data_shape) -> (ordered latent (B, D), log|det df/dx| (B,))``."""
        z, logdet = self.bijection(x)
        return self.to_ordered(z), logdet

    # -- the autoencoder --------------------------------------------------------------------
    def encode(self, x: Tensor, k: int | None = None) -> Tensor:
        """``(B, *data_shape) -> (B, k)``: the first ``k`` ordered latent coordinates."""
        return self.to_ordered(self.bijection.transform(x))[:, : self._k(k)]

    def complete(self, code: Tensor, fill: Fill = "zeros", temperature: float = 1.0) -> Tensor:
        """A code ``(B, k)`` -> ordered latent ``(B, D)``: the tail is zeros (the prior's
        mode) or drawn from the prior at ``temperature`` (uses the torch RNG)."""
        if code.dim() != 2 or not 1 <= code.shape[1] <= self.dims:
            raise InvalidInputError(f"InvertibleAutoencoder: codes must be (B, k) with k in "
                                    f"[1, {self.dims}], got shape {tuple(code.shape)}")
        if not bool(torch.isfinite(code).all()):
            raise InvalidInputError("InvertibleAutoencoder: codes contain non-finite values")
        k = code.shape[1]
        if fill == "zeros":
            tail = code.new_zeros(code.shape[0], self.dims - k)
        elif fill == "sample":
            prior = self.flow.base.sample(code.shape[0], temperature).to(code)
            tail = self.to_ordered(prior)[:, k:]
        else:
            raise ValueError(f"InvertibleAutoencoder: fill must be 'zeros' or 'sample', "
                             f"got {fill!r}")
        return torch.cat([code, tail], dim=1)

    def decode(self, code: Tensor, fill: Fill = "zeros", temperature: float = 1.0) -> Tensor:
        """``(B, k) -> (B, *data_shape)``: the exact inverse of the completed latent."""
        x, _ = self.bijection.inverse(self.from_ordered(self.complete(code, fill, temperature)))
        return x

    def reconstruct(self, x: Tensor, k: int | None = None, fill: Fill = "zeros") -> Tensor:
        """``decode(encode(x, k))``: lossless at ``k = D``."""
        return self.decode(self.encode(x, k), fill)

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """``n`` new data points ``(n, *data_shape)``: code and tail drawn from the prior."""
        z = self.flow.base.sample(n, temperature)
        x, _ = self.bijection.inverse(z)
        return x

    def extra_repr(self) -> str:
        return f"code_size={self.code_size}, dims={self.dims}"
