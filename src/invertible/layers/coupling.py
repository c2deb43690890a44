"""Coupling layers: NICE's additive and RealNVP/Glow's affine coupling.

A boolean ``mask`` (see ``invertible.layers.masks``) splits the input: entries where it is
True pass through unchanged and condition, through a network, an element-wise map of the
entries where it is False. The Jacobian is triangular, so the log-det is a sum over the
transformed entries only. The mask's shape picks the mode:

* ``(D,)`` — features of vectors ``(B, D)``, or channels of images ``(B, D, H, W)``
  (Glow-style split): the net gets the kept features/channels only and returns
  parameters for the transformed ones. ``net_factory(n_kept, k * n_transformed)``.
  Which of the two input ranks the layer takes is fixed at construction: ``image=True``
  or ``False``, or, by default, inferred from the net (convolutions -> images, linear
  layers only -> vectors), so that a vector net is never silently applied to an image.
* ``(1, H, W)`` or ``(C, H, W)`` — a spatial mask such as a checkerboard, for images
  ``(B, C, H, W)``: the net gets the whole masked image (C channels, zeros where
  transformed) and returns parameters for every position, used where the mask is False.
  ``net_factory(C, k * C)``; with a ``(1, H, W)`` mask, pass ``channels=C`` when C > 1.

``k`` is 1 for additive (a shift), 2 for affine (a shift, then a raw log-scale) and
``3K - 1`` for a ``K``-bin rational-quadratic spline (see ``invertible.layers.splines``).

With ``context_features=K > 0`` the layer is conditional: ``forward(x, context=c)`` and
``inverse(z, context=c)`` feed ``c`` to the net beside the kept part, so the net gets
``K`` more inputs (``net_factory(n_kept + K, ...)`` / ``net_factory(C + K, ...)``). For
images, a ``(B, K)`` context is broadcast over the pixels as ``K`` extra channels; a
``(B, K, H, W)`` one is used as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..core import Bijection, check_context, check_context_features, sum_except_batch
from ._functional import soft_clamp
from .splines import check_spline_options, rational_quadratic_spline, spline_params

__all__ = ["AdditiveCoupling", "AffineCoupling", "SplineCoupling"]

NetFactory = Callable[[int, int], nn.Module]


def _as_mask(mask: Tensor, layer: str) -> Tensor:
    m = torch.as_tensor(mask)
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError(f"{layer}: mask must be boolean or 0/1 valued")
        m = m.bool()
    if m.dim() not in (1, 3):
        raise ValueError(
            f"{layer}: mask must have shape (D,) or (C, H, W)/(1, H, W), got {tuple(m.shape)}"
        )
    if bool(m.all()) or not bool(m.any()):
        raise ValueError(f"{layer}: mask must contain both kept (True) and transformed entries")
    return m.detach().clone()


def _infers_image(net: nn.Module, layer: str) -> bool:
    kinds = {type(m) for m in net.modules()}
    if any(issubclass(t, nn.modules.conv._ConvNd) for t in kinds):
        return True
    if any(issubclass(t, nn.Linear) for t in kinds):
        return False
    raise ValueError(
        f"{layer}: cannot tell whether the net takes vectors or images; pass image=True/False"
    )


class _Coupling(Bijection):
    """Shared split / condition / merge logic; subclasses define the element-wise map."""

    params_per_entry = 1
    mask: Tensor
    # Only registered for 1-D (feature/channel) masks, i.e. when ``spatial`` is False.
    keep_idx: Tensor
    trans_idx: Tensor
    merge_idx: Tensor

    def __init__(
        self,
        mask: Tensor,
        net_factory: NetFactory,
        channels: int | None = None,
        image: bool | None = None,
        context_features: int = 0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        m = _as_mask(mask, name)
        k = self.params_per_entry
        self.context_features = check_context_features(name, context_features)
        self.takes_context = context_features > 0
        self.register_buffer("mask", m)
        if m.dim() == 1:
            self.spatial = False
            keep = torch.nonzero(m).flatten()
            trans = torch.nonzero(~m).flatten()
            self.register_buffer("keep_idx", keep)
            self.register_buffer("trans_idx", trans)
            # Concatenating [kept, transformed] and gathering with this restores the order.
            self.register_buffer("merge_idx", torch.argsort(torch.cat([keep, trans])))
            self.n_keep, self.n_trans = len(keep), len(trans)
            self.net = net_factory(self.n_keep + context_features, k * self.n_trans)
            self.channels = len(m)
            self.image = _infers_image(self.net, name) if image is None else bool(image)
        else:
            self.spatial = True
            c = m.shape[0] if channels is None else int(channels)
            if m.shape[0] not in (1, c):
                raise ValueError(
                    f"{name}: mask has {m.shape[0]} channels but channels={c}; "
                    "use a (1, H, W) or (C, H, W) mask"
                )
            self.channels = c
            self.image = True
            self.net = net_factory(c + context_features, k * c)
        if not isinstance(self.net, nn.Module):
            raise TypeError(f"{name}: net_factory must return an nn.Module")

    def _validate(self, x: Tensor) -> None:
        if self.spatial:
            _, h, w = self.mask.shape
            self._check(x, [("B", self.channels, h, w)])
        elif self.image:
            self._check(x, [("B", self.channels, "H", "W")])
        else:
            self._check(x, [("B", self.channels)])

    def _conditioner(self, cond: Tensor, n: int, context: Tensor | None) -> Tensor:
        if self.takes_context:
            c = check_context(self, context, cond, self.context_features)
            if cond.dim() == 4 and c.dim() == 2:
                c = c[:, :, None, None].expand(-1, -1, *cond.shape[2:])
            cond = torch.cat([cond, c], dim=1)
        h = self.net(cond)
        want = (cond.shape[0], self.params_per_entry * n, *cond.shape[2:])
        if tuple(h.shape) != want:
            raise ValueError(
                f"{type(self).__name__}: the conditioner returned shape {tuple(h.shape)}, "
                f"expected {want}"
            )
        return h

    # Element-wise map of the transformed part given net output h (same layout as x).
    def _map(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def _unmap(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def _couple(
        self, x: Tensor, inverse: bool, context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        self._validate(x)
        step = self._unmap if inverse else self._map
        if self.spatial:
            m = self.mask
            h = self._conditioner(x * m.to(x.dtype), self.channels, context)
            y, log_scale = step(x, h)
            out = torch.where(m, x, y)
            if log_scale is None:
                return out, self._zeros(x)
            return out, sum_except_batch(torch.where(m, torch.zeros_like(log_scale), log_scale))
        kept = x.index_select(1, self.keep_idx)
        h = self._conditioner(kept, self.n_trans, context)
        y, log_scale = step(x.index_select(1, self.trans_idx), h)
        out = torch.cat([kept, y], dim=1).index_select(1, self.merge_idx)
        if log_scale is None:
            return out, self._zeros(x)
        return out, sum_except_batch(log_scale)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data -> latent, ``(B, D)`` or ``(B, C, H, W)`` -> same shape, log-det ``(B,)``."""
        return self._couple(x, False, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Latent -> data, with the inverse's log-det (minus the forward one)."""
        return self._couple(z, True, context)

    def extra_repr(self) -> str:
        ctx = f", context_features={self.context_features}" if self.takes_context else ""
        if self.spatial:
            return f"spatial mask {tuple(self.mask.shape)}, channels={self.channels}{ctx}"
        kind = "channels" if self.image else "features"
        return f"{kind}={self.channels}: keep {self.n_keep}, transform {self.n_trans}{ctx}"


class AdditiveCoupling(_Coupling):
    """NICE coupling: ``z_b = x_b + t(x_a)``, ``z_a = x_a``; volume preserving (log-det 0).

    ``mask`` True = ``a`` (kept), False = ``b`` (shifted); see the module docstring for
    the vector, channel-split and spatial modes. ``net_factory(in, out)`` builds ``t``.
    """

    params_per_entry = 1

    def _map(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
        return x + h, None

    def _unmap(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
        return y - h, None


class AffineCoupling(_Coupling):
    """RealNVP/Glow coupling: ``z_b = x_b * exp(s(x_a)) + t(x_a)``, ``z_a = x_a``.

    The net returns ``2 * n`` outputs per position: the shift ``t`` then the raw log-scale,
    soft-clamped to ``s = clamp * tanh(raw / clamp)`` so that ``|s| < clamp`` (``clamp=None``
    disables it). Log-det ``sum(s)`` over the transformed entries. ``mask`` True = kept;
    see the module docstring for the vector, channel-split and spatial modes.
    """

    params_per_entry = 2

    def __init__(
        self,
        mask: Tensor,
        net_factory: NetFactory,
        clamp: float | None = 3.0,
        channels: int | None = None,
        image: bool | None = None,
        context_features: int = 0,
    ) -> None:
        if clamp is not None and not clamp > 0:
            raise ValueError(f"AffineCoupling: clamp must be > 0 or None, got {clamp}")
        super().__init__(mask, net_factory, channels, image, context_features)
        self.clamp = None if clamp is None else float(clamp)

    def _shift_log_scale(self, h: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = h.chunk(2, dim=1)
        if self.clamp is None:
            return shift, raw
        return shift, soft_clamp(raw, self.clamp)

    def _map(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
        shift, s = self._shift_log_scale(h)
        return x * torch.exp(s) + shift, s

    def _unmap(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
        shift, s = self._shift_log_scale(h)
        return (y - shift) * torch.exp(-s), -s

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, clamp={self.clamp}"


class SplineCoupling(_Coupling):
    """Neural-spline coupling: ``z_b = RQS(x_b; theta(x_a))``, ``z_a = x_a``.

    Each transformed entry gets its own monotonic rational-quadratic spline of ``bins``
    bins on ``[-tail_bound, tail_bound]`` (identity outside), whose ``3 * bins - 1``
    parameters the net computes from the kept entries; the inverse is the spline's
    closed-form root. ``mask`` True = kept; the vector, channel-split and spatial modes are
    those of the module docstring. Identity at init when the net's output layer is zero.
    """

    def __init__(
        self,
        mask: Tensor,
        net_factory: NetFactory,
        bins: int = 8,
        tail_bound: float = 3.0,
        channels: int | None = None,
        image: bool | None = None,
        context_features: int = 0,
    ) -> None:
        check_spline_options("SplineCoupling", bins, tail_bound)
        # The parameter count is per instance, so set before the base builds the net.
        self.params_per_entry = spline_params(bins)
        super().__init__(mask, net_factory, channels, image, context_features)
        self.bins, self.tail_bound = bins, float(tail_bound)

    def _spline(self, x: Tensor, h: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        # (B, k * n, *rest) -> (B, n, *rest, k): the parameters of an entry in the last axis.
        params = h.unflatten(1, (self.params_per_entry, -1)).movedim(1, -1)
        return rational_quadratic_spline(x, params, inverse=inverse, tail_bound=self.tail_bound)

    def _map(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
        return self._spline(x, h, inverse=False)

    def _unmap(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
        return self._spline(y, h, inverse=True)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bins={self.bins}, tail_bound={self.tail_bound}"
