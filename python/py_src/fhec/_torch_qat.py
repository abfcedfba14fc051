"""Quantisation-aware training in plain torch: layers whose forward pass is the encrypted program's
arithmetic (docs/nn.md, "Torch QAT layers"). Imported by ``fhec.torch`` on first use of a layer.

A network is written with these modules as usual (``nn.Sequential`` or a custom ``forward``)::

    QuantInput(n_bits) → QuantConv2d / QuantLinear → QuantReLU (or QuantActivation(f)) → … → QuantLinear

Between them flows a :class:`QValue`: the integers the program holds (exact, float64) with their
meaning (``real = scale·ints + offset``), their worst-case range over every accepted input, and the
integer network so far. Each forward pass computes the exact integers — integer weights of
``n_w_bits`` within the ``n_accum_bits`` budget, every accumulator rounded exactly as the program
rounds it, every activation read from the lookup table the program will use — and a float path
beside them for the gradients (straight-through estimators). ``compile_torch_model(model, X,
import_qat=True)`` runs the model once and hands the integers to Rust (``fhec::onnx::IntegerNetwork``):
nothing is re-quantised, so the model's own integers, the clear interpreter, the simulation and the
encrypted run agree exactly.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _qat

__all__ = [
    "QValue",
    "QuantInput",
    "QuantLinear",
    "QuantConv2d",
    "QuantAvgPool2d",
    "QuantMaxPool2d",
    "QuantActivation",
    "QuantReLU",
    "QuantIdentity",
    "QuantAdd",
    "integer_network",
]

#: accumulator bits kept before a lookup, unless a layer says otherwise
DEFAULT_ROUNDING_BITS = 4


class QValue:
    """What flows between fhec.torch layers: the program's integers and their meaning.

    ``ints``: exact integers (float64), shape ``[N, *sample]``; ``real``: the float value the
    gradients flow through, equal to ``scale·ints + offset`` (``scale`` and ``offset`` broadcast over
    one sample: per channel ``[C, 1, 1]``, per feature, or scalars); ``lo``/``hi``: the integers' worst
    case over every accepted input; ``kind``: ``"grid"`` (an input or activation) or ``"acc"`` (an
    accumulator or a pooled sum, which keeps ``rounding`` bits before a lookup). Torch functions
    (``F.cross_entropy(out, y)``, ``out.argmax(1)``) see :attr:`real`."""

    def __init__(self, ints: torch.Tensor, real: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, lo: int, hi: int,
                 kind: str, rounding: int | None, net: dict, flat_window: bool = False):
        self.ints, self.real, self.scale, self.offset = ints, real, scale, offset
        self.lo, self.hi, self.kind, self.rounding, self.net = lo, hi, kind, rounding, net
        self.flat_window = flat_window  # a window layer's accumulator flattened: no lookup may follow
        # an accumulator of QuantLinear / QuantConv2d (then BatchNorm at most): ``redo(s_w, m)`` recomputes it
        # with the weights ``m·rint(W / s_w)`` (per row), for QuantAdd; ``gain`` is what the layers after the
        # product multiply its per-group scale by (BatchNorm's factor)
        self.redo: Callable[[np.ndarray, np.ndarray], "QValue"] | None = None
        self.gain: np.ndarray | None = None
        self.source: tuple | None = None  # (the layer, its input, padded)

    # -- what torch sees --------------------------------------------------------------------------

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in (torch.flatten, torch.Tensor.flatten) and isinstance(args[0], QValue):
            return args[0].flatten(*args[1:], **kwargs)
        if func is F.batch_norm and isinstance(args[0], QValue):
            return _batch_norm(*args, **kwargs)
        unwrap = lambda v: v.real if isinstance(v, QValue) else v  # noqa: E731
        return func(*[unwrap(a) for a in args], **{k: unwrap(v) for k, v in kwargs.items()})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.real, name)

    def __repr__(self) -> str:
        return f"QValue({self.kind}, shape={tuple(self.ints.shape)}, ints {self.lo}..={self.hi})"

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, index: Any) -> torch.Tensor:
        return self.real[index]

    @property
    def chw(self) -> bool:
        """Whether each sample is ``[C, H, W]`` (else a vector)."""
        return self.ints.dim() == 4

    @property
    def shape(self) -> torch.Size:
        return self.ints.shape

    def size(self, dim: int | None = None) -> Any:
        return self.ints.size() if dim is None else self.ints.size(dim)

    def dequantize(self) -> torch.Tensor:
        """The real values (float, with their gradients)."""
        return self.real

    # -- reshaping ----------------------------------------------------------------------------------

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "QValue":
        """``[N, C, H, W]`` → ``[N, C·H·W]`` (the only flattening the program has: C, H, W order)."""
        nd = self.ints.dim()
        s, e = start_dim % nd, end_dim % nd
        if s == e:
            return self
        if (s, e) != (1, nd - 1):
            raise ValueError(f"fhec.torch: flatten(start_dim={start_dim}, end_dim={end_dim}) of a {nd}-d value: only "
                             "flatten(1) (all but the samples) is supported")
        return self._flat()

    def view(self, *shape: Any) -> "QValue":
        return self._reshape_flat(shape)

    def reshape(self, *shape: Any) -> "QValue":
        return self._reshape_flat(shape)

    def _reshape_flat(self, shape: tuple) -> "QValue":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
            shape = tuple(shape[0])
        n = self.ints.shape[0]
        per = int(np.prod(self.ints.shape[1:]))
        if len(shape) == 2 and shape[0] in (n, -1) and shape[1] in (per, -1) and (shape[0], shape[1]) != (-1, -1):
            return self._flat()
        raise ValueError(f"fhec.torch: reshape to {shape}: only flattening each sample ((N, -1)) is supported")

    def _flat(self) -> "QValue":
        if self.ints.dim() == 2:
            return self
        sample = self.ints.shape[1:]
        flat = lambda t: t.expand(sample).reshape(-1) if t.dim() else t  # noqa: E731
        return QValue(self.ints.flatten(1), self.real.flatten(1), flat(self.scale), flat(self.offset), self.lo, self.hi,
                      self.kind, self.rounding, self.net, flat_window=self.kind == "acc" and self.chw)


_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


def _batch_norm(*args: Any, **kwargs: Any) -> QValue:
    """``nn.BatchNorm1d`` / ``nn.BatchNorm2d`` on an accumulator: a per-channel affine map of its reals, so
    the integers stay and the map folds into the meaning (``scale``, ``offset``) — into the lookup
    that follows, or the client's dequantisation. Batch statistics while training, running ones in
    eval mode, as torch's own."""
    a = dict(zip(_BN_ARGS, args), **kwargs)
    x: QValue = a["input"]
    if x.kind != "acc":
        raise ValueError("fhec.torch: BatchNorm reads an accumulator (after QuantLinear, QuantConv2d or "
                         "QuantAvgPool2d), where it folds into the lookup that follows")
    if a.get("running_mean") is None or a.get("running_var") is None:
        raise ValueError("fhec.torch: BatchNorm without running statistics (track_running_stats=False) normalises "
                         "each batch by itself, which no fixed program can reproduce: keep the running statistics")
    training = bool(a.get("training", False))
    eps = float(a.get("eps", 1e-5))
    real = F.batch_norm(x.real, a["running_mean"], a["running_var"], a.get("weight"), a.get("bias"), training,
                        float(a.get("momentum", 0.1) or 0.0), eps)
    dims = [d for d in range(x.real.dim()) if d != 1]
    with torch.no_grad():
        if training:
            z = x.real.detach().double()
            mean, var = z.mean(dim=dims), z.var(dim=dims, unbiased=False)
        else:
            mean, var = a["running_mean"].detach().double(), a["running_var"].detach().double()
    out = _fold_bn(x, real, mean, var, a.get("weight"), a.get("bias"), eps)
    if x.redo is not None:
        # QuantAdd recomputes the product: the same map (these statistics) on the new one
        def redo(s_w: np.ndarray, m: np.ndarray) -> QValue:
            y = x.redo(s_w, m)
            shape = (1, -1, 1, 1) if y.real.dim() == 4 else (1, -1)
            w, b = a.get("weight"), a.get("bias")
            r = (y.real - mean.to(y.real).view(*shape)) / torch.sqrt(var.to(y.real).view(*shape) + eps)
            r = r * (w.view(*shape) if w is not None else 1.0) + (b.view(*shape) if b is not None else 0.0)
            return _fold_bn(y, r, mean, var, w, b, eps)

        out.redo = redo
        out.source = x.source
        out.gain = x.gain * _group_param(out.scale, out.scale.numel()) / _group_param(x.scale, out.scale.numel())
    return out


