"""Peer-library flows (nflows, normflows, zuko, FrEIA) behind one interface, for ``peers.py``.

``vector_flow`` and ``image_flow`` return a ``PeerModel`` (an ``nn.Module`` whose
``log_prob(x)`` is the (B,) log-density in nats); ``layer`` returns a ``PeerLayer`` for the
throughput table. Each builder matches our architecture as closely as the library's API
allows; every deviation is a one-line entry in ``NOTES``, and a case the library cannot
express raises ``NotExpressible`` whose message is the reason for the table.

Peers are imported lazily so that this module imports with none of them installed.
Direction convention: ``PeerLayer.forward`` is the data -> latent pass that ``log_prob``
(and so training) runs, whatever the library calls it; ``inverse`` is the other one.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from invertible.nets import GlowConvNet

__all__ = [
    "IMAGE_ARCH",
    "LAYER_KINDS",
    "NOTES",
    "PEERS",
    "VECTOR_ARCHS",
    "NotExpressible",
    "PeerLayer",
    "PeerModel",
    "image_flow",
    "layer",
    "vector_flow",
    "versions",
]

PEERS: tuple[str, ...] = ("nflows", "normflows", "zuko", "freia")
VECTOR_ARCHS: tuple[str, ...] = ("spline-ar", "spline-coupling", "affine-coupling")
IMAGE_ARCH = "glow"
LAYER_KINDS: tuple[str, ...] = ("affine-coupling", "spline-coupling", "conv1x1", "circular-conv")

# lib -> (import name, distribution name)
_PACKAGES: dict[str, tuple[str, str]] = {
    "nflows": ("nflows", "nflows"),
    "normflows": ("normflows", "normflows"),
    "zuko": ("zuko", "zuko"),
    "freia": ("FrEIA", "FrEIA"),
}

# Our AffineCoupling's soft clamp on the log-scale, s = CLAMP * tanh(raw / CLAMP).
CLAMP = 3.0

# Sizes of the layer-throughput cases (fixed by the benchmark, not by the caller).
LAYER_DIM = 32
LAYER_HIDDEN = 128
LAYER_LAYERS = 2
LAYER_BINS = 8
LAYER_TAIL_BOUND = 3.0
LAYER_IMAGE = (16, 16, 16)

_NO_FREIA_SPLINE = "FrEIA 0.2 has no spline (coupling or autoregressive) layers"
_NO_ZUKO_IMAGE = "zuko has no convolutional or multi-scale layers (vector flows only)"

NOTES: dict[tuple[str, str], str] = {
    ("nflows", "spline-ar"): (
        "MaskedPiecewiseRationalQuadraticAutoregressiveTransform with use_residual_blocks=False, "
        "num_blocks=layers-1 (plain MADE); nflows' default init, not a zeroed output layer"
    ),
    ("nflows", "spline-coupling"): (
        "PiecewiseRationalQuadraticCouplingTransform with our plain ReLU MLP as conditioner "
        "(nflows' MLP takes no context argument, its ResidualNet is residual)"
    ),
    ("nflows", "affine-coupling"): (
        "AffineCouplingTransform: scale hard-wired to sigmoid(u+2)+1e-3 (< 1.001), so x->z only "
        "shrinks and log p(x) <= ~-(dim/2) log(2 pi); ours is exp(3 tanh(u/3))"
    ),
    ("normflows", "spline-ar"): (
        "the MaskedPiecewiseRationalQuadraticAutoregressive inside "
        "AutoregressiveRationalQuadraticSpline, built with use_residual_blocks=False "
        "(the wrapper hard-codes a residual MADE); normflows' identity init"
    ),
    ("normflows", "spline-coupling"): (
        "the PiecewiseRationalQuadraticCoupling inside CoupledRationalQuadraticSpline with a plain "
        "MLP and no unconditional spline on the kept half (the wrapper adds one, with a ResidualNet)"
    ),
    ("normflows", "affine-coupling"): (
        "AffineCouplingBlock(scale_map='exp') with our soft clamp put in its param_map (bare exp "
        "gives NaN far from the data); contiguous halves, as its checkerboard split fails on odd dims"
    ),
    ("zuko", "spline-ar"): (
        "MAF with NSF's spline and bound=tail_bound (NSF fixes the bound at 5); identity outside "
        "[-B, B] as linear tails; zuko soft-clips raw spline params; default-init output layer"
    ),
    ("zuko", "spline-coupling"): (
        "NICE / GeneralCouplingTransform with the RQ spline (a true coupling; NSF(passes=2) would "
        "also move the kept half by an unconditional spline); default-init output layer"
    ),
    ("zuko", "affine-coupling"): (
        "NICE / GeneralCouplingTransform (RealNVP): log-scale soft-clipped as a/(1+|a|/6.9) "
        "instead of 3 tanh(a/3); default-init output layer"
    ),
    ("freia", "affine-coupling"): (
        "GLOWCouplingBlock per pair of steps (one AffineCouplingOneSided first if steps is odd): "
        "contiguous halves, not even/odd; clamp set to ours (3 tanh(u/3), FrEIA default 2*atan)"
    ),
    ("nflows", "glow"): (
        "MultiscaleCompositeTransform; OneByOneConvolution is LU with a bias and a fixed random "
        "channel permutation; coupling scale sigmoid(h+2)+1e-3 (Glow's) where ours is exp(3 tanh)"
    ),
    ("normflows", "glow"): (
        "MultiscaleFlow of GlowBlock(scale_map='sigmoid', use_lu=True), Squeeze, Merge: Glow's "
        "sigmoid(h+2) scale where ours is exp(3 tanh); ActNorm data-inits on its first call in any mode"
    ),
    ("freia", "glow"): (
        "GraphINN with IRevNetDownsampling and Split; the 1x1 conv is Fixed1x1Conv, a frozen "
        "random rotation (FrEIA has no learnable one); AffineCouplingOneSided with our clamp"
    ),
    ("nflows", "conv1x1"): (
        "OneByOneConvolution: LU-parametrised, plus a bias and a fixed random permutation"
    ),
    ("normflows", "conv1x1"): (
        "Invertible1x1Conv(use_lu=True); its z -> x pass re-inverts L and U in float64"
    ),
}


class NotExpressible(Exception):
    """The library's API cannot express this case; str(e) is a one-line reason for the table."""


