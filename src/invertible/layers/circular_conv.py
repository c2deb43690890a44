"""Invertible ``k x k`` convolutions with circular padding (Finzi et al., 2019).

A circular convolution is block-diagonal in the 2-D Fourier basis, one ``c x c`` block
``W_hat(f)`` per spatial frequency ``f``. So its log-determinant is
``sum_f log|det W_hat(f)|`` and its inverse is an FFT, one ``c x c`` solve per frequency
and an inverse FFT: ``O(c^2 hw log hw + c^3 hw)`` instead of ``O((chw)^3)`` for the dense
Jacobian. Only the real-FFT half spectrum is factorised; conjugate frequencies share
``|det|`` and are counted by multiplicity.

Precision under mixed precision (``torch.autocast`` with bfloat16 or float16): the layer
opts out of autocast. Its forward (spatial ``conv2d`` or FFT, block matmul and bias), its
inverse (FFT, per-frequency solves, inverse FFT), the spectrum, the LU factors and the
log-det all run in the weights' dtype (float32 in a mixed-precision model), and
``forward``/``inverse`` return that dtype for both the output and the log-det. A bfloat16
or float16 input (from an autocast layer upstream) is upcast first. Two reasons:
``torch.fft`` and the LU factorisation have no bfloat16 or float16 kernels (on CPU), and
with ``eps(bfloat16) = 2^-7`` the inverse would disagree with the forward by ~1e-2
relative, far above ``tolerance`` (a bf16 ``InvertibleConv1x1`` round trip is off by ~5e-3).
Weights themselves must be float32 or float64 (keep the model in float32 under autocast).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Bijection, InvalidInputError
from ._fourier import (
    complex_dtype,
    frequency_major,
    half_spectrum_multiplicity,
    half_spectrum_unique,
    kernel_spectrum,
    kernel_spectrum_unique,
    lift,
    lift_rows,
    spatial_from_rows,
    unlift_rows,
)
from ._lapack import lu_factor_ex, slogdet_abs, solve_right
from ._scratch import scratch
from .padding import circular_pad

__all__ = ["CircularConv2d", "ConditioningWarning", "IllConditionedError"]

# Input dtypes that are upcast to the weights' dtype rather than rejected (autocast output).
_HALF_DTYPES = (torch.bfloat16, torch.float16)


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A region where autocast does not downcast (see the module docstring for why)."""
    # Entering a disabled autocast costs more than a cached forward's bookkeeping, so only
    # when it is on; "meta" and other devices without autocast would raise on the query.
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _log_abs_diagonal(lu: Tensor) -> Tensor:
    """``(..., n, n)`` LU factors -> ``(...,)`` ``sum_i log|U_ii|``, the ``log|det|``."""
    # The complex abs of the strided diagonal view is 2.5x slower than copy plus abs.
    return torch.log(torch.diagonal(lu, dim1=-2, dim2=-1).contiguous().abs()).sum(-1)


class ConditioningWarning(UserWarning):
    """An inverse is expected to lose more relative accuracy than the layer's tolerance."""


class IllConditionedError(ArithmeticError):
    """Raised instead of ``ConditioningWarning`` when the layer is ``strict``."""