def _fold_bn(x: QValue, real: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, w: Any, b: Any, eps: float) -> QValue:
    """``x`` after a BatchNorm with these statistics: the same integers, the map folded into the meaning."""
    with torch.no_grad():
        c = mean.numel()
        w = torch.ones(c, dtype=torch.float64) if w is None else w.detach().double().cpu()
        b = torch.zeros(c, dtype=torch.float64) if b is None else b.detach().double().cpu()
        factor = w / torch.sqrt(var.detach().double().cpu() + eps)
        shape = (-1, 1, 1) if x.ints.dim() == 4 else (-1,)
        f = factor.view(*shape)
        scale = x.scale.double() * f
        offset = (x.offset.double() - mean.detach().double().cpu().view(*shape)) * f + b.view(*shape)
    return QValue(x.ints, real, scale, offset, x.lo, x.hi, "acc", x.rounding, x.net, x.flat_window)


def _arith(name: str) -> Callable:
    def op(self: QValue, *args: Any) -> Any:
        return getattr(self.real, name)(*[a.real if isinstance(a, QValue) else a for a in args])

    op.__name__ = name
    return op


# arithmetic on a QValue is arithmetic on its reals (a loss written by hand: ((out - y) ** 2).mean());
# the result is a plain tensor, which no fhec.torch layer reads
for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__neg__", "__pow__", "__matmul__", "__lt__", "__le__", "__gt__", "__ge__"):
    setattr(QValue, _name, _arith(_name))