# --------------------------------------------------------------------------------------------
# Library lookup


def _check_lib(lib: str) -> None:
    if lib not in PEERS:
        raise ValueError(f"unknown peer library {lib!r}; expected one of {PEERS}")


def _import(lib: str) -> ModuleType:
    """The peer's top-level module, or NotExpressible when it does not import."""
    _check_lib(lib)
    try:
        return importlib.import_module(_PACKAGES[lib][0])
    except Exception as e:  # a broken install is as good as a missing one for the table
        raise NotExpressible(f"{lib} is not installed") from e


def versions() -> dict[str, str | None]:
    """Installed version of each peer, None where it does not import (never raises)."""
    out: dict[str, str | None] = {}
    for lib in PEERS:
        try:
            mod = _import(lib)
        except Exception:  # noqa: BLE001 - documented never to raise
            out[lib] = None
            continue
        # nflows and FrEIA have no __version__; the distribution metadata always does.
        try:
            out[lib] = importlib.metadata.version(_PACKAGES[lib][1])
        except Exception:  # noqa: BLE001 - documented never to raise
            v = getattr(mod, "__version__", None)
            out[lib] = None if v is None else str(v)
    return out


# --------------------------------------------------------------------------------------------
# Shared building blocks (our conditioners, so every library gets the same networks)


def _zero(m: nn.Linear | nn.Conv2d) -> nn.Linear | nn.Conv2d:
    """Zero the last layer so a fresh coupling starts near the identity (as ours do)."""
    nn.init.zeros_(m.weight)
    if m.bias is not None:
        nn.init.zeros_(m.bias)
    return m