class CircularConv2d(Bijection):
    """Invertible ``k x k`` convolution with circular padding on ``(B, C, H, W)``, C -> C.

    ``forward`` (data -> latent) convolves (spatially or by FFT, ``method``) and adds the
    bias; its log-det ``sum_f log|det W_hat(f)|`` depends on the weights only and is the
    same for every sample. ``inverse`` solves per frequency in the Fourier domain.

    Any spatial size ``H, W >= kernel_size`` works (odd, even, non-square), as do float32
    and float64. Under ``torch.autocast`` the layer computes in the weights' dtype and
    returns it; bfloat16/float16 inputs are upcast (module docstring). ``linalg`` picks the
    linear algebra: ``"complex"`` factorises the complex blocks natively; ``"real"`` uses
    the lifting ``phi(A+iB) = [[A, -B], [B, A]]`` with ``log|det C| = 1/2 log|det phi(C)|``,
    for backends without complex linear algebra.
    ``solver`` picks how cached inverses solve: ``"inverse"`` (default: explicit block
    inverses built once per weight value from the LU, then one batched matmul per call) or
    ``"lu"`` (triangular solves per call, backward stable per frequency, ~1.8x slower on
    CPU). Both stay within the ``cond * eps`` bound in benchmarks/circular_conv_accuracy.py.

    Caching: outside autograd (``torch.no_grad`` or frozen weights) the per-frequency LU
    factors and the log-det are computed once per weight value and spatial size and reused;
    the cache is keyed on the weight's identity, storage, version counter, dtype and device
    and on a private copy of the weight values it was built from, compared once per call
    that reads the cache, so any write (optimizer steps, ``load_state_dict``, ``.to()``,
    in-place edits, including ``weight.data`` writes that the version counter misses)
    invalidates it. On GPU that comparison is one device synchronisation per such call.
    With gradients enabled the log-det (and an inverse) is recomputed differentiably on
    each call, and the forward does not touch the cache.

    Numerical health: ``singular_values``, ``condition_number``; the controls
    ``clip_singular_values_`` (projection, call after optimizer steps) and
    ``conditioning_penalty`` (a differentiable barrier to add to the loss), both using
    ``sv_bounds``; ``init="orthogonal"`` (a random orthogonal centre tap plus small noise,
    condition number ~1) or ``"identity"``. Before an inverse, the layer checks
    ``cond * eps(dtype) <= tolerance`` (the first-order bound on the relative error of the
    inverse); if not, it warns with ``ConditioningWarning``, or raises
    ``IllConditionedError`` when ``strict=True``. ``tolerance=None`` disables the check.
    ``image_size`` is the health methods' default ``(h, w)`` until an input is seen.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        bias: bool = True,
        linalg: Literal["complex", "real"] = "complex",
        method: Literal["auto", "spatial", "fft"] = "auto",
        solver: Literal["lu", "inverse"] = "inverse",
        init: Literal["orthogonal", "identity"] = "orthogonal",
        init_noise: float = 0.01,
        sv_bounds: tuple[float, float] = (0.05, 20.0),
        tolerance: float | None = 1e-3,
        strict: bool = False,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        name = "CircularConv2d"
        if channels < 1:
            raise ValueError(f"{name}: channels must be >= 1, got {channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"{name}: kernel_size must be a positive odd int, got {kernel_size}")
        if linalg not in ("complex", "real"):
            raise ValueError(f"{name}: linalg must be 'complex' or 'real', got {linalg!r}")
        if method not in ("auto", "spatial", "fft"):
            raise ValueError(f"{name}: method must be 'auto', 'spatial' or 'fft', got {method!r}")
        if solver not in ("lu", "inverse"):
            raise ValueError(f"{name}: solver must be 'lu' or 'inverse', got {solver!r}")
        if init not in ("orthogonal", "identity"):
            raise ValueError(f"{name}: init must be 'orthogonal' or 'identity', got {init!r}")
        lo, hi = sv_bounds
        if not 0 < lo < hi:
            raise ValueError(f"{name}: sv_bounds must satisfy 0 < low < high, got {sv_bounds}")
        if tolerance is not None and not tolerance > 0:
            raise ValueError(f"{name}: tolerance must be > 0 or None, got {tolerance}")
        self.channels = int(channels)
        self.kernel_size = int(kernel_size)
        self.linalg = linalg
        self.method = method
        self.solver = solver
        self.sv_bounds = (float(lo), float(hi))
        self.tolerance = tolerance
        self.strict = bool(strict)
        self.weight = nn.Parameter(self._initial_weight(init, init_noise))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        # Factorisations per spatial size, valid while the weight key is unchanged.
        self._cache: dict[tuple[int, int], dict[str, object]] = {}
        self._cache_key: tuple | None = None
        # The weight values the cache was built from (see ``_refresh_cache``).
        self._cache_weight: Tensor | None = None
        # Default image size of the health methods: given, else the last input seen.
        self._last_hw: tuple[int, int] | None = (
            None if image_size is None else (int(image_size[0]), int(image_size[1]))
        )

    def _initial_weight(self, init: str, noise: float) -> Tensor:
        c, k = self.channels, self.kernel_size
        if init == "orthogonal":
            q, r = torch.linalg.qr(torch.randn(c, c))
            centre = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # Haar-distributed
        else:
            centre = torch.eye(c)
        w = noise * torch.randn(c, c, k, k) / math.sqrt(c * k * k)
        w[:, :, k // 2, k // 2] += centre
        return w

    # -- shapes and paths ---------------------------------------------------------------------
    def _validate(self, x: Tensor) -> tuple[int, int]:
        self._check(x, [("B", self.channels, "H", "W")])
        h, w = x.shape[-2:]
        if self.kernel_size > min(h, w):
            raise InvalidInputError(
                f"CircularConv2d: kernel_size {self.kernel_size} is larger than the "
                f"{h}x{w} image; a circular kernel must fit in the image"
            )
        if self.weight.dtype not in (torch.float32, torch.float64):
            raise InvalidInputError(
                f"CircularConv2d: weights are {self.weight.dtype}, but the FFT and solves need "
                "float32 or float64; keep them in float32 and use torch.autocast instead"
            )
        # A half-precision input is upcast (autocast); any other mismatch is a caller bug.
        same_dtype = x.dtype == self.weight.dtype or x.dtype in _HALF_DTYPES
        if not same_dtype or x.device != self.weight.device:
            raise InvalidInputError(
                f"CircularConv2d: input is {x.dtype} on {x.device} but the weights are "
                f"{self.weight.dtype} on {self.weight.device}; convert one of them"
            )
        self._last_hw = (h, w)
        return h, w

    def _use_fft(self, h: int, w: int) -> bool:
        if self.method != "auto":
            return self.method == "fft"
        # Spatial cost ~ c k^2 per output value; the FFT path ~ c (per-frequency matmul)
        # plus transforms. On CPU conv2d is well tuned, so the FFT wins only for big kernels.
        return self.kernel_size >= 7

    def _needs_graph(self) -> bool:
        return torch.is_grad_enabled() and self.weight.requires_grad

    def spectrum(self, h: int, w: int) -> Tensor:
        """``(h, w // 2 + 1, C, C)`` complex: the kernel's per-frequency blocks ``W_hat(f)``."""
        return kernel_spectrum(self.weight, h, w)

    def _blocks(self, h: int, w: int) -> Tensor:
        """The spectrum, cached per weight value unless a graph to the weights is needed."""
        if self._needs_graph():
            return self.spectrum(h, w)
        entry = self._entry(h, w)
        if "spec" not in entry:
            entry["spec"] = self.spectrum(h, w)
        return entry["spec"]  # type: ignore[return-value]

    # -- cache --------------------------------------------------------------------------------
    def _weight_key(self) -> tuple:
        w = self.weight
        return (
            id(w),
            w.data_ptr(),
            w._version,
            w.dtype,
            w.device,
            self.linalg,
            torch.is_inference_mode_enabled(),
        )

    def _refresh_cache(self) -> None:
        """Drop the cache unless it was built from the current weight values.

        Writes through ``weight.data`` (``.data.mul_``, ``.data.copy_``) bump the alias's own
        version counter, not the weight's, so the key misses them; comparing the values sees
        every write. The weight is c*c*k*k elements, tiny next to the transforms, but the
        comparison synchronises a GPU, so each public method that reads the cache calls this
        once, before any ``_entry``.
        """
        key = self._weight_key()
        if (
            key == self._cache_key
            and self._cache_weight is not None
            and torch.equal(self._cache_weight, self.weight.detach())
        ):
            return
        self._cache = {}
        self._cache_key = key
        self._cache_weight = self.weight.detach().clone()

    def _entry(self, h: int, w: int) -> dict[str, object]:
        # Only the cheap key here (the values are compared by ``_refresh_cache``).
        if self._weight_key() != self._cache_key:
            self._refresh_cache()
        return self._cache.setdefault((h, w), {})

    def clear_cache(self) -> None:
        """Drop cached factorisations (they are also invalidated automatically)."""
        self._cache = {}
        self._cache_key = None
        self._cache_weight = None

    def _system(self, blocks: Tensor) -> Tensor:
        """The matrices of the row systems ``X W_hat(f)^T = Z`` that inverses solve.

        Spectra are laid out with one row per image at each frequency (``frequency_major``),
        so an inverse solves ``X A^T = Z``: ``A = W_hat(f)``, or ``lift(W_hat(f))`` for
        ``linalg='real'`` (with ``lift_rows``). ``|det A^T| = |det A|``.
        """
        return (lift(blocks) if self.linalg == "real" else blocks).mT

    def _factors(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        """Cached LU factors of ``_system`` at every half-spectrum frequency."""
        entry = self._entry(h, w)
        if "lu" not in entry:
            with torch.no_grad():
                lu, piv, info = lu_factor_ex(self._system(self._blocks(h, w)))
            if bool((info > 0).any()):
                raise IllConditionedError(
                    f"CircularConv2d: the kernel is singular at {int((info > 0).sum())} "
                    f"frequencies of a {h}x{w} image; the layer is not invertible"
                )
            entry["lu"] = (lu, piv)
        return entry["lu"]  # type: ignore[return-value]

    def _inverse_blocks(self, h: int, w: int) -> Tensor:
        """Cached explicit inverses of ``_system``, for ``solver='inverse'``."""
        entry = self._entry(h, w)
        if "inv" not in entry:
            lu, piv = self._factors(h, w)
            eye = torch.eye(lu.shape[-1], dtype=lu.dtype, device=lu.device)
            with torch.no_grad():
                entry["inv"] = torch.linalg.lu_solve(lu, piv, eye.expand_as(lu))
        return entry["inv"]  # type: ignore[return-value]

    def _solve_rows(self, h: int, w: int, rhs: Tensor) -> Tensor:
        """``X`` with ``X W_hat(f)^T = rhs`` at every frequency; ``rhs`` is ``(h, wr, B, C)``."""
        if self.linalg == "real":
            rhs = lift_rows(rhs)
        if self._needs_graph():
            sol = solve_right(self._system(self.spectrum(h, w)), rhs)
        elif self.solver == "inverse":
            sol = rhs @ self._inverse_blocks(h, w)
        else:
            lu, piv = self._factors(h, w)
            sol = torch.linalg.lu_solve(lu, piv, rhs, left=False)
        return unlift_rows(sol) if self.linalg == "real" else sol

    # -- log-det ------------------------------------------------------------------------------
    def logabsdet(self, h: int, w: int) -> Tensor:
        """Scalar ``log|det|`` of the convolution on ``h x w`` images (per sample).

        In the weights' dtype, also under autocast.
        """
        if not self._needs_graph():
            self._refresh_cache()
        with _autocast_off(self.weight.device.type):
            return self._logabsdet(h, w)

    def _logabsdet(self, h: int, w: int) -> Tensor:
        if self._needs_graph():
            return self._unique_logabsdet(h, w)
        entry = self._entry(h, w)
        if "logdet" not in entry:
            if "lu" in entry:  # an inverse factorised every block already
                lu, _ = self._factors(h, w)
                per_block = _log_abs_diagonal(lu)
                if self.linalg == "real":
                    per_block = 0.5 * per_block
                mult = half_spectrum_multiplicity(h, w, per_block.dtype, per_block.device)
                entry["logdet"] = (per_block * mult).sum()
            else:
                with torch.no_grad():
                    entry["logdet"] = self._unique_logabsdet(h, w)
        return entry["logdet"]  # type: ignore[return-value]

    def _unique_logabsdet(self, h: int, w: int) -> Tensor:
        """``sum_f log|det W_hat(f)|``, factorising one block of each conjugate pair only
        (``half_spectrum_unique``); differentiable when the weights are."""
        _, weight = half_spectrum_unique(h, w, self.weight.device)
        if self._needs_graph():
            # The transposed system: LAPACK's column-major copy of it is a memory copy.
            per_block = slogdet_abs(self._system(kernel_spectrum_unique(self.weight, h, w)))
        else:
            # The bare LU (7 % faster than slogdet, which also forms the sign), in place.
            # A complex spectrum is written into a reused buffer whose transpose is the
            # column-major system LAPACK factorises, so nothing is copied or freshly paged.
            if self.linalg == "complex":
                c, n = self.channels, weight.numel()
                spec = scratch((n, c, c), complex_dtype(self.weight.dtype), self.weight.device)
                system = kernel_spectrum_unique(self.weight, h, w, out=spec).mT
            else:
                system = self._system(kernel_spectrum_unique(self.weight, h, w))
            n, m = system.shape[0], system.shape[-1]
            piv = torch.empty(n, m, dtype=torch.int32, device=system.device)
            info = torch.empty(n, dtype=torch.int32, device=system.device)
            per_block = _log_abs_diagonal(lu_factor_ex(system, out=(system, piv, info))[0])
        if self.linalg == "real":
            per_block = 0.5 * per_block
        return (per_block * weight.to(per_block.dtype)).sum()

    # -- the two directions -------------------------------------------------------------------
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self._transform(x)
        with _autocast_off(x.device.type):
            return z, self._logabsdet(*x.shape[-2:]).expand(x.shape[0])

    def _transform(self, x: Tensor) -> Tensor:
        # The map alone: the log-det's LU of every frequency's block costs as much as the
        # convolution itself at 64 channels.
        h, w = self._validate(x)
        if not self._needs_graph():  # with a graph, the forward does not read the cache
            self._refresh_cache()
        with _autocast_off(x.device.type):
            return self._map(x.to(self.weight.dtype), h, w)

    def _map(self, x: Tensor, h: int, w: int) -> Tensor:
        if self._use_fft(h, w):
            rows = frequency_major(torch.fft.rfft2(x))  # (h, wr, B, C)
            out = rows @ self._blocks(h, w).mT
            z = spatial_from_rows(out, h, w)
            if self.bias is not None:
                z = z + self.bias.view(1, -1, 1, 1)
        else:
            z = F.conv2d(circular_pad(x, self.kernel_size // 2), self.weight, self.bias)
        return z

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        h, w = self._validate(z)
        if self.tolerance is not None or not self._needs_graph():
            self._refresh_cache()
        with _autocast_off(z.device.type):
            self._check_conditioning(h, w)  # here, so its warning points at our caller
            return self._inverse(z.to(self.weight.dtype), h, w)

    def _inverse(self, z: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
        rhs = frequency_major(torch.fft.rfft2(z))  # (h, wr, B, C), our own copy
        if self.bias is not None:
            # A constant image is a pure DC term, so the bias comes off one frequency
            # instead of every pixel.
            rhs[0, 0] -= (h * w) * self.bias.to(rhs.dtype)
        sol = self._solve_rows(h, w, rhs)  # (h, wr, B, C)
        x = spatial_from_rows(sol, h, w)
        return x, -self._logabsdet(h, w).expand(z.shape[0])

    # -- numerical health ---------------------------------------------------------------------
    def _hw(self, h: int | None, w: int | None) -> tuple[int, int]:
        if h is not None and w is not None:
            if self.kernel_size > min(h, w):
                raise ValueError(
                    f"CircularConv2d: kernel_size {self.kernel_size} does not fit {h}x{w}"
                )
            return int(h), int(w)
        if self._last_hw is None:
            raise ValueError(
                "CircularConv2d: pass the image size (h, w); the layer has not seen an input"
            )
        return self._last_hw

    def singular_values(self, h: int | None = None, w: int | None = None) -> Tensor:
        """``(h, w, C)`` singular values of ``W_hat(f)`` at every frequency, descending.

        Together they are the singular values of the whole ``(C h w) x (C h w)`` operator.
        Defaults to the last image size seen.
        """
        h, w = self._hw(h, w)
        with torch.no_grad():
            return torch.linalg.svdvals(kernel_spectrum(self.weight, h, w, full=True))

    def condition_number(self, h: int | None = None, w: int | None = None) -> float:
        """``sigma_max / sigma_min`` of the whole operator on ``h x w`` images."""
        h, w = self._hw(h, w)
        self._refresh_cache()
        return self._condition_number(h, w)

    def _singular_value_range(self, h: int, w: int) -> tuple[float, float]:
        """The operator's smallest and largest singular value on ``h x w`` images.

        Conjugate frequencies share singular values, so the unique blocks suffice.
        """
        with torch.no_grad():
            s = torch.linalg.svdvals(kernel_spectrum_unique(self.weight, h, w))
        return s.min().item(), s.max().item()

    def _condition_number(self, h: int, w: int) -> float:
        entry = self._entry(h, w)
        if "cond" not in entry:
            lo, hi = self._singular_value_range(h, w)
            entry["cond"] = hi / lo if lo > 0 else math.inf
        return entry["cond"]  # type: ignore[return-value]

    def check_conditioning(self, h: int | None = None, w: int | None = None) -> float:
        """Expected relative error bound ``cond * eps`` of an inverse; warn/raise above tolerance.

        Computed once per weight value and size (one SVD per frequency block).
        """
        if self.tolerance is None:
            return 0.0
        h, w = self._hw(h, w)
        self._refresh_cache()
        return self._check_conditioning(h, w)

    def _check_conditioning(self, h: int, w: int) -> float:
        """``check_conditioning`` on a refreshed cache; warns at the caller's caller."""
        if self.tolerance is None:
            return 0.0
        cond = self._condition_number(h, w)
        bound = cond * torch.finfo(self.weight.dtype).eps
        if bound > self.tolerance:
            entry = self._entry(h, w)
            msg = (
                f"CircularConv2d: condition number {cond:.3g} on {h}x{w} images in "
                f"{self.weight.dtype}: the inverse may lose relative accuracy up to "
                f"~{bound:.1e}, above the tolerance {self.tolerance:.1e}"
            )
            if self.strict:
                raise IllConditionedError(msg + " (strict=True)")
            if not entry.get("warned"):
                entry["warned"] = True
                warnings.warn(msg, ConditioningWarning, stacklevel=3)
        return bound

    @torch.no_grad()
    def clip_singular_values_(
        self,
        h: int | None = None,
        w: int | None = None,
        bounds: tuple[float, float] | None = None,
    ) -> bool:
        """Project the kernel towards singular values within ``bounds`` (Sedghi et al., 2019).

        Clips every ``W_hat(f)``'s singular values on the ``h x w`` grid, transforms back and
        keeps the ``k x k`` support. The truncation moves the singular values again (by
        little when few are clipped), so this is one step of an alternating projection:
        call it after each optimizer step. Defaults: last size seen, ``self.sv_bounds``.
        Returns whether the kernel changed: one already within bounds is left as it is.
        """
        h, w = self._hw(h, w)
        lo, hi = self.sv_bounds if bounds is None else bounds
        # Most training steps clip nothing, and this check costs a fifth of the projection
        # (which made a hybrid i-ConvNet's MNIST step ~15 % slower when run every step).
        s_min, s_max = self._singular_value_range(h, w)
        if s_min >= lo and s_max <= hi:
            return False
        full = kernel_spectrum(self.weight, h, w, full=True)  # (h, w, C, C)
        u, s, vh = torch.linalg.svd(full)
        clipped = (u * s.clamp(lo, hi).to(u.dtype).unsqueeze(-2)) @ vh
        spatial = torch.fft.ifft2(clipped.permute(2, 3, 0, 1)).real  # (C, C, h, w)
        k, p = self.kernel_size, self.kernel_size // 2
        spatial = torch.roll(spatial, shifts=(p, p), dims=(-2, -1))[..., :k, :k]
        self.weight.copy_(torch.flip(spatial, dims=(-2, -1)))
        return True

    def conditioning_penalty(
        self,
        h: int | None = None,
        w: int | None = None,
        bounds: tuple[float, float] | None = None,
    ) -> Tensor:
        """Differentiable barrier: ``sum_f sum_i relu(log(lo / s_i))^2 + relu(log(s_i / hi))^2``.

        Zero while every singular value lies in ``bounds`` (default ``self.sv_bounds``);
        add ``lambda * penalty`` to the training loss.
        """
        h, w = self._hw(h, w)
        lo, hi = self.sv_bounds if bounds is None else bounds
        log_s = torch.log(torch.linalg.svdvals(self.spectrum(h, w)))
        excess = F.relu(math.log(lo) - log_s) ** 2 + F.relu(log_s - math.log(hi)) ** 2
        mult = half_spectrum_multiplicity(h, w, log_s.dtype, log_s.device)
        return (excess.sum(-1) * mult).sum()

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, kernel_size={self.kernel_size}, "
            f"bias={self.bias is not None}, linalg={self.linalg!r}, method={self.method!r}, "
            f"solver={self.solver!r}"
        )