#: the largest kernel side, stride or padding the program takes (``fhec::onnx::integer::MAX_WINDOW``)
MAX_WINDOW = 64


def _check_window(who: str, kernel: tuple, stride: tuple, padding: tuple) -> None:
    ok = all(isinstance(v, int) and 1 <= v <= MAX_WINDOW for v in (*kernel, *stride))
    ok = ok and all(isinstance(p, int) and 0 <= p < k for p, k in zip(padding, kernel))
    if not ok:
        raise ValueError(f"fhec.torch.{who}: kernel {tuple(kernel)}, stride {tuple(stride)}, padding {tuple(padding)}: "
                         f"kernel sides and strides 1 to {MAX_WINDOW}, padding below the kernel, no dilation")


def _fits(who: str, x: QValue, kernel: tuple) -> None:
    h, w = x.ints.shape[2], x.ints.shape[3]
    if kernel[0] > h or kernel[1] > w:
        raise ValueError(f"fhec.torch.{who}: a {kernel[0]}×{kernel[1]} window on a {h}×{w} input")


def _need(x: Any, who: str) -> QValue:
    if not isinstance(x, QValue):
        raise TypeError(f"fhec.torch.{who} reads the output of another fhec.torch layer (start the network with "
                        f"QuantInput), found {type(x).__name__}")
    return x


def _group_param(t: torch.Tensor, groups: int) -> np.ndarray:
    """A per-group (neuron or channel) view of a scale or offset as float64 numpy."""
    v = t.detach().double().reshape(-1).cpu().numpy()
    if v.size == 1:
        return np.full(groups, float(v[0]))
    if v.size != groups:
        raise ValueError("fhec.torch: a per-element scale cannot feed a lookup per channel")
    return v


def _per_tensor(x: QValue, who: str) -> tuple[float, float]:
    if x.scale.dim() != 0 or x.offset.dim() != 0:
        raise ValueError(f"fhec.torch.{who} reads one grid per tensor: put a QuantActivation (or QuantIdentity) "
                         "before it, not another layer's accumulator")
    return float(x.scale), float(x.offset)


class QuantInput(nn.Module):
    """The client's quantiser: features to ``n_bits`` integers on a grid calibrated on the training data
    (running minimum and maximum while training; frozen in eval mode), or on ``input_range=(lo, hi)``.
    ``per_feature``: one grid per feature (tabular data) instead of one for the tensor (images). The
    network sees the integers as reals in ``[0, 1]``; values outside the range are clipped."""

    def __init__(self, n_bits: int = 8, input_range: tuple[float, float] | None = None, per_feature: bool = False):
        super().__init__()
        if not (isinstance(n_bits, int) and 1 <= n_bits <= 8):
            raise ValueError(f"n_bits={n_bits!r}: expected an int in 1..8")
        self.n_bits, self.per_feature = n_bits, per_feature
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.ones(()))
        self.register_buffer("seen", torch.tensor(input_range is not None))
        self.fixed = input_range is not None
        if input_range is not None:
            lo, hi = float(input_range[0]), float(input_range[1])
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError(f"input_range={input_range!r}: expected (lo, hi) with lo < hi")
            self.lo.fill_(lo)
            self.hi.fill_(hi)

    def forward(self, x: torch.Tensor) -> QValue:
        if isinstance(x, QValue):
            raise TypeError("fhec.torch.QuantInput reads the network's float input, not a QValue")
        x = x.detach()
        if self.training and not self.fixed:
            lo = x.amin(dim=0) if self.per_feature else x.min()
            hi = x.amax(dim=0) if self.per_feature else x.max()
            if not bool(self.seen):
                self.lo, self.hi = lo.clone().to(self.lo), hi.clone().to(self.hi)
                self.seen.fill_(True)
            else:
                self.lo = torch.minimum(self.lo, lo.to(self.lo))
                self.hi = torch.maximum(self.hi, hi.to(self.hi))
        levels = (1 << self.n_bits) - 1
        half = 1 << (self.n_bits - 1)
        lo, hi = self.lo.double(), self.hi.double()
        step = torch.where(hi > lo, (hi - lo) / levels, torch.ones_like(hi))
        q = torch.clamp(torch.round((x.double() - lo) / step), 0, levels)
        ints = q - half
        real = (q / levels).to(x.dtype if x.is_floating_point() else torch.float32)
        scale = torch.tensor(1.0 / levels, dtype=torch.float64)
        offset = torch.tensor(half / levels, dtype=torch.float64)
        net = {"input": {"n_bits": self.n_bits, "lo": lo.detach(), "scale": step.detach(), "offset": half},
               "layers": []}
        return QValue(ints, real, scale, offset, -half, half - 1, "grid", None, net)