class _MLP(nn.Module):
    """``layers`` hidden ReLU layers of width ``hidden``, zero-initialised output (as ours).

    Takes and ignores ``context`` because nflows/normflows couplings call
    ``transform_net(x, context)``.
    """

    def __init__(self, in_features: int, out_features: int, hidden: int, layers: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        width = in_features
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*mods, _zero(nn.Linear(width, out_features)))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(x)


class _ClampedScaleMLP(_MLP):
    """``_MLP`` whose odd outputs (normflows' interleaved log-scales) are soft-clamped as ours.

    normflows' ``scale_map="exp"`` has no clamp, and unclamped scales overflow to NaN on
    points far from the data; its ``param_map`` is ours to choose, so the clamp goes here.
    """

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.net(x)
        shift, raw = h[:, 0::2], h[:, 1::2]
        log_scale = CLAMP * torch.tanh(raw / CLAMP)
        return torch.stack((shift, log_scale), dim=2).flatten(1)


class _GlowNet(GlowConvNet):
    """Our Glow coupling network, but run as plain PyTorch runs it (NCHW, no layout switch),
    which is what a user of the peer library gets; takes and ignores ``context``."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(x)


def _unit_tanh_clamp(u: Tensor, clamp: float) -> Tensor:
    """FrEIA multiplies this by its ``clamp``, giving our ``clamp * tanh(u / clamp)``."""
    return torch.tanh(u / clamp)


def _freia_clamp() -> dict[str, Any]:
    # A partial of a module-level function, not a lambda, so that the model can be pickled
    # (vector flows; FrEIA's own ActNorm holds a closure, so the Glow model cannot be).
    return {"clamp": CLAMP, "clamp_activation": partial(_unit_tanh_clamp, clamp=CLAMP)}


def _kept(dim: int, step: int) -> Tensor:
    """Our alternating mask: True (kept) on even indices for even steps, odd for odd steps."""
    return torch.arange(dim) % 2 == step % 2


def _std_normal_log_prob(z: Tensor) -> Tensor:
    z = z.flatten(1)
    return -0.5 * (z.square().sum(1) + z.shape[1] * math.log(2 * math.pi))


def _per_sample(logdet: Tensor | float, x: Tensor) -> Tensor:
    """Broadcast a scalar log-det (normflows, FrEIA return one for data-independent layers)."""
    return logdet + x.new_zeros(x.shape[0])


def _spline_shapes(bins: int) -> list[tuple[int, ...]]:
    """zuko's RQ spline parameter shapes (widths, heights, inner derivatives), as in its NSF."""
    return [(bins,), (bins,), (bins - 1,)]


def _check_image(shape: Sequence[int], levels: int, depth: int) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"image_flow: shape must be (C, H, W), got {tuple(shape)}")
    c, h, w = (int(s) for s in shape)
    if levels < 1 or depth < 1:
        raise ValueError(f"image_flow: levels and depth must be >= 1, got {levels}, {depth}")
    if h % 2**levels or w % 2**levels:
        raise ValueError(f"image_flow: H, W = {h}, {w} must divide by 2**levels = {2**levels}")
    return c, h, w


# --------------------------------------------------------------------------------------------
# Uniform model wrapper


class PeerModel(nn.Module):
    """A peer flow with ``log_prob(x) -> (B,)`` in nats; ``forward`` is ``log_prob``.

    ``flow`` is the library's own module (so ``.parameters()`` reaches everything);
    ``preprocess`` (images only) is our ``LogitTransform`` with its log-det included.
    """

    flow: Any  # each library's own API, typed loosely on purpose

    def __init__(self, lib: str, flow: nn.Module, preprocess: nn.Module | None = None) -> None:
        super().__init__()
        self.lib = lib
        self.flow = flow
        self.preprocess = preprocess

    def log_prob(self, x: Tensor) -> Tensor:
        logdet: Tensor | float = 0.0
        if self.preprocess is not None:
            x, logdet = self.preprocess(x)
        return self._flow_log_prob(x) + logdet

    def forward(self, x: Tensor) -> Tensor:
        return self.log_prob(x)

    def _flow_log_prob(self, x: Tensor) -> Tensor:
        # nflows Flow and normflows NormalizingFlow: log_prob(x) in nats, shape (B,).
        return self.flow.log_prob(x)

    def extra_repr(self) -> str:
        return f"lib={self.lib!r}"


