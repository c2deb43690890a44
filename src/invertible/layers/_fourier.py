"""Fourier-domain helpers for circular convolutions (private).

A ``k x k`` convolution with circular padding on an ``h x w`` image is block-diagonal in
the 2-D Fourier basis: at each spatial frequency ``f`` it multiplies the ``c``-vector of
channel coefficients by a ``c x c`` matrix ``W_hat(f)``, the kernel's DFT at ``f``. For a
real kernel ``W_hat(-f) = conj(W_hat(f))``, so the real-FFT half spectrum (columns
``0 .. w // 2``) holds every distinct block.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Up to this kernel size the spectrum is summed directly over the taps (see below).
_DIRECT_MAX_KERNEL = 7


def _phases(n: int, freqs: Tensor, k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(len(freqs), k)`` complex ``exp(+2 pi i f s / n)`` for tap offsets ``s = -p .. p``."""
    offsets = torch.arange(k, device=device, dtype=torch.float64) - k // 2
    angle = (2 * math.pi / n) * torch.outer(freqs.to(torch.float64), offsets)
    return torch.polar(torch.ones_like(angle), angle).to(dtype)


def kernel_spectrum(weight: Tensor, h: int, w: int, full: bool = False) -> Tensor:
    """``(c_out, c_in, k, k) -> (h, w // 2 + 1, c_out, c_in)`` complex (``(h, w, ...)`` if full).

    The blocks satisfy ``FFT(conv(x))(f) = W_hat(f) @ FFT(x)(f)`` for the cross-correlation
    that ``F.conv2d`` computes on a circularly padded input. Differentiable in ``weight``.
    """
    k = weight.shape[-1]
    cdtype = torch.complex128 if weight.dtype == torch.float64 else torch.complex64
    if k <= _DIRECT_MAX_KERNEL:
        # conv2d is a cross-correlation, z[n] = sum_s w_s x[n + s] with s = tap - k // 2,
        # so W_hat(f) = sum_s w_s exp(+2 pi i f.s / N). With few taps this separable sum
        # (two small contractions) beats transforming a zero-padded h x w kernel.
        wcols = w if full else w // 2 + 1
        fy = torch.arange(h, device=weight.device)
        fx = torch.arange(wcols, device=weight.device)
        ey = _phases(h, fy, k, cdtype, weight.device)  # (h, k)
        ex = _phases(w, fx, k, cdtype, weight.device)  # (wcols, k)
        rows = torch.einsum("oiab,xb->oiax", weight.to(cdtype), ex)
        return torch.einsum("ya,oiax->yxoi", ey, rows)
    # Large kernels: the same transfer function is the DFT of the flipped kernel placed at
    # offsets -s (mod N): flip, zero-pad to (h, w), roll the centre to 0.
    p = k // 2
    flipped = torch.flip(weight, dims=(-2, -1))
    padded = torch.nn.functional.pad(flipped, (0, w - k, 0, h - k))
    padded = torch.roll(padded, shifts=(-p, -p), dims=(-2, -1))
    spec = torch.fft.fft2(padded) if full else torch.fft.rfft2(padded)
    return spec.permute(2, 3, 0, 1)


def half_spectrum_multiplicity(
    h: int, w: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``(w // 2 + 1,)`` weights: how many full-spectrum columns each rfft column stands for.

    Column 0 (and column ``w / 2`` for even ``w``) is its own conjugate partner and counts
    once; every other column also stands for its mirror image and counts twice.
    """
    wr = w // 2 + 1
    m = torch.full((wr,), 2.0, dtype=dtype, device=device)
    m[0] = 1.0
    if w % 2 == 0:
        m[-1] = 1.0
    return m


def lift(a: Tensor) -> Tensor:
    """Real lifting ``phi(A + iB) = [[A, -B], [B, A]]``: ``(..., n, n)`` complex -> ``(..., 2n, 2n)``.

    ``phi`` is a ring homomorphism with ``det phi(C) = |det C|^2``, so solves and log-dets
    can run in real arithmetic on backends without complex linear algebra.
    """
    re, im = a.real, a.imag
    top = torch.cat([re, -im], dim=-1)
    bottom = torch.cat([im, re], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def lift_vector(z: Tensor) -> Tensor:
    """``(..., n, m)`` complex -> ``(..., 2n, m)`` real: stack real over imaginary parts."""
    return torch.cat([z.real, z.imag], dim=-2)


def unlift_vector(y: Tensor) -> Tensor:
    """Inverse of ``lift_vector``: ``(..., 2n, m)`` real -> ``(..., n, m)`` complex."""
    n = y.shape[-2] // 2
    return torch.complex(y[..., :n, :], y[..., n:, :])