class _Weighted(nn.Module):
    """What QuantLinear and QuantConv2d share: integer weights within the accumulator budget."""

    n_w_bits: int
    n_accum_bits: int | None
    rounding_threshold_bits: int

    def _check(self, n_w_bits: int, n_accum_bits: int | None, rounding_threshold_bits: int) -> None:
        if not (isinstance(n_w_bits, int) and 2 <= n_w_bits <= 8):
            raise ValueError(f"n_w_bits={n_w_bits!r}: expected an int in 2..8")
        if n_accum_bits is not None and not (isinstance(n_accum_bits, int) and 2 <= n_accum_bits <= 24):
            raise ValueError(f"n_accum_bits={n_accum_bits!r}: expected an int in 2..24 or None")
        if not (isinstance(rounding_threshold_bits, int) and 2 <= rounding_threshold_bits <= 8):
            raise ValueError(f"rounding_threshold_bits={rounding_threshold_bits!r}: expected an int in 2..8")
        self.n_w_bits, self.n_accum_bits, self.rounding_threshold_bits = n_w_bits, n_accum_bits, rounding_threshold_bits

    def quantized_weight(self, max_abs_input: int) -> tuple[np.ndarray, np.ndarray]:
        """The integer weights (one row per neuron or filter) and their per-row scales, for inputs of
        magnitude at most ``max_abs_input``."""
        W = self.weight.detach().double().reshape(self.weight.shape[0], -1).cpu().numpy()
        B = _qat.budget(self.n_accum_bits, self.rounding_threshold_bits, max_abs_input)
        if B is not None and ((1 << (self.n_accum_bits - 1)) - 1) < max_abs_input:
            raise ValueError(f"n_accum_bits={self.n_accum_bits} cannot hold one weight times inputs of magnitude up to "
                             f"{max_abs_input}: give it at least {max_abs_input.bit_length() + 1} bits")
        return _qat.quantize_weights(W, self.n_w_bits, B)

    def _apply(self, x: QValue, who: str, exact: Callable, linear: Callable, padded: bool, layer: dict,
               forced: tuple[np.ndarray, np.ndarray] | None = None) -> QValue:
        """The layer on ``x``. ``forced``: per-row scales ``s_w`` and multipliers ``m`` (QuantAdd): the
        integer weights are ``m·rint(W / s_w)`` and the accumulator's unit ``s_w·s_in / m``."""
        s_in, o_in = _per_tensor(x, who)
        if forced is None:
            q, s_w = self.quantized_weight(max(abs(x.lo), abs(x.hi)))
            mult = np.ones(q.shape[0])
        else:
            s_w, mult = forced
            q = np.rint(self.weight.detach().double().reshape(self.weight.shape[0], -1).cpu().numpy() / s_w[:, None])
        w_int = q * mult[:, None]
        amin, amax = _qat.acc_range(w_int, x.lo, x.hi, padded)
        dev, dt = self.weight.device, self.weight.dtype
        q_t = torch.from_numpy(q).reshape(self.weight.shape)
        w_t = torch.from_numpy(w_int).reshape(self.weight.shape)
        acc = torch.round(exact(x.ints, w_t.double().to(x.ints.device)))
        # the float path: weights through a straight-through estimator, inputs as the previous layer's reals
        sw = torch.from_numpy(s_w).to(dev, dt)
        wq = self.weight + (q_t.to(dev, dt) * sw.view(-1, *[1] * (self.weight.dim() - 1)) - self.weight).detach()
        b = self.bias if self.bias is not None else torch.zeros(self.weight.shape[0], device=dev, dtype=dt)
        beta = b + o_in * wq.reshape(wq.shape[0], -1).sum(dim=1)
        z_lin = linear(x.real - o_in, wq)  # = the input integers times s_in: padding reads o_in
        alpha = torch.from_numpy(s_w * s_in / mult)
        shape = (-1, 1, 1) if who == "QuantConv2d" else (-1,)
        alpha_v, beta_v = alpha.view(*shape), beta.detach().double().cpu().view(*shape)
        z_lin = z_lin + beta.view(*shape)
        z_exact = (acc.cpu() * alpha_v + beta_v).to(z_lin)
        real = z_lin + (z_exact - z_lin).detach()
        net = {"input": x.net["input"], "layers": [*x.net["layers"], {**layer, "weights": w_int.astype(np.int64)}]}
        out = QValue(acc, real, alpha_v, beta_v, amin, amax, "acc", self.rounding_threshold_bits, net)
        out.redo = lambda s, m: self._apply(x, who, exact, linear, padded, layer, (s, m))
        out.gain = np.ones(q.shape[0])
        out.source = (self, x, padded)
        return out