class _NormflowsMultiscale(PeerModel):
    def _flow_log_prob(self, x: Tensor) -> Tensor:
        return self.flow.log_prob(x, None)  # MultiscaleFlow.log_prob requires the class arg y


class _ZukoModel(PeerModel):
    def _flow_log_prob(self, x: Tensor) -> Tensor:
        return self.flow().log_prob(x)  # a zuko Flow is a lazy distribution: call it first


class _FreiaModel(PeerModel):
    def _flow_log_prob(self, x: Tensor) -> Tensor:
        z, logdet = self.flow(x)  # FrEIA returns latents + log-det; the base is up to us
        zs = z if isinstance(z, (tuple, list)) else (z,)
        return sum(_std_normal_log_prob(t) for t in zs) + logdet


# --------------------------------------------------------------------------------------------
# Vector flows


def vector_flow(
    lib: str,
    arch: str,
    dim: int,
    *,
    steps: int,
    hidden: int,
    layers: int,
    bins: int,
    tail_bound: float,
) -> PeerModel:
    """arch in {"spline-ar", "spline-coupling", "affine-coupling"}."""
    _check_lib(lib)
    if arch not in VECTOR_ARCHS:
        raise ValueError(f"vector_flow: arch must be one of {VECTOR_ARCHS}, got {arch!r}")
    if dim < 2 or steps < 1 or hidden < 1 or layers < 1 or bins < 2 or not tail_bound > 0:
        raise ValueError(
            f"vector_flow: need dim >= 2, steps, hidden, layers >= 1, bins >= 2, tail_bound > 0; "
            f"got {dim}, {steps}, {hidden}, {layers}, {bins}, {tail_bound}"
        )
    if lib == "freia" and arch != "affine-coupling":
        _import(lib)  # "not installed" wins over "cannot express"
        raise NotExpressible(_NO_FREIA_SPLINE)
    build = {
        "nflows": _nflows_vector,
        "normflows": _normflows_vector,
        "zuko": _zuko_vector,
        "freia": _freia_vector,
    }[lib]
    return build(arch, dim, steps, hidden, layers, bins, float(tail_bound))


def _nflows_vector(
    arch: str, dim: int, steps: int, hidden: int, layers: int, bins: int, tail_bound: float
) -> PeerModel:
    _import("nflows")
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import (
        AffineCouplingTransform,
        CompositeTransform,
        MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
        PiecewiseRationalQuadraticCouplingTransform,
        ReversePermutation,
    )

    net = partial(_MLP, hidden=hidden, layers=layers)
    ts: list[nn.Module] = []
    for k in range(steps):
        if k and arch == "spline-ar":
            ts.append(ReversePermutation(dim))
        mask = (~_kept(dim, k)).int()  # nflows: mask > 0 marks the transformed features
        if arch == "spline-ar":
            ts.append(
                MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    features=dim,
                    hidden_features=hidden,
                    num_bins=bins,
                    tails="linear",
                    tail_bound=tail_bound,
                    num_blocks=layers - 1,  # input layer + (layers-1) blocks = `layers` hidden
                    use_residual_blocks=False,
                )
            )
        elif arch == "spline-coupling":
            ts.append(
                PiecewiseRationalQuadraticCouplingTransform(
                    mask, net, num_bins=bins, tails="linear", tail_bound=tail_bound
                )
            )
        else:
            ts.append(AffineCouplingTransform(mask, net))
    return PeerModel("nflows", Flow(CompositeTransform(ts), StandardNormal([dim])))


def _normflows_reverse(nf: ModuleType, dim: int) -> nn.Module:
    # normflows' Permute offers only random shuffles or half swaps; set its shuffle to a reversal.
    p = nf.flows.Permute(dim, mode="shuffle")
    rev = torch.arange(dim - 1, -1, -1)
    p.perm.copy_(rev)
    p.inv_perm.copy_(rev)
    return p


