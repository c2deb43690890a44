"""Fourier-domain helpers for circular convolutions (private).

A ``k x k`` convolution with circular padding on an ``h x w`` image is block-diagonal in
the 2-D Fourier basis: at each spatial frequency ``f`` it multiplies the ``c``-vector of
channel coefficients by a ``c x c`` matrix ``W_hat(f)``, the kernel's DFT at ``f``. For a
real kernel ``W_hat(-f) = conj(W_hat(f))``, so the real-FFT half spectrum (columns
``0 .. w // 2``) holds every distinct block.
"""

from __future__ import annotations

import functools
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
    that ``F.conv2d`` computes on a circularly padded input. Contiguous; differentiable in
    ``weight``.
    """
    wcols = w if full else w // 2 + 1
    index = torch.arange(h * wcols, device=weight.device)
    return kernel_spectrum_at(weight, h, w, index, wcols).view(h, wcols, *weight.shape[:2])


def kernel_spectrum_unique(weight: Tensor, h: int, w: int, out: Tensor | None = None) -> Tensor:
    """``W_hat`` at the ``half_spectrum_unique`` frequencies: ``(n, c_out, c_in)`` complex.

    ``out``, if given, is a contiguous ``(n, c_out, c_in)`` tensor written in place (no
    autograd); otherwise the result is fresh and differentiable in ``weight``.
    """
    k = weight.shape[-1]
    if k > _DIRECT_MAX_KERNEL:
        index, _ = half_spectrum_unique(h, w, weight.device)
        spec = kernel_spectrum_at(weight, h, w, index)
        return spec if out is None else out.copy_(spec)
    cdtype = complex_dtype(weight.dtype)
    phases = _unique_phase_table(h, w, k, cdtype, weight.device)
    c_out, c_in = weight.shape[:2]
    taps = weight.reshape(c_out * c_in, k * k).T.to(cdtype)
    if out is None:
        return (phases @ taps).view(-1, c_out, c_in)
    torch.matmul(phases, taps, out=out.view(-1, c_out * c_in))
    return out


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype of a real one's precision: float64 -> complex128, else complex64."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _tap_phases(h: int, w: int, wcols: int, index: Tensor, k: int, cdtype: torch.dtype) -> Tensor:
    """``(n, k * k)``: ``exp(+2 pi i f.s / N)`` per frequency ``index`` and tap offset ``s``."""
    ey = _phases(h, index // wcols, k, cdtype, index.device)  # (n, k)
    ex = _phases(w, index % wcols, k, cdtype, index.device)  # (n, k)
    return (ey.unsqueeze(2) * ex.unsqueeze(1)).reshape(-1, k * k)


@functools.lru_cache(maxsize=64)
def _unique_phase_table(
    h: int, w: int, k: int, cdtype: torch.dtype, device: torch.device
) -> Tensor:
    # Every uncached log-det reads this table: building it is ~20 small ops, a third of
    # the log-det's time for c <= 16. A plain tensor even when first built under
    # inference mode, since training saves it for the backward of the spectrum.
    with torch.inference_mode(False), torch.no_grad():
        index, _ = half_spectrum_unique(h, w, device)
        return _tap_phases(h, w, w // 2 + 1, index, k, cdtype)


def kernel_spectrum_at(
    weight: Tensor, h: int, w: int, index: Tensor, wcols: int | None = None
) -> Tensor:
    """``W_hat`` at some frequencies: ``(n,)`` positions in the flattened ``(h, wcols)`` grid
    (default ``wcols = w // 2 + 1``, the half spectrum) -> ``(n, c_out, c_in)`` complex."""
    k = weight.shape[-1]
    c_out, c_in = weight.shape[:2]
    cdtype = complex_dtype(weight.dtype)
    wcols = w // 2 + 1 if wcols is None else wcols
    if k <= _DIRECT_MAX_KERNEL:
        # conv2d is a cross-correlation, z[n] = sum_s w_s x[n + s] with s = tap - k // 2,
        # so W_hat(f) = sum_s w_s exp(+2 pi i f.s / N): one (n, k^2) x (k^2, c_out c_in)
        # matrix product, written straight into the (n, c_out, c_in) layout the
        # factorisations read, beats transforming a zero-padded h x w kernel.
        phases = _tap_phases(h, w, wcols, index, k, cdtype)
        taps = weight.reshape(c_out * c_in, k * k).T.to(cdtype)
        return (phases @ taps).view(-1, c_out, c_in)
    # Large kernels: the same transfer function is the DFT of the flipped kernel placed at
    # offsets -s (mod N): flip, zero-pad to (h, w), roll the centre to 0.
    p = k // 2
    flipped = torch.flip(weight, dims=(-2, -1))
    padded = torch.nn.functional.pad(flipped, (0, w - k, 0, h - k))
    padded = torch.roll(padded, shifts=(-p, -p), dims=(-2, -1))
    spec = torch.fft.fft2(padded) if wcols == w else torch.fft.rfft2(padded)
    return spec.permute(2, 3, 0, 1).reshape(h * wcols, c_out, c_in).index_select(0, index)


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


@functools.lru_cache(maxsize=64)
def _unique_cpu(h: int, w: int) -> tuple[Tensor, Tensor]:
    # Plain tensors even when first built under inference mode: training multiplies by
    # the weights and saves them for the backward.
    with torch.inference_mode(False):
        return _half_spectrum_unique(h, w)


def half_spectrum_unique(h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """One block of every conjugate pair of the half spectrum, for log-dets.

    Returns ``(index, weight)``: ``index`` (int64) holds positions in the flattened
    ``(h, w // 2 + 1)`` half spectrum, ``weight`` (float64) how many full-spectrum blocks
    each stands for, so that ``sum_f log|det W_hat(f)| = (weight * per_block[index]).sum()``.

    Why: column 0 (and column ``w / 2`` for even ``w``) of the half spectrum is its own
    mirror image, so there ``W_hat(h - fy) = conj(W_hat(fy))``, with the same ``|det|``:
    half of its blocks need no factorisation (6 % of the blocks at 32 x 32, 15 % at 8 x 8).
    """
    index, weight = _unique_cpu(h, w)
    return index.to(device), weight.to(device)


def _half_spectrum_unique(h: int, w: int) -> tuple[Tensor, Tensor]:
    wr = w // 2 + 1
    fy = torch.arange(h).unsqueeze(1).expand(h, wr)
    fx = torch.arange(wr).unsqueeze(0).expand(h, wr)
    self_conj_col = (fx == 0) | ((fx == w // 2) & (w % 2 == 0))
    # The representative of a block: itself, or in a self-conjugate column the smaller row.
    rep_row = torch.where(self_conj_col, torch.minimum(fy, (h - fy) % h), fy)
    rep = (rep_row * wr + fx).reshape(-1)
    index = torch.nonzero(rep == torch.arange(h * wr)).squeeze(1)
    position = torch.full((h * wr,), -1, dtype=torch.long)
    position[index] = torch.arange(index.numel())
    # Full-spectrum blocks per half-spectrum block: 1 in self-conjugate columns, else 2;
    # each adds to its representative.
    per_half = torch.where(self_conj_col, 1.0, 2.0).reshape(-1).to(torch.float64)
    weight = torch.zeros(index.numel(), dtype=torch.float64).index_add_(0, position[rep], per_half)
    return index, weight


def lift(a: Tensor) -> Tensor:
    """Real lifting ``phi(A + iB) = [[A, -B], [B, A]]``: ``(..., n, n)`` complex -> ``(..., 2n, 2n)``.

    ``phi`` is a ring homomorphism with ``det phi(C) = |det C|^2``, so solves and log-dets
    can run in real arithmetic on backends without complex linear algebra.
    """
    re, im = a.real, a.imag
    top = torch.cat([re, -im], dim=-1)
    bottom = torch.cat([im, re], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def lift_rows(z: Tensor) -> Tensor:
    """``(..., m, n)`` complex -> ``(..., m, 2n)`` real: real parts beside imaginary parts.

    For row systems ``X C^T = Z``: ``lift_rows(X) @ lift(C).mT = lift_rows(Z)``.
    """
    return torch.cat([z.real, z.imag], dim=-1)


def unlift_rows(y: Tensor) -> Tensor:
    """Inverse of ``lift_rows``: ``(..., m, 2n)`` real -> ``(..., m, n)`` complex."""
    n = y.shape[-1] // 2
    return torch.complex(y[..., :n], y[..., n:])


def frequency_major(spec: Tensor) -> Tensor:
    """``(B, C, h, wr)`` -> ``(h, wr, B, C)`` contiguous: per frequency, one row per image.

    With one intra-op thread, one 2-D transpose ``(B C, h wr) -> (h wr, B C)``, which
    PyTorch copies in cache-sized tiles (1.3-3x faster than the 4-D strided copy); that
    tiled copy is single-threaded, though, and with more threads the strided copy, which
    PyTorch splits across them, is faster (both measured at c = 64, 32 x 32, B = 32).
    """
    if torch.get_num_threads() > 1:
        return spec.permute(2, 3, 0, 1).contiguous()
    b, c, h, wr = spec.shape
    out = spec.new_empty(h, wr, b, c)
    out.view(h * wr, b * c).copy_(spec.reshape(b * c, h * wr).t())
    return out


def spatial_from_rows(rows: Tensor, h: int, w: int) -> Tensor:
    """``(h, w // 2 + 1, B, C)`` frequency-major half spectrum -> ``(B, C, h, w)`` real image,
    contiguous: ``irfft2`` of ``rows.permute(2, 3, 0, 1)``, in two 1-D passes.

    The complex pass over the outer (row-frequency) axis reads the frequency-major rows as
    they lie; one copy then makes each image row's half spectrum contiguous for the real
    pass. ``irfft2`` straight from the permuted view was 1.5-2x slower (c = 64, 32 x 32).
    """
    cols = torch.fft.ifft(rows, dim=0)  # (h, wr, B, C)
    return torch.fft.irfft(cols.permute(2, 3, 0, 1).contiguous(), n=w, dim=-1)