class QuantLinear(_Weighted):
    """A dense layer with integer weights of ``n_w_bits`` (a symmetric scale per neuron) and, with
    ``n_accum_bits``, every accumulator's worst case over every accepted input within that many bits
    (a budget on each neuron's ``Σ|q_w|``, met by coarsening the neuron's scale). The accumulator keeps
    ``rounding_threshold_bits`` before the lookup of the activation that follows (none: the output)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, n_w_bits: int = 4,
                 n_accum_bits: int | None = None, rounding_threshold_bits: int = DEFAULT_ROUNDING_BITS):
        super().__init__()
        self._check(n_w_bits, n_accum_bits, rounding_threshold_bits)
        ref = nn.Linear(in_features, out_features, bias=bias)
        self.in_features, self.out_features = in_features, out_features
        self.weight = ref.weight
        self.bias = ref.bias

    def forward(self, x: Any) -> QValue:
        x = _need(x, "QuantLinear")
        if x.ints.dim() != 2:
            raise ValueError("fhec.torch.QuantLinear reads [N, features]: flatten first (nn.Flatten() or x.flatten(1))")
        if x.ints.shape[1] != self.in_features:
            raise ValueError(f"fhec.torch.QuantLinear expects {self.in_features} features, found {x.ints.shape[1]}")
        return self._apply(x, "QuantLinear", lambda h, q: F.linear(h, q), lambda h, w: F.linear(h, w), False,
                           {"kind": "dense"})


class QuantConv2d(_Weighted):
    """A 2-D convolution with integer weights of ``n_w_bits`` (a symmetric scale per filter) and, with
    ``n_accum_bits``, each filter's worst case within that many bits. Padding pads the integers with
    zeros (the middle of the input's grid). No dilation or groups."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0, bias: bool = True, n_w_bits: int = 4, n_accum_bits: int | None = None,
                 rounding_threshold_bits: int = DEFAULT_ROUNDING_BITS):
        super().__init__()
        self._check(n_w_bits, n_accum_bits, rounding_threshold_bits)
        ref = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = ref.kernel_size, ref.stride, ref.padding
        if isinstance(self.padding, str):
            raise ValueError("fhec.torch.QuantConv2d: give padding as numbers")
        _check_window("QuantConv2d", self.kernel_size, self.stride, self.padding)
        self.weight = ref.weight
        self.bias = ref.bias

    def forward(self, x: Any) -> QValue:
        x = _need(x, "QuantConv2d")
        if x.ints.dim() != 4 or x.ints.shape[1] != self.in_channels:
            raise ValueError(f"fhec.torch.QuantConv2d expects [N, {self.in_channels}, H, W], found {list(x.ints.shape)}")
        conv = lambda h, w: F.conv2d(h, w, stride=self.stride, padding=self.padding)  # noqa: E731
        layer = {"kind": "conv2d", "kernel": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}
        return self._apply(x, "QuantConv2d", conv, conv, any(self.padding), layer)


class QuantAvgPool2d(nn.Module):
    """Average pooling (no padding): the program sums each window; the divisor goes into the next
    lookup or the client's dequantisation. The sum keeps ``rounding_threshold_bits`` before a lookup."""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 rounding_threshold_bits: int = DEFAULT_ROUNDING_BITS):
        super().__init__()
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride) if stride is not None else self.kernel_size
        _check_window("QuantAvgPool2d", self.kernel_size, self.stride, (0, 0))
        self.rounding_threshold_bits = rounding_threshold_bits

    def forward(self, x: Any) -> QValue:
        x = _need(x, "QuantAvgPool2d")
        if x.ints.dim() != 4:
            raise ValueError(f"fhec.torch.QuantAvgPool2d expects [N, C, H, W], found {list(x.ints.shape)}")
        if x.flat_window:
            raise ValueError("fhec.torch.QuantAvgPool2d: pool before flattening")
        _fits("QuantAvgPool2d", x, self.kernel_size)
        taps = self.kernel_size[0] * self.kernel_size[1]
        pool = lambda t: F.avg_pool2d(t, self.kernel_size, self.stride)  # noqa: E731
        ints = torch.round(pool(x.ints) * taps)
        real = pool(x.real)
        scale, offset = x.scale / taps, x.offset
        layer = {"kind": "sum_pool2d", "kernel": list(self.kernel_size), "stride": list(self.stride)}
        net = {"input": x.net["input"], "layers": [*x.net["layers"], layer]}
        return QValue(ints, real, scale, offset, taps * x.lo, taps * x.hi, "acc", self.rounding_threshold_bits, net)


class QuantMaxPool2d(nn.Module):
    """Max pooling (no padding) of an input or an activation: the program compares with lookups
    (``fhe.maxpool2d``: one per comparison, on values one bit wider than the grid); the result keeps
    its input's grid, so a weighted layer may read it directly."""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None):
        super().__init__()
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride) if stride is not None else self.kernel_size
        _check_window("QuantMaxPool2d", self.kernel_size, self.stride, (0, 0))

    def forward(self, x: Any) -> QValue:
        x = _need(x, "QuantMaxPool2d")
        if x.ints.dim() != 4:
            raise ValueError(f"fhec.torch.QuantMaxPool2d expects [N, C, H, W], found {list(x.ints.shape)}")
        if x.kind != "grid":
            raise ValueError("fhec.torch.QuantMaxPool2d reads an input or an activation (comparing accumulators "
                             "would need lookups as wide as they are): put the activation first")
        _per_tensor(x, "QuantMaxPool2d")
        _fits("QuantMaxPool2d", x, self.kernel_size)
        pool = lambda t: F.max_pool2d(t, self.kernel_size, self.stride)  # noqa: E731
        layer = {"kind": "max_pool2d", "kernel": list(self.kernel_size), "stride": list(self.stride)}
        net = {"input": x.net["input"], "layers": [*x.net["layers"], layer]}
        return QValue(pool(x.ints), pool(x.real), x.scale, x.offset, x.lo, x.hi, "grid", None, net)