def _normflows_spline_ar(
    nf: ModuleType, dim: int, hidden: int, layers: int, bins: int, tail_bound: float
) -> nn.Module:
    from normflows.flows.neural_spline.autoregressive import (
        MaskedPiecewiseRationalQuadraticAutoregressive,
    )

    t = MaskedPiecewiseRationalQuadraticAutoregressive(
        features=dim,
        hidden_features=hidden,
        num_bins=bins,
        tails="linear",
        tail_bound=tail_bound,
        num_blocks=layers - 1,
        use_residual_blocks=False,
    )
    return nf.flows.Reverse(t)  # its forward is x -> z; normflows flows run z -> x


def _normflows_spline_coupling(
    nf: ModuleType, dim: int, step: int, hidden: int, layers: int, bins: int, tail_bound: float
) -> nn.Module:
    from normflows.flows.neural_spline.coupling import PiecewiseRationalQuadraticCoupling

    t = PiecewiseRationalQuadraticCoupling(
        mask=(~_kept(dim, step)).int(),  # as nflows: mask > 0 marks the transformed features
        transform_net_create_fn=partial(_MLP, hidden=hidden, layers=layers),
        num_bins=bins,
        tails="linear",
        tail_bound=tail_bound,
        apply_unconditional_transform=False,
    )
    return nf.flows.Reverse(t)


def _normflows_affine_coupling(
    nf: ModuleType, dim: int, step: int, hidden: int, layers: int
) -> nn.Module:
    # Split 'channel' keeps the first ceil(dim/2) features; 'channel_inv' keeps the rest.
    first, second = (dim + 1) // 2, dim // 2
    kept, moved = (first, second) if step % 2 == 0 else (second, first)
    net = _ClampedScaleMLP(kept, 2 * moved, hidden, layers)
    mode = "channel" if step % 2 == 0 else "channel_inv"
    return nf.flows.AffineCouplingBlock(net, scale=True, scale_map="exp", split_mode=mode)


def _normflows_vector(
    arch: str, dim: int, steps: int, hidden: int, layers: int, bins: int, tail_bound: float
) -> PeerModel:
    nf = _import("normflows")
    density_order: list[nn.Module] = []  # x -> z
    for k in range(steps):
        if arch == "spline-ar":
            if k:
                density_order.append(_normflows_reverse(nf, dim))
            density_order.append(_normflows_spline_ar(nf, dim, hidden, layers, bins, tail_bound))
        elif arch == "spline-coupling":
            density_order.append(
                _normflows_spline_coupling(nf, dim, k, hidden, layers, bins, tail_bound)
            )
        else:
            density_order.append(_normflows_affine_coupling(nf, dim, k, hidden, layers))
    base = nf.distributions.DiagGaussian(dim, trainable=False)
    # normflows lists flows in sampling order (z -> x) and runs them backwards for log_prob.
    return PeerModel("normflows", nf.NormalizingFlow(base, density_order[::-1]))


def _zuko_vector(
    arch: str, dim: int, steps: int, hidden: int, layers: int, bins: int, tail_bound: float
) -> PeerModel:
    zuko = _import("zuko")
    from zuko.transforms import MonotonicRQSTransform

    kw: dict[str, Any] = {"hidden_features": [hidden] * layers}
    if arch != "affine-coupling":
        # NSF hard-codes bound=5; passing its spline ourselves lets the bound be tail_bound.
        kw["univariate"] = partial(MonotonicRQSTransform, bound=tail_bound)
        kw["shapes"] = _spline_shapes(bins)
    if arch == "spline-ar":
        # MAF alternates ascending / descending orders, i.e. a reversal between steps.
        flow = zuko.flows.MAF(dim, transforms=steps, **kw)
    else:
        # NICE: masks arange % 2 == step % 2 mark the kept half, exactly our alternating masks.
        flow = zuko.flows.NICE(dim, transforms=steps, **kw)
    return _ZukoModel("zuko", flow)


