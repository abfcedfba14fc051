"""Built-in fully connected networks trained with their FHE semantics in the loop (docs/nn.md).

``NeuralNetClassifier`` / ``NeuralNetRegressor`` train in numpy — no torch — by quantisation-aware
training: every forward pass of the training is the encrypted program's arithmetic (integer weights
of ``n_w_bits``, inputs and activations of ``n_a_bits``, each accumulator rounded exactly as the
program rounds it, activations quantised as its lookup tables quantise them), with straight-through
gradients. ``n_accum_bits`` bounds every accumulator's worst case over every accepted input (a budget
on each neuron's integer weights, kept by magnitude pruning during training), so that few bits need
rounding; one int for every layer, or one per layer (the output layer's accumulators are decrypted,
not rounded, so a wider bound there costs no lookup). The trained network is handed to Rust as integers (``fhec::onnx::IntegerNetwork``): nothing
is re-quantised, so ``predict(X)`` (the integer network in numpy), the clear interpreter, the
simulation and the encrypted run agree exactly.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Sequence

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import Circuit, _qat
from .._circuit import _key_budget
from .._fhec import mlp_network
from . import _linear
from ._base import Decrypted, FheModel, check_mode
from ._quant import warn_clipped

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor", "ACTIVATIONS"]


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # scipy comes with scikit-learn

    return erf(x)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


#: activation name → (f, f'); f is also what the lookup tables apply
ACTIVATIONS: dict[str, tuple[Any, Any]] = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(np.float64)),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z), lambda z: np.where(z > 0, 1.0, 0.01)),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))), lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))),
    "silu": (lambda z: z * _sigmoid(z), lambda z: _sigmoid(z) * (1.0 + z * (1.0 - _sigmoid(z)))),
    "gelu": (
        lambda z: 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0))),
        lambda z: 0.5 * (1.0 + _erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi),
    ),
}

#: torch module names (``nn.ReLU``) accepted for ``activation_function``, as the incumbent takes them
_TORCH_NAMES = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "ELU": "elu",
                "SiLU": "silu", "GELU": "gelu"}


def _activation(a: Any) -> str:
    name = a if isinstance(a, str) else getattr(a, "__name__", None)
    if isinstance(name, str):
        key = _TORCH_NAMES.get(name, name.lower())
        if key in ACTIVATIONS:
            return key
    raise ValueError(f"activation_function={a!r}: use one of {', '.join(ACTIVATIONS)} (or the torch.nn class)")


class _Adam:
    def __init__(self, params: list[np.ndarray], lr: float, weight_decay: float):
        self.lr, self.wd, self.t = lr, weight_decay, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            if self.wd:
                g = g + self.wd * p
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + eps)


class _Net:
    """The network being trained: float weights, and the quantisation that maps them to the program."""

    def __init__(self, sizes: list[int], act: str, n_in: int, n_w: int, n_a: int, n_accum: list[int | None],
                 rounding: int, rng: np.random.Generator):
        self.sizes, self.act = sizes, act
        self.n_in, self.n_w, self.n_a, self.n_accum, self.rounding = n_in, n_w, n_a, n_accum, rounding
        self.W: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.W.append(rng.uniform(-bound, bound, size=(fan_out, fan_in)))
            self.b.append(rng.uniform(-bound, bound, size=fan_out))
        # activation quantisers' ranges (running estimates while training, then frozen)
        self.lo = [0.0] * (len(sizes) - 2)
        self.hi = [1.0] * (len(sizes) - 2)
        self.seen = [False] * (len(sizes) - 2)
        self._scales: dict[int, dict] = {}

    # -- the quantised view ---------------------------------------------------------------------

    def half(self, layer: int) -> int:
        """The centring of layer ``layer``'s input integers: inputs are ``q − half``, in ``[−half, half − 1]``."""
        return 1 << ((self.n_in if layer == 0 else self.n_a) - 1)

    def input_affine(self, layer: int) -> tuple[float, float]:
        """``(s, o)``: layer ``layer``'s real input is ``s·h + o`` for its centred integers ``h``."""
        h = self.half(layer)
        if layer == 0:
            levels = (1 << self.n_in) - 1
            return 1.0 / levels, h / levels  # features quantised to [0, 1] (min-max)
        s = self.step(layer - 1)
        return s, self.lo[layer - 1] + s * h

    def step(self, hidden: int) -> float:
        levels = (1 << self.n_a) - 1
        return max(self.hi[hidden] - self.lo[hidden], 1e-12) / levels

    def budget(self, layer: int) -> int | None:
        """The most ``Σ|q_w|`` of one neuron whose accumulator stays within the layer's ``n_accum_bits``
        (signed); the output layer's accumulators are not rounded."""
        rounding = None if layer == len(self.W) - 1 else self.rounding
        return _qat.budget(self.n_accum[layer], rounding, self.half(layer))

    def qweights(self, layer: int, step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Integer weights (per-neuron symmetric scale; where a neuron's integers exceed the budget, the
        finest coarser scale whose integers fit) and their scales. While training (``step`` given) a layer
        of more than 2^20 weights searches its budget scales every 16 steps, or when the weights have
        outgrown them (the search is most of a step's time there)."""
        W = self.W[layer]
        reuse = step is not None and bool(step % 16) and W.size > 1 << 20
        return _qat.quantize_weights(W, self.n_w, self.budget(layer), self._scales.setdefault(layer, {}), reuse)

    def lsbs(self, layer: int, q: np.ndarray) -> tuple[int, int, int]:
        """The bits the program's rounding drops from layer ``layer``'s accumulators (the fewest that
        leave ``rounding_threshold_bits``), and the rounded range ``(klo, khi)``."""
        h = self.half(layer)
        return _qat.rounding(*_qat.acc_range(q, -h, h - 1), self.rounding)

    # -- training -------------------------------------------------------------------------------

    def forward(self, h: np.ndarray, train: bool, momentum: float = 0.1, step: int | None = None) -> tuple[np.ndarray, list]:
        """The program's arithmetic on centred input integers ``h`` (floats holding integers); the
        output layer's real values, and what the backward pass needs."""
        f, _ = ACTIVATIONS[self.act]
        cache = []
        L = len(self.W)
        for l in range(L):
            q, s_w = self.qweights(l, step)
            s_in, o_in = self.input_affine(l)
            acc = h @ q.T
            Wq = q * s_w[:, None]
            beta = self.b[l] + o_in * Wq.sum(axis=1)
            alpha = s_w * s_in
            u = s_in * h + o_in
            if l == L - 1:
                cache.append((u, Wq, None, None))
                return alpha * acc + beta, cache
            lsbs, _, _ = self.lsbs(l, q)
            if lsbs:
                acc = _qat.round_acc(acc, lsbs) * (1 << lsbs)
            z = alpha * acc + beta
            a = f(z)
            i = l
            if train:
                lo = 0.0 if self.act == "relu" else float(np.percentile(a, 0.1))
                hi = float(np.percentile(a, 99.9))
                if not self.seen[i]:
                    self.lo[i], self.hi[i], self.seen[i] = lo, hi, True
                else:
                    self.lo[i] += momentum * (lo - self.lo[i])
                    self.hi[i] += momentum * (hi - self.hi[i])
            st = self.step(i)
            levels = (1 << self.n_a) - 1
            qa = np.clip(np.rint((a - self.lo[i]) / st), 0, levels)
            mask = (a >= self.lo[i] - st / 2) & (a <= self.hi[i] + st / 2)
            cache.append((u, Wq, z, mask))
            h = qa - self.half(l + 1)
        raise AssertionError("unreachable")

    def backward(self, dout: np.ndarray, cache: list) -> tuple[list, list]:
        _, df = ACTIVATIONS[self.act]
        L = len(self.W)
        gW: list[np.ndarray] = [None] * L  # type: ignore[list-item]
        gb: list[np.ndarray] = [None] * L  # type: ignore[list-item]
        dz = dout
        for l in range(L - 1, -1, -1):
            u, Wq, _, _ = cache[l]
            gW[l] = dz.T @ u
            gb[l] = dz.sum(axis=0)
            if l == 0:
                break
            du = dz @ Wq
            _, _, zp, mask = cache[l - 1]
            dz = du * mask * df(zp)
        return gW, gb

    # -- export ---------------------------------------------------------------------------------

    def export(self, input_lo: np.ndarray, input_scale: np.ndarray, out_scale: np.ndarray,
               out_offset: np.ndarray, post: str) -> dict:
        """The integer network (``fhec::onnx::IntegerNetwork``'s JSON)."""
        f, _ = ACTIVATIONS[self.act]
        layers = []
        L = len(self.W)
        for l in range(L):
            q, s_w = self.qweights(l)
            s_in, o_in = self.input_affine(l)
            layer: dict[str, Any] = {"weights": q.astype(np.int64).tolist()}
            alpha = s_w * s_in
            beta = self.b[l] + o_in * (q * s_w[:, None]).sum(axis=1)
            if l == L - 1:
                out_alpha, out_beta = alpha, beta
            else:
                lsbs, klo, khi = self.lsbs(l, q)
                t = _qat.lookup_tables(alpha, beta, lsbs, klo, khi, f, self.lo[l], self.step(l), self.n_a)
                layer["lookup"] = {"lsbs": int(lsbs), "table_lo": int(klo), "tables": t.astype(np.int64).tolist()}
            layers.append(layer)
        return {
            "input": {
                "n_bits": int(self.n_in),
                "lo": [float(v) for v in input_lo],
                "scale": [float(v) for v in input_scale],
            },
            "input_offset": int(self.half(0)),
            "layers": layers,
            "output": {
                "scale": [float(v) for v in out_alpha * out_scale],
                "offset": [float(v) for v in out_beta * out_scale + out_offset],
            },
            "post": post,
        }


def _arrays(net: dict) -> tuple[int, list]:
    """The integer network as numpy arrays, once (predict reads them on every call): the input offset and,
    per layer, the weights (float64: exact for these integers, and BLAS-fast) and the lookup, if any."""
    layers = []
    for layer in net["layers"]:
        W = np.asarray(layer["weights"], dtype=np.float64)
        t = layer.get("lookup")
        lookup = None if t is None else (int(t["lsbs"]), int(t["table_lo"]), np.asarray(t["tables"], dtype=np.int64))
        layers.append((W, lookup))
    return int(net["input_offset"]), layers


def _int_forward(net: dict | tuple, q: np.ndarray) -> np.ndarray:
    """The integer network on quantised rows: exactly the program's arithmetic (docs/nn.md). ``net``: the
    description (a dict) or its :func:`_arrays`."""
    offset, layers = _arrays(net) if isinstance(net, dict) else net
    h = q.astype(np.int64) - offset
    for W, lookup in layers:
        acc = (h.astype(np.float64) @ W.T).astype(np.int64)  # exact: |acc| < 2^53
        if lookup is None:
            h = acc
            continue
        lsbs, table_lo, tables = lookup
        k = (acc + (1 << (lsbs - 1))) >> lsbs if lsbs else acc
        h = tables[np.arange(tables.shape[0])[None, :], k - table_lo]
    return h


def _check_int(name: str, v: Any, lo: int, hi: int, none: bool = False) -> None:
    if v is None and none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise ValueError(f"{name}={v!r}: expected an int in {lo}..{hi}" + (" or None" if none else ""))


_PARAMS = (
    "n_layers", "n_hidden_neurons_multiplier", "activation_function", "n_w_bits", "n_a_bits", "n_accum_bits",
    "n_input_bits", "input_range", "rounding_threshold_bits", "max_epochs", "lr", "batch_size", "weight_decay", "ema_decay", "random_state",
    "verbose",
)


class _NeuralNet(FheModel):
    _param_names = _PARAMS
    _fitted_attr = "network_"

    def __init__(
        self,
        n_layers: int = 3,
        n_hidden_neurons_multiplier: float = 4,
        activation_function: Any = "relu",
        n_w_bits: int = 3,
        n_a_bits: int = 3,
        n_accum_bits: int | None | Sequence[int | None] = 8,
        n_input_bits: int | None = None,
        input_range: str = "feature",
        rounding_threshold_bits: int = 4,
        max_epochs: int = 10,
        lr: float = 0.001,
        batch_size: int = 128,
        weight_decay: float = 0.0,
        ema_decay: float = 0.9,
        random_state: Any = None,
        verbose: int = 0,
        **module_params: Any,
    ):
        self.n_layers = n_layers
        self.n_hidden_neurons_multiplier = n_hidden_neurons_multiplier
        self.activation_function = activation_function
        self.n_w_bits = n_w_bits
        self.n_a_bits = n_a_bits
        self.n_accum_bits = n_accum_bits
        self.n_input_bits = n_input_bits
        self.input_range = input_range
        self.rounding_threshold_bits = rounding_threshold_bits
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.ema_decay = ema_decay
        self.random_state = random_state
        self.verbose = verbose
        # the incumbent's prefixed forms (module__n_layers=…)
        for k, v in module_params.items():
            name = k[len("module__"):] if k.startswith("module__") else None
            if name not in _PARAMS:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {k!r}")
            setattr(self, name, v)

    def set_params(self, **params: Any) -> "_NeuralNet":
        return super().set_params(**{k[len("module__"):] if k.startswith("module__") else k: v for k, v in params.items()})

    # -- options ---------------------------------------------------------------------------------

    def _check_bits(self) -> None:
        _check_int("n_layers", self.n_layers, 1, 64)
        if not (isinstance(self.n_hidden_neurons_multiplier, (int, float, np.number)) and self.n_hidden_neurons_multiplier > 0):
            raise ValueError(f"n_hidden_neurons_multiplier={self.n_hidden_neurons_multiplier!r}: expected a positive number")
        _activation(self.activation_function)
        _check_int("n_w_bits", self.n_w_bits, 2, 8)
        _check_int("n_a_bits", self.n_a_bits, 1, 8)
        _check_int("n_input_bits", self.n_input_bits, 1, 8, none=True)
        if self.input_range not in ("feature", "tensor"):
            raise ValueError(f"input_range={self.input_range!r}: 'feature' (one quantiser per feature) or 'tensor' (one for all)")
        _check_int("rounding_threshold_bits", self.rounding_threshold_bits, 2, 8)
        self._accum_bits()
        _check_int("max_epochs", self.max_epochs, 0, 1_000_000)
        _check_int("batch_size", self.batch_size, 1, 1 << 24)
        if not (isinstance(self.lr, (int, float, np.number)) and self.lr > 0):
            raise ValueError(f"lr={self.lr!r}: expected a positive number")
        if not (isinstance(self.weight_decay, (int, float, np.number)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay={self.weight_decay!r}: expected a number ≥ 0")
        if not (isinstance(self.ema_decay, (int, float, np.number)) and 0 <= self.ema_decay < 1):
            raise ValueError(f"ema_decay={self.ema_decay!r}: expected a number in [0, 1) (0: no averaging)")

    def _accum_bits(self) -> list[int | None]:
        """``n_accum_bits`` as one bound per dense layer (checked)."""
        v = self.n_accum_bits
        per_layer = isinstance(v, (list, tuple, np.ndarray))
        bits = list(v) if per_layer else [v] * int(self.n_layers)
        if len(bits) != self.n_layers:
            raise ValueError(f"n_accum_bits={v!r}: one bound per dense layer expected ({self.n_layers}), got {len(bits)}")
        n_in = self.n_input_bits or self.n_a_bits
        for l, b in enumerate(bits):
            name = f"n_accum_bits[{l}]" if per_layer else "n_accum_bits"
            _check_int(name, b, 2, 24, none=True)
            need = (n_in if l == 0 else self.n_a_bits) + 1
            if b is not None and b < need:
                raise ValueError(f"{name}={b} leaves no room for one weight: it must exceed the layer's input bits ({need - 1})")
        return [None if b is None else int(b) for b in bits]

    # -- training --------------------------------------------------------------------------------

    def _targets(self, y: Any) -> tuple[np.ndarray, int]:
        """The training targets and the number of outputs (each public class defines it)."""
        raise NotImplementedError(f"{type(self).__name__} is an abstract base: use NeuralNetClassifier or NeuralNetRegressor")

    def _loss_grad(self, out: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss of a batch and its gradient on the outputs (each public class defines it)."""
        raise NotImplementedError(f"{type(self).__name__} is an abstract base: use NeuralNetClassifier or NeuralNetRegressor")

    def fit(self, X: Any, y: Any) -> "_NeuralNet":
        """Trains the network with its FHE semantics in the loop (quantisation-aware), then keeps its
        integers. Drops any compiled circuit."""
        self._check_bits()
        X, y = validate_data(self, X, y, reset=True, dtype=np.float64, multi_output=isinstance(self, RegressorMixin))
        t, n_out = self._targets(y)
        n, d = X.shape
        rng = np.random.default_rng(self.random_state)
        n_in = self.n_input_bits or self.n_a_bits
        hidden = max(1, int(round(self.n_hidden_neurons_multiplier * d)))
        sizes = [d] + [hidden] * (self.n_layers - 1) + [n_out]
        net = _Net(sizes, _activation(self.activation_function), n_in, self.n_w_bits, self.n_a_bits,
                   self._accum_bits(), self.rounding_threshold_bits, rng)
        lo, hi = X.min(axis=0), X.max(axis=0)
        if self.input_range == "tensor":
            lo, hi = np.full(d, lo.min()), np.full(d, hi.max())
        scale = np.where(hi > lo, (hi - lo) / ((1 << n_in) - 1), 1.0)
        hq = np.clip(np.rint((X - lo) / scale), 0, (1 << n_in) - 1) - net.half(0)
        params = [*net.W, *net.b]
        opt = _Adam(params, float(self.lr), float(self.weight_decay))
        # the kept weights: an exponential moving average of the steps' (ema_decay per step; 0: the last
        # step's). QAT's last steps jump between integer grids; the average settles between them.
        decay = float(self.ema_decay)
        avg = [p.copy() for p in params] if decay else params
        bs = min(int(self.batch_size), n)
        steps = max(1, math.ceil(n / bs))
        bar = self._bar(int(self.max_epochs), n * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])))
        self.loss_curve_: list[float] = []
        try:
            for epoch in range(int(self.max_epochs)):
                perm = rng.permutation(n)
                total = 0.0
                for s in range(steps):
                    idx = perm[s * bs : (s + 1) * bs]
                    out, cache = net.forward(hq[idx], train=True, step=epoch * steps + s)
                    loss, dout = self._loss_grad(out, t[idx])
                    gW, gb = net.backward(dout, cache)
                    opt.step(params, [*gW, *gb])
                    if decay:
                        for a, p in zip(avg, params):
                            a += (1.0 - decay) * (p - a)
                    total += loss * len(idx)
                self.loss_curve_.append(total / n)
                if bar is not None:
                    bar.set_postfix(loss=f"{total / n:.4f}")
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        for p, a in zip(params, avg):
            p[...] = a
        out_scale, out_offset = self._output_affine()
        spec = net.export(lo, scale, out_scale, out_offset, "softmax" if isinstance(self, ClassifierMixin) else "identity")
        if isinstance(self, ClassifierMixin):
            spec["classes"] = np.asarray(self.classes_).tolist()  # the client's labels (model files)
        self._set_network(spec)
        self.fhe_circuit = None
        return self

    @classmethod
    def from_sklearn_model(cls, model: Any, X: Any, n_bits: Any = None) -> "FheModel":
        raise TypeError(
            f"{cls.__name__} trains its own network (quantisation-aware); for a network trained elsewhere use "
            "fhec.onnx.compile_onnx_model or fhec.torch.compile_torch_model"
        )

    def fit_benchmark(self, X: Any, y: Any, **fit_params: Any) -> tuple["_NeuralNet", Any]:
        """Fits this network and returns it with a float reference: scikit-learn's MLP of the same layers,
        epochs, learning rate, batch size and seed (activation ``relu``, ``tanh`` or ``logistic`` when this
        one is one of those, else ``relu``)."""
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        self.fit(X, y)
        act = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic"}.get(_activation(self.activation_function), "relu")
        hidden = (max(1, int(round(self.n_hidden_neurons_multiplier * self.n_features_in_))),) * (self.n_layers - 1)
        ref_cls = MLPClassifier if isinstance(self, ClassifierMixin) else MLPRegressor
        ref = ref_cls(hidden, activation=act, learning_rate_init=self.lr, batch_size=self.batch_size,
                      max_iter=max(1, int(self.max_epochs)), random_state=self.random_state)
        import warnings

        from sklearn.preprocessing import MinMaxScaler
        from sklearn.pipeline import make_pipeline

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at few epochs
            float_model = make_pipeline(MinMaxScaler(), ref).fit(X, y)
        return self, float_model

    def _bar(self, epochs: int, work: int) -> Any:
        """A tqdm bar over epochs when asked (``verbose``) or when the fit is long (> ~10 s)."""
        if epochs == 0 or not (self.verbose or work * epochs * 6 > 2e11):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=epochs, desc=f"{type(self).__name__}.fit", unit="epoch", file=sys.stderr,
                    disable=None if not self.verbose else False)

    def _output_affine(self) -> tuple[np.ndarray, np.ndarray]:
        return np.float64(1.0), np.float64(0.0)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_q", None)  # the Rust object and the arrays are rebuilt from network_
        state.pop("_np", None)
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        if "network_" in state:
            state["_q"] = mlp_network(json.dumps(state["network_"]))
            state["_np"] = _arrays(state["network_"])
        super().__setstate__(state)

    def _set_network(self, spec: dict) -> None:
        self.network_ = spec
        self._q = mlp_network(json.dumps(spec))  # checked by Rust before anything reads it
        self._np = _arrays(spec)

    # -- the integer network ----------------------------------------------------------------------

    def quantize_input(self, X: Any) -> np.ndarray:
        """The client's integers for ``X`` (per-feature affine quantisers calibrated on the training set;
        values outside it are clipped, with an ``InputRangeWarning``)."""
        check_is_fitted(self, "network_")
        X = self._validate(X)
        inp = self.network_["input"]
        levels = (1 << int(inp["n_bits"])) - 1
        q = np.rint((X - np.asarray(inp["lo"])) / np.asarray(inp["scale"]))
        out = (q < 0) | (q > levels)
        if out.any():
            warn_clipped(int(out.sum()), int(out.any(axis=1).sum()), list(np.nonzero(out.any(axis=0))[0]))
        return np.clip(q, 0, levels).astype(np.int64)

    def _encode(self, X: Any) -> np.ndarray:
        return self.quantize_input(X)

    def _outputs(self, X: Any, fhe: str) -> np.ndarray:
        """The program's integer outputs: computed here (``disable``), simulated or encrypted."""
        if isinstance(X, Decrypted):
            return X.outputs
        check_mode(fhe)
        q = self.quantize_input(X)
        if fhe == "disable":
            return _int_forward(self._np, q)
        return self._run(q, fhe)

    def dequantize_output(self, q: np.ndarray) -> np.ndarray:
        o = self.network_["output"]
        return np.asarray(q, dtype=np.float64) * np.asarray(o["scale"]) + np.asarray(o["offset"])

    def compile(self, X: Any = None, p_error: float | None = None, global_p_error: float | None = None,
                partitions: bool = True, max_key_bytes: int | None = None) -> Circuit:
        """Builds the encrypted program (one dense layer per matrix product, an exact rounding and one
        lookup per hidden neuron) and picks secure parameters. ``X`` is only checked. ``max_key_bytes``: the most bytes of evaluation keys (as sent) the program may need; the fastest
        program within them is kept, or ``CompileError`` names the smallest keys found (docs/crypto.md,
        "Key budget"); default: the fastest, whatever its keys."""
        check_is_fitted(self, "network_")
        if X is not None:
            self._validate(X)
        budget = _key_budget(max_key_bytes)
        self.fhe_circuit = Circuit(self._q.compile(p_error, global_p_error, partitions, None, budget), True)
        self._compile_options = {"p_error": p_error, "global_p_error": global_p_error, "partitions": partitions,
                                 "max_key_bytes": budget}
        return self.fhe_circuit

    def bitwidth_report(self) -> list[dict]:
        """Per layer: the accumulator's worst-case range and bits, and for hidden layers the bits the
        rounding drops and the lookup's input bits."""
        check_is_fitted(self, "network_")
        return list(self._q.layers())

    @property
    def accumulator_bits_(self) -> list[int]:
        """Each dense layer's accumulator width (bits, worst case over every accepted input)."""
        return [r["bits"] for r in self.bitwidth_report() if r["kind"] == "accumulator"]

    def _state(self) -> dict:
        return {"network_": self.network_, **self._extra_state()}

    def _extra_state(self) -> dict:
        return {}

    def _load_state(self, s: dict) -> None:
        self._set_network(s["network_"])


class NeuralNetClassifier(ClassifierMixin, _NeuralNet):
    """A fully connected classifier trained for FHE (quantisation-aware, in numpy; docs/nn.md).

    Parameters (the incumbent's names; ``module__``-prefixed forms are accepted too): ``n_layers``
    (dense layers, default 3), ``n_hidden_neurons_multiplier`` (hidden width = multiplier × features,
    default 4), ``activation_function`` (``"relu"``, ``"leaky_relu"``, ``"sigmoid"``, ``"tanh"``,
    ``"elu"``, ``"silu"``, ``"gelu"`` or the torch.nn class), ``n_w_bits`` (weights, default 3),
    ``n_a_bits`` (activations and, unless ``n_input_bits``, inputs; default 3), ``n_accum_bits``
    (every accumulator's worst case, default 8; None: unbounded; or one per dense layer, e.g. ``[9, 11]``), ``rounding_threshold_bits`` (bits
    each accumulator keeps before its lookup, default 4), ``max_epochs`` (10), ``lr`` (Adam, 0.001),
    ``batch_size`` (128), ``weight_decay`` (0), ``ema_decay`` (the kept
    weights are an exponential moving average of the training steps', decay per step, default 0.9;
    0: the last step's), ``random_state``, ``verbose`` (a progress bar)."""

    def _targets(self, y: Any) -> tuple[np.ndarray, int]:
        check_classification_targets(y)
        self.classes_, idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("NeuralNetClassifier needs at least two classes in y")
        return idx, len(self.classes_)

    def _loss_grad(self, out: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        z = out - out.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        n = len(t)
        loss = float(-np.log(np.maximum(p[np.arange(n), t], 1e-300)).mean())
        p[np.arange(n), t] -= 1.0
        return loss, p / n

    def decision_function(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """The network's outputs (logits), dequantised."""
        check_is_fitted(self, "network_")
        return self.dequantize_output(self._outputs(X, fhe))

    def predict_proba(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Softmax of the logits (on the client, after decryption)."""
        z = self.decision_function(X, fhe)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Class labels of the quantised network; ``fhe`` picks how it runs (identical results)."""
        z = self.decision_function(X, fhe)
        return np.asarray(self.classes_)[z.argmax(axis=1)]


class NeuralNetRegressor(RegressorMixin, _NeuralNet):
    """A fully connected regressor trained for FHE (quantisation-aware, in numpy; docs/nn.md). Same
    parameters as :class:`NeuralNetClassifier`; the targets are standardised for training (mean
    squared error) and the client's dequantisation undoes it."""

    def _targets(self, y: Any) -> tuple[np.ndarray, int]:
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self._y_mean = y2.mean(axis=0)
        self._y_std = np.where(y2.std(axis=0) > 0, y2.std(axis=0), 1.0)
        return (y2 - self._y_mean) / self._y_std, y2.shape[1]

    def _loss_grad(self, out: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        d = out - t
        return float((d * d).mean()), 2.0 * d / d.size

    def _output_affine(self) -> tuple[np.ndarray, np.ndarray]:
        return self._y_std, self._y_mean

    def _extra_state(self) -> dict:
        return {"y_1d": bool(self._y_1d)}

    def _load_state(self, s: dict) -> None:
        super()._load_state(s)
        self._y_1d = bool(s.get("y_1d", True))

    def predict(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Predictions of the quantised network; ``fhe`` picks how it runs (identical results)."""
        check_is_fitted(self, "network_")
        y = self.dequantize_output(self._outputs(X, fhe))
        return y[:, 0] if self._y_1d else y


_linear._EXTRA.update({"NeuralNetClassifier": NeuralNetClassifier, "NeuralNetRegressor": NeuralNetRegressor})