class QuantAdd(nn.Module):
    """A skip connection: ``QuantAdd()(acc, skip)`` adds ``skip`` — an input or an activation (one
    grid per tensor) computed earlier in the same network, of the accumulator's shape — to the
    accumulator ``acc`` of a ``QuantLinear`` or ``QuantConv2d`` (BatchNorm between them allowed), before
    the activation that reads their sum (the ResNet block's ``relu(bn(conv(h)) + x)``).

    The program adds ``c·skip`` to the accumulator, ``c`` a small integer per channel (or neuron): the
    layer's weights are requantised on the scale that makes ``c`` exact (``c·unit`` = the skip's step,
    per channel), never finer than its own, so the sum is exact, in torch as in the program, and the
    activation after it reads one rounded accumulator. With ``n_accum_bits`` the sum stays within it
    (the weights coarsen further, or ``ValueError``)."""

    def forward(self, acc: Any, skip: Any) -> QValue:
        a, x = _need(acc, "QuantAdd"), _need(skip, "QuantAdd")
        if a.kind != "acc" or a.redo is None or "lookup" in a.net["layers"][-1]:
            raise ValueError("fhec.torch.QuantAdd adds to the accumulator of a QuantLinear or QuantConv2d (BatchNorm "
                             "after it allowed), before its activation; its first operand is not one")
        if x.kind != "grid":
            raise ValueError("fhec.torch.QuantAdd: the skipped value is an input or an activation (QuantInput, "
                             "QuantActivation, QuantMaxPool2d), not an accumulator")
        if tuple(a.ints.shape) != tuple(x.ints.shape):
            raise ValueError(f"fhec.torch.QuantAdd: the accumulator is {list(a.ints.shape)[1:]}, the skipped value "
                             f"{list(x.ints.shape)[1:]}: they must have one shape")
        layers, skipped = a.net["layers"], x.net["layers"]
        if (a.net["input"] is not x.net["input"] or len(skipped) >= len(layers)
                or any(p is not q for p, q in zip(skipped, layers))):
            raise ValueError("fhec.torch.QuantAdd: the skipped value must come earlier in the same network as the "
                             "accumulator (one QuantInput, one path of layers)")
        s_x, o_x = _per_tensor(x, "QuantAdd")
        module, h, padded = a.source
        groups = a.ints.shape[1]
        gain = a.gain
        s_in = float(h.scale)
        W = module.weight.detach().double().reshape(module.weight.shape[0], -1).cpu().numpy()
        M = (1 << (module.n_w_bits - 1)) - 1
        amax_w = np.abs(W).max(axis=1)
        s_min = np.where(amax_w > 0, amax_w / M, 1.0)  # the finest scale the weight bits allow
        top = _qat.budget(module.n_accum_bits, module.rounding_threshold_bits, 1)
        in_mag = max(abs(h.lo), abs(h.hi), 1)
        skip_mag = max(abs(x.lo), abs(x.hi))
        s_w, mult, coef = np.empty(groups), np.empty(groups), np.empty(groups, dtype=np.int64)
        for g in range(groups):
            # the unit u of the sum, per group: c·u = s_x. Weights at s (≥ s_min) with multiplier m give
            # u = s·s_in·gain / m; c ≥ 1 when the skip's step is the coarser, else m ≥ 1
            ratio = s_x / (s_min[g] * s_in * abs(gain[g])) if gain[g] != 0 else math.inf
            if not math.isfinite(ratio):
                raise ValueError(f"fhec.torch.QuantAdd: channel {g} of the accumulator has scale 0 (a BatchNorm weight "
                                 "of 0): its branch adds nothing the skip could be measured against; initialise the "
                                 "weight to a small nonzero value")
            found = None
            for c, m in _add_candidates(ratio):
                if m * M > MAX_WEIGHT:
                    break
                s = m * s_x / (c * s_in * abs(gain[g]))
                q = np.rint(W[g] / s)
                if top is None or m * np.abs(q).sum() * in_mag + c * skip_mag <= top:
                    found = (s, m, c)
                    break
            if found is None and top is None:
                raise ValueError(f"fhec.torch.QuantAdd: the skipped value's step is {1 / ratio:.3g} times finer than "
                                 f"channel {g}'s accumulator unit: its integer weights would exceed {MAX_WEIGHT} "
                                 "(give the skipped activation fewer bits or the layer more n_w_bits)")
            if found is None:
                raise ValueError(f"fhec.torch.QuantAdd: n_accum_bits={module.n_accum_bits} cannot hold channel {g}'s "
                                 f"accumulator plus the skipped value (magnitude {skip_mag}): give it more bits")
            s_w[g], mult[g], coef[g] = found
        if (gain < 0).any():
            coef = np.where(gain < 0, -coef, coef)
        b = a.redo(s_w, mult)
        shape = (1, groups) + (1,) * (a.ints.dim() - 2)
        c_t = torch.from_numpy(coef.astype(np.float64)).view(*shape).to(b.ints.device)
        ints = b.ints + c_t * x.ints.to(b.ints)
        # ranges as the program sizes them: each row's product plus its coefficient times the skip's range
        w_rows = np.asarray(b.net["layers"][-1]["weights"], dtype=np.float64)
        lo_in, hi_in = (min(h.lo, 0), max(h.hi, 0)) if padded else (h.lo, h.hi)
        pos, neg = np.clip(w_rows, 0, None), np.clip(w_rows, None, 0)
        t_lo = np.minimum(coef * x.lo, coef * x.hi)
        t_hi = np.maximum(coef * x.lo, coef * x.hi)
        lo = int(((pos * lo_in + neg * hi_in).sum(axis=1) + t_lo).min())
        hi = int(((pos * hi_in + neg * lo_in).sum(axis=1) + t_hi).max())
        layer = {**b.net["layers"][-1], "residual": {"from": len(skipped), "coefficients": [int(v) for v in coef]}}
        net = {"input": b.net["input"], "layers": [*b.net["layers"][:-1], layer]}
        # both reals are exact (value = scale·ints + offset): their sum is the sum's meaning
        return QValue(ints, b.real + x.real, b.scale, b.offset + o_x, lo, hi, "acc", b.rounding, net)