def _freia_vector(
    arch: str, dim: int, steps: int, hidden: int, layers: int, bins: int, tail_bound: float
) -> PeerModel:
    _import("freia")
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    kw = {
        "subnet_constructor": partial(_MLP, hidden=hidden, layers=layers),
        # Kept half first and of size ceil(dim/2), as our even/odd masks, so odd dims match.
        "split_len": (dim + 1) // 2,
        **_freia_clamp(),
    }
    inn = Ff.SequenceINN(dim)
    # A GLOWCouplingBlock is two one-sided couplings (first half given second, then second
    # given first); a leading one-sided block (second given first) keeps odd counts alternating.
    if steps % 2:
        inn.append(Fm.AffineCouplingOneSided, **kw)
    for _ in range(steps // 2):
        inn.append(Fm.GLOWCouplingBlock, **kw)
    return _FreiaModel("freia", inn)


# --------------------------------------------------------------------------------------------
# Image flows (Glow)


def image_flow(
    lib: str, shape: tuple[int, int, int], *, levels: int, depth: int, hidden: int, alpha: float
) -> PeerModel:
    """Glow-style multi-scale flow for images in [0, 1]."""
    _check_lib(lib)
    c, h, w = _check_image(shape, levels, depth)
    if lib == "zuko":
        _import(lib)
        raise NotExpressible(_NO_ZUKO_IMAGE)
    from invertible import LogitTransform  # identical preprocessing (and log-det) for every peer

    build = {"nflows": _nflows_glow, "normflows": _normflows_glow, "freia": _freia_glow}[lib]
    return build((c, h, w), levels, depth, hidden, LogitTransform(alpha))


def _nflows_glow(
    shape: tuple[int, int, int], levels: int, depth: int, hidden: int, pre: nn.Module
) -> PeerModel:
    _import("nflows")
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import (
        ActNorm,
        AffineCouplingTransform,
        CompositeTransform,
        MultiscaleCompositeTransform,
        OneByOneConvolution,
        SqueezeTransform,
    )

    multiscale = MultiscaleCompositeTransform(num_transforms=levels)
    c, h, w = shape
    for _ in range(levels):
        c, h, w = 4 * c, h // 2, w // 2
        steps: list[nn.Module] = [SqueezeTransform()]
        for _ in range(depth):
            steps += [
                ActNorm(c),
                OneByOneConvolution(c),
                # keep the first c//2 channels, transform the rest (as our channel_mask)
                AffineCouplingTransform(
                    (torch.arange(c) >= c // 2).int(), partial(_GlowNet, hidden=hidden)
                ),
            ]
        # Returns the shape that continues to the next level (None after the last).
        nxt = multiscale.add_transform(CompositeTransform(steps), (c, h, w))
        if nxt is not None:
            c, h, w = nxt
    # The multiscale transform flattens and concatenates all latents.
    return PeerModel("nflows", Flow(multiscale, StandardNormal([math.prod(shape)])), pre)


def _normflows_glow(
    shape: tuple[int, int, int], levels: int, depth: int, hidden: int, pre: nn.Module
) -> PeerModel:
    nf = _import("normflows")
    c, h, w = shape
    per_level: list[tuple[list[nn.Module], tuple[int, int, int]]] = []  # data side first
    for level in range(levels):
        c, h, w = 4 * c, h // 2, w // 2
        # In sampling order (z -> x): the Glow steps, then Squeeze (depth-to-space).
        flows: list[nn.Module] = [
            nf.flows.GlowBlock(
                c,
                hidden,
                scale=True,
                scale_map="sigmoid",
                split_mode="channel",
                leaky=0.0,
                init_zeros=True,
                use_lu=True,
            )
            for _ in range(depth)
        ]
        flows.append(nf.flows.Squeeze())
        if level < levels - 1:
            # Merge.inverse splits with chunk(2): the first ceil(c/2) channels go on.
            per_level.append((flows, (c // 2, h, w)))
            c -= c // 2
        else:
            per_level.append((flows, (c, h, w)))
    per_level.reverse()  # MultiscaleFlow indexes levels from the latent side
    model = nf.MultiscaleFlow(
        q0=[nf.distributions.DiagGaussian(s, trainable=False) for _, s in per_level],
        flows=[f for f, _ in per_level],
        merges=[nf.flows.Merge() for _ in range(levels - 1)],
        class_cond=False,
    )
    return _NormflowsMultiscale("normflows", model, pre)


def _random_rotation(n: int) -> Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n))
    return q


def _freia_glow(
    shape: tuple[int, int, int], levels: int, depth: int, hidden: int, pre: nn.Module
) -> PeerModel:
    _import("freia")
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    c, _, _ = shape
    nodes: list[Any] = [Ff.InputNode(*shape, name="x")]
    outputs: list[Any] = []
    coupling = {"subnet_constructor": partial(_GlowNet, hidden=hidden), **_freia_clamp()}
    for level in range(levels):
        c *= 4
        nodes.append(Ff.Node(nodes[-1], Fm.IRevNetDownsampling, {}))
        for _ in range(depth):
            nodes.append(Ff.Node(nodes[-1], Fm.ActNorm, {}))
            nodes.append(Ff.Node(nodes[-1], Fm.Fixed1x1Conv, {"M": _random_rotation(c)}))
            nodes.append(Ff.Node(nodes[-1], Fm.AffineCouplingOneSided, coupling))
        if level < levels - 1:
            split = Ff.Node(nodes[-1], Fm.Split, {"n_sections": 2, "dim": 0})
            nodes.append(split)  # the next node reads split.out0, which goes on
            outputs.append(Ff.OutputNode(split.out1))
            c -= c // 2
    outputs.append(Ff.OutputNode(nodes[-1]))
    return _FreiaModel("freia", Ff.GraphINN(nodes + outputs), pre)


# --------------------------------------------------------------------------------------------
# Single layers (throughput)


@dataclass
class PeerLayer:
    """One peer layer: ``forward`` runs data -> latent (the log_prob pass), both give (y, (B,))."""

    module: nn.Module
    example: Tensor
    forward: Callable[[Tensor], tuple[Tensor, Tensor]]
    inverse: Callable[[Tensor], tuple[Tensor, Tensor]]


def layer(lib: str, kind: str, *, batch: int) -> PeerLayer:
    """kind in {"affine-coupling", "spline-coupling", "conv1x1", "circular-conv"}."""
    _check_lib(lib)
    if kind not in LAYER_KINDS:
        raise ValueError(f"layer: kind must be one of {LAYER_KINDS}, got {kind!r}")
    if batch < 1:
        raise ValueError(f"layer: batch must be >= 1, got {batch}")
    _import(lib)
    build = {
        "nflows": _nflows_layer,
        "normflows": _normflows_layer,
        "zuko": _zuko_layer,
        "freia": _freia_layer,
    }[lib]
    return build(kind, batch)


def _vector_example(batch: int) -> Tensor:
    return torch.randn(batch, LAYER_DIM)


def _image_example(batch: int) -> Tensor:
    return torch.randn(batch, *LAYER_IMAGE)


def _layer_net() -> Callable[[int, int], nn.Module]:
    return partial(_MLP, hidden=LAYER_HIDDEN, layers=LAYER_LAYERS)


def _nflows_layer(kind: str, batch: int) -> PeerLayer:
    from nflows.transforms import (
        AffineCouplingTransform,
        OneByOneConvolution,
        PiecewiseRationalQuadraticCouplingTransform,
    )

    mask = (~_kept(LAYER_DIM, 0)).int()
    if kind == "affine-coupling":
        m: Any = AffineCouplingTransform(mask, _layer_net())
        x = _vector_example(batch)
    elif kind == "spline-coupling":
        m = PiecewiseRationalQuadraticCouplingTransform(
            mask, _layer_net(), num_bins=LAYER_BINS, tails="linear", tail_bound=LAYER_TAIL_BOUND
        )
        x = _vector_example(batch)
    elif kind == "conv1x1":
        m = OneByOneConvolution(LAYER_IMAGE[0])
        x = _image_example(batch)
    else:
        raise NotExpressible(
            "nflows has no circular (FFT) convolution; its only convolution is the 1x1 "
            "OneByOneConvolution"
        )

    # nflows transforms already run data -> latent in forward().
    def fwd(t: Tensor) -> tuple[Tensor, Tensor]:
        return m(t)

    def inv(t: Tensor) -> tuple[Tensor, Tensor]:
        return m.inverse(t)

    return PeerLayer(m, x, fwd, inv)


def _normflows_layer(kind: str, batch: int) -> PeerLayer:
    import normflows as nf

    if kind == "affine-coupling":
        m: Any = _normflows_affine_coupling(nf, LAYER_DIM, 0, LAYER_HIDDEN, LAYER_LAYERS)
        x = _vector_example(batch)
    elif kind == "spline-coupling":
        m = _normflows_spline_coupling(
            nf, LAYER_DIM, 0, LAYER_HIDDEN, LAYER_LAYERS, LAYER_BINS, LAYER_TAIL_BOUND
        )
        x = _vector_example(batch)
    elif kind == "conv1x1":
        m = nf.flows.Invertible1x1Conv(LAYER_IMAGE[0], use_lu=True)
        x = _image_example(batch)
    else:
        raise NotExpressible(
            "normflows has no circular (FFT) convolution; nearest are Invertible1x1Conv and the "
            "Residual flow (Lipschitz net, fixed-point inverse, stochastic log-det)"
        )

    # normflows layers run z -> x in forward(); the data -> latent pass is inverse().
    def fwd(t: Tensor) -> tuple[Tensor, Tensor]:
        y, ld = m.inverse(t)
        return y, _per_sample(ld, t)

    def inv(t: Tensor) -> tuple[Tensor, Tensor]:
        y, ld = m(t)
        return y, _per_sample(ld, t)

    return PeerLayer(m, x, fwd, inv)


def _zuko_layer(kind: str, batch: int) -> PeerLayer:
    import zuko
    from zuko.transforms import MonotonicRQSTransform

    if kind in ("conv1x1", "circular-conv"):
        raise NotExpressible("zuko has no convolutional layers (vector flows only)")
    kw: dict[str, Any] = {"hidden_features": [LAYER_HIDDEN] * LAYER_LAYERS}
    if kind == "spline-coupling":
        kw["univariate"] = partial(MonotonicRQSTransform, bound=LAYER_TAIL_BOUND)
        kw["shapes"] = _spline_shapes(LAYER_BINS)
    m = zuko.flows.GeneralCouplingTransform(LAYER_DIM, mask=_kept(LAYER_DIM, 0), **kw)

    # A lazy transform: calling it (no context) gives a torch Transform.
    def fwd(t: Tensor) -> tuple[Tensor, Tensor]:
        return m().call_and_ladj(t)

    def inv(t: Tensor) -> tuple[Tensor, Tensor]:
        return m().inv.call_and_ladj(t)

    return PeerLayer(m, _vector_example(batch), fwd, inv)


def _freia_layer(kind: str, batch: int) -> PeerLayer:
    import FrEIA.modules as Fm

    if kind == "spline-coupling":
        raise NotExpressible(_NO_FREIA_SPLINE)
    if kind == "conv1x1":
        raise NotExpressible(
            "FrEIA has no learnable invertible 1x1 convolution (Fixed1x1Conv is a frozen matrix; "
            "AllInOneBlock fuses learned Householder mixing into a coupling)"
        )
    if kind == "circular-conv":
        raise NotExpressible(
            "FrEIA has no circular (FFT) convolution; InvAutoConv2D inverts by the transposed "
            "conv (exact only for orthogonal kernels) and reports log-det 0"
        )
    m = Fm.AffineCouplingOneSided([(LAYER_DIM,)], subnet_constructor=_layer_net(), **_freia_clamp())

    def fwd(t: Tensor) -> tuple[Tensor, Tensor]:
        (y,), ld = m((t,))
        return y, _per_sample(ld, t)

    def inv(t: Tensor) -> tuple[Tensor, Tensor]:
        (y,), ld = m((t,), rev=True)
        return y, _per_sample(ld, t)

    return PeerLayer(m, _vector_example(batch), fwd, inv)