#: the largest integer weight the program takes (``fhec::onnx::integer::MAX_MLP_WEIGHT``)
MAX_WEIGHT = 1 << 16


def _add_candidates(ratio: float) -> Any:
    """``(c, m)`` pairs for QuantAdd, finest first. The skip's step coarser than the layer's finest unit
    (``ratio ≥ 1``): the skip's coefficient ``c`` falling from ``floor(ratio)`` to 1, each step coarser
    weights (a smaller sum). Then, or when the skip's step is the finer one, ``c = 1`` and the weights'
    multiplier ``m`` rising from the least that keeps the weights' scale at or above their own: the
    unit stays the skip's step, and the weights ``m·rint(W / (m·s₀))`` lose their small entries (the
    sum shrinks by rounding alone; the caller stops at the program's largest weight)."""
    m = 1
    if ratio >= 1:
        c = int(min(math.floor(ratio), MAX_WEIGHT))
        while c > 1:
            yield c, 1
            c = min(c - 1, int(c / 1.05))
    else:
        m = int(math.ceil(1 / ratio - 1e-12))
    while True:
        yield 1, m
        m = max(m + 1, int(m * 1.05))


_RELU_LIKE = {"relu"}


def _torch_activation(f: Any) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    if f is None or f == "identity":
        return (lambda z: z), "identity"
    if isinstance(f, str):
        fn = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "gelu": F.gelu, "silu": F.silu,
              "elu": F.elu, "leaky_relu": F.leaky_relu}.get(f)
        if fn is None:
            raise ValueError(f"activation={f!r}: a torch function or module, or one of relu, sigmoid, tanh, gelu, silu, "
                             "elu, leaky_relu")
        return fn, f
    if isinstance(f, type) and issubclass(f, nn.Module):
        f = f()
    if callable(f):
        relu = f in (torch.relu, F.relu) or isinstance(f, nn.ReLU)
        return f, "relu" if relu else getattr(f, "__name__", type(f).__name__)
    raise ValueError(f"activation={f!r}: expected a torch function or module")


class QuantActivation(nn.Module):
    """Rounds the accumulator before it exactly (the fewest low bits that leave the layer's
    ``rounding_threshold_bits``), applies ``activation`` (any elementwise torch function or module;
    None: the identity) and quantises the result to ``n_bits`` on a grid calibrated while training
    (running 0.1 / 99.9 percentiles; from 0 for ReLU). In the program this is one table lookup per
    neuron or channel; here the same table is read, so both agree exactly."""

    def __init__(self, activation: Any = "relu", n_bits: int = 4, momentum: float = 0.1):
        super().__init__()
        if not (isinstance(n_bits, int) and 1 <= n_bits <= 8):
            raise ValueError(f"n_bits={n_bits!r}: expected an int in 1..8")
        self.fn, self.name = _torch_activation(activation)
        self.n_bits, self.momentum = n_bits, momentum
        self.register_buffer("lo", torch.zeros((), dtype=torch.float64))
        self.register_buffer("hi", torch.ones((), dtype=torch.float64))
        self.register_buffer("seen", torch.tensor(False))

    def _f64(self, z: np.ndarray) -> np.ndarray:
        """``f`` on the tables' reals: in float64, or in the dtype of the module's own parameters."""
        params = list(self.fn.parameters()) if isinstance(self.fn, nn.Module) else []
        t = torch.from_numpy(np.ascontiguousarray(z))
        if params:
            t = t.to(params[0])
        with torch.no_grad():
            return self.fn(t).double().cpu().numpy()

    def forward(self, x: Any) -> QValue:
        x = _need(x, "QuantActivation")
        if x.kind != "acc" or x.rounding is None:
            raise ValueError("fhec.torch.QuantActivation reads an accumulator (after QuantLinear, QuantConv2d or "
                             "QuantAvgPool2d), not another activation or the input")
        if x.flat_window:
            raise ValueError("fhec.torch.QuantActivation: apply the activation before flattening")
        groups = x.ints.shape[1]
        lsbs, klo, khi = _qat.rounding(x.lo, x.hi, x.rounding)
        alpha, beta = _group_param(x.scale, groups), _group_param(x.offset, groups)
        # the float path, for the gradients and the running range
        a = self.fn(x.real)
        if self.training:
            with torch.no_grad():
                flat = a.detach().double().reshape(-1)
                if flat.numel() > 1 << 20:
                    flat = flat[torch.randint(flat.numel(), (1 << 20,), device=flat.device)]
                lo = 0.0 if self.name in _RELU_LIKE else float(torch.quantile(flat, 0.001))
                hi = float(torch.quantile(flat, 0.999))
                if not bool(self.seen):
                    self.lo.fill_(lo)
                    self.hi.fill_(hi)
                    self.seen.fill_(True)
                else:
                    self.lo += self.momentum * (lo - self.lo)
                    self.hi += self.momentum * (hi - self.hi)
        levels = (1 << self.n_bits) - 1
        lo_a = float(self.lo)
        step = max(float(self.hi) - lo_a, 1e-12) / levels
        tables = _qat.lookup_tables(alpha, beta, lsbs, klo, khi, self._f64, lo_a, step, self.n_bits)
        # the exact path: the program's rounding and table
        k = _qat.round_acc(x.ints.cpu().numpy(), lsbs).astype(np.int64) - klo
        g = np.arange(groups).reshape((1, groups) + (1,) * (x.ints.dim() - 2))
        ints = torch.from_numpy(tables[g, k]).to(x.ints.device)
        half = 1 << (self.n_bits - 1)
        real_q = (lo_a + step * (ints.double() + half)).to(a)
        mask = (a >= lo_a - step / 2) & (a <= float(self.hi) + step / 2)
        a_ste = torch.where(mask, a, a.detach())
        real = a_ste + (real_q - a_ste).detach()
        layer = x.net["layers"][-1]
        if "lookup" in layer:
            raise ValueError("fhec.torch.QuantActivation: two lookups on one accumulator")
        lookup = {"lsbs": int(lsbs), "table_lo": int(klo), "tables": tables.astype(np.int64)}
        net = {"input": x.net["input"], "layers": [*x.net["layers"][:-1], {**layer, "lookup": lookup}]}
        scale = torch.tensor(step, dtype=torch.float64)
        offset = torch.tensor(lo_a + step * half, dtype=torch.float64)
        return QValue(ints.double(), real, scale, offset, -half, half - 1, "grid", None, net)


class QuantReLU(QuantActivation):
    """``QuantActivation("relu", n_bits)``."""

    def __init__(self, n_bits: int = 4, momentum: float = 0.1):
        super().__init__("relu", n_bits, momentum)


class QuantIdentity(QuantActivation):
    """Requantises an accumulator to ``n_bits`` without a nonlinearity (one lookup)."""

    def __init__(self, n_bits: int = 4, momentum: float = 0.1):
        super().__init__(None, n_bits, momentum)


def _lists(v: Any) -> Any:
    return v.tolist() if isinstance(v, np.ndarray) else v


def integer_network(out: QValue, sample_shape: tuple[int, ...]) -> dict:
    """The integer network (``fhec::onnx::IntegerNetwork``'s JSON) that produced ``out``."""
    inp = out.net["input"]
    features = int(np.prod(sample_shape))
    lo = np.broadcast_to(inp["lo"].cpu().numpy(), sample_shape).reshape(-1)
    scale = np.broadcast_to(inp["scale"].cpu().numpy(), sample_shape).reshape(-1)
    layers = []
    for layer in out.net["layers"]:
        d = {k: _lists(v) for k, v in layer.items() if k != "lookup"}
        if "lookup" in layer:
            t = layer["lookup"]
            d["lookup"] = {"lsbs": t["lsbs"], "table_lo": t["table_lo"], "tables": t["tables"].tolist()}
        layers.append(d)
    if not layers:
        raise ValueError("fhec.torch: the network has no layer after QuantInput")
    sample = out.ints.shape[1:]
    o_scale = out.scale.double().expand(sample).reshape(-1).cpu().numpy()
    o_offset = out.offset.double().expand(sample).reshape(-1).cpu().numpy()
    spec: dict = {
        "input": {"n_bits": int(inp["n_bits"]), "lo": lo.tolist(), "scale": scale.tolist()},
        "input_offset": int(inp["offset"]),
        "layers": layers,
        "output": {"scale": o_scale.tolist(), "offset": o_offset.tolist()},
        "post": "identity",
    }
    if len(sample_shape) == 3:
        spec["input_shape"] = [int(v) for v in sample_shape]
    elif len(sample_shape) != 1:
        raise ValueError(f"fhec.torch: inputs of shape {tuple(sample_shape)}: a vector or [C, H, W]")
    assert features == len(lo)
    return spec
