"""The linear family: scikit-learn estimators whose prediction runs on encrypted inputs.

Each class wraps the scikit-learn estimator of the same name: the constructor takes every parameter
of that estimator plus ``n_bits``; ``fit`` trains the float model with scikit-learn and quantises it
(see ``_quant.py``); ``compile`` builds the encrypted program (a dot product, no bootstrap);
``predict(X, fhe=...)`` runs in one of three modes that return identical results:

* ``"disable"``: the quantised model in the clear (numpy, integers);
* ``"simulate"``: the compiled program, run by fhec's exact simulator (no keys);
* ``"execute"``: encrypt on the client, run the program on ciphertexts, decrypt.

Dequantisation, inverse links, sigmoid/softmax and argmax run on the client after decryption.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from typing import Any

import numpy as np
import sklearn
import sklearn.linear_model as sklm
import sklearn.svm as sksvm
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import Circuit, CompileError, FhecError, compiler
from ._quant import InputQuantizer, QuantizedLinear, parse_n_bits

FHE_MODES = ("disable", "simulate", "execute")
FORMAT = "fhec.sklearn"
FORMAT_VERSION = 1


class NotCompiledError(FhecError):
    """``predict(..., fhe="simulate"|"execute")`` before ``compile``."""


def _check_mode(fhe: str) -> str:
    if fhe not in FHE_MODES:
        raise ValueError(f"fhe must be one of {', '.join(map(repr, FHE_MODES))}; got {fhe!r}")
    return fhe


class _LinearModel(BaseEstimator):
    """Shared implementation; the public classes are made by ``_make`` below."""

    _sklearn_class: type = BaseEstimator
    _param_names: tuple[str, ...] = ()

    # -- parameters ---------------------------------------------------------------------------

    def _sklearn_params(self) -> dict[str, Any]:
        names = [*self._param_names, *getattr(self, "_extra_params", ())]
        return {k: getattr(self, k) for k in names if k != "n_bits"}

    # -- training and quantisation ------------------------------------------------------------

    def fit(self, X: Any, y: Any, **fit_params: Any) -> "_LinearModel":
        """Trains the float model with scikit-learn, then calibrates the input quantisers on ``X``
        and quantises the weights. Drops any compiled circuit."""
        parse_n_bits(self.n_bits)  # fail before training
        model = self._sklearn_class(**self._sklearn_params())
        model.fit(X, y, **fit_params)
        self._adopt(model, X)
        return self

    def _adopt(self, model: Any, X: Any) -> None:
        self.sklearn_model_ = model
        self.n_features_in_ = model.n_features_in_
        if hasattr(model, "feature_names_in_"):
            self.feature_names_in_ = model.feature_names_in_
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if hasattr(model, "classes_"):
            self.classes_ = model.classes_
        self.coef_ = model.coef_
        self.intercept_ = model.intercept_
        Xv = validate_data(self, X, reset=False, dtype=np.float64)
        n_in, n_w = parse_n_bits(self.n_bits)
        W, b = self._weights()
        self.quantized_ = QuantizedLinear.build(W, b, InputQuantizer.calibrate(Xv, n_in), n_w)
        self.fhe_circuit = None

    def _weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Float weights (d, C) and biases (C,) of the decision function."""
        coef = np.asarray(self.coef_, dtype=np.float64)
        W = coef.reshape(-1, coef.shape[-1]).T if coef.ndim > 1 else coef.reshape(-1, 1)
        b = np.broadcast_to(np.asarray(self.intercept_, dtype=np.float64).ravel(), (W.shape[1],)).copy()
        return W, b

    def fit_benchmark(self, X: Any, y: Any, **fit_params: Any) -> tuple["_LinearModel", Any]:
        """Fits this model and returns it with the float scikit-learn model trained on the same data."""
        self.fit(X, y, **fit_params)
        return self, self.sklearn_model_

    @classmethod
    def from_sklearn_model(cls, model: Any, X: Any, n_bits: Any = 8) -> "_LinearModel":
        """Quantises an already trained scikit-learn model; ``X`` calibrates the input quantisers."""
        if not isinstance(model, cls._sklearn_class):
            raise TypeError(
                f"{cls.__name__}.from_sklearn_model expects a fitted sklearn {cls._sklearn_class.__name__}, "
                f"got {type(model).__name__}"
            )
        check_is_fitted(model)
        if X is None:
            raise ValueError("from_sklearn_model needs X to calibrate the input quantisers")
        params = {k: v for k, v in model.get_params(deep=False).items() if k in cls._param_names}
        est = cls(**params, n_bits=n_bits)
        est._adopt(model, X)
        return est

    # -- compilation --------------------------------------------------------------------------

    def compile(self, X: Any = None, p_error: float | None = None, global_p_error: float | None = None) -> Circuit:
        """Builds the encrypted program (the quantised dot product) and picks secure parameters.

        The program accepts every input the quantisers can produce, so ``X`` only has its shape and
        values checked (and may be left out). Keys are generated at the first encrypted run, or by
        ``model.fhe_circuit.keygen()``."""
        check_is_fitted(self, "quantized_")
        if X is not None:
            validate_data(self, X, reset=False, dtype=np.float64)
        q = self.quantized_
        q.check_width()
        weights = q.weights
        d = weights.shape[0]

        @compiler({"x": "encrypted"})
        def linear(x):  # type: ignore[no-untyped-def]
            return x @ weights

        corners = [np.zeros((1, d), dtype=np.int64), np.full((1, d), q.inputs.max_q, dtype=np.int64)]
        self.fhe_circuit = linear.compile(corners, p_error=p_error, global_p_error=global_p_error)
        self._compile_options = {"p_error": p_error, "global_p_error": global_p_error}
        return self.fhe_circuit

    # -- inference ----------------------------------------------------------------------------

    def _validate(self, X: Any) -> np.ndarray:
        """``X`` as a float64 matrix with the fitted feature count (and names), without NaN or inf."""
        if type(X) is np.ndarray and X.dtype == np.float64 and X.ndim == 2 and not hasattr(self, "feature_names_in_"):
            # fast path for single rows (latency): the checks validate_data makes on such input
            if X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
            if X.shape[0] == 0:
                raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
            if not np.isfinite(X).all():
                raise ValueError("Input X contains NaN or infinity.")
            return X
        return validate_data(self, X, reset=False, dtype=np.float64)

    def quantize_input(self, X: Any) -> np.ndarray:
        """The quantised integer rows the client encrypts (values outside the calibrated range are
        clipped, with an ``InputRangeWarning``)."""
        check_is_fitted(self, "quantized_")
        return self.quantized_.inputs.quantize(self._validate(X))

    def _accumulate(self, X: Any, fhe: str) -> np.ndarray:
        _check_mode(fhe)
        q = self.quantize_input(X)
        if fhe == "disable":
            return self.quantized_.accumulate(q)
        circuit = getattr(self, "fhe_circuit", None)
        if circuit is None:
            raise NotCompiledError(f'call compile(X) before predicting with fhe="{fhe}"')
        rows = [q[i : i + 1] for i in range(q.shape[0])]
        if not rows:
            return np.zeros((0, self.quantized_.weights.shape[1]), dtype=np.int64)
        out = circuit.simulate_batch(rows) if fhe == "simulate" else circuit.run_batch(rows)
        return np.concatenate(out, axis=0)

    def _decision(self, X: Any, fhe: str) -> np.ndarray:
        """Dequantised decision values, (n, C)."""
        acc = self._accumulate(X, fhe)
        return self.quantized_.dequantize(acc)

    def _single_output(self) -> bool:
        return np.ndim(self.coef_) == 1

    # -- persistence --------------------------------------------------------------------------

    def dump_dict(self) -> dict:
        """The model as a JSON-compatible dict (parameters and quantised state; no keys)."""
        check_is_fitted(self, "quantized_")
        params = self.get_params(deep=False)
        try:
            json.dumps(params)
        except TypeError as e:
            raise ValueError(f"cannot dump {type(self).__name__}: a parameter is not JSON-serialisable ({e})") from e
        state: dict[str, Any] = {
            "n_features_in_": int(self.n_features_in_),
            "coef_": np.asarray(self.coef_, dtype=np.float64).tolist(),
            "coef_ndim": int(np.ndim(self.coef_)),
            "intercept_": np.asarray(self.intercept_, dtype=np.float64).tolist(),
            "quantized_": self.quantized_.to_dict(),
            "compiled": getattr(self, "fhe_circuit", None) is not None,
            "compile_options": getattr(self, "_compile_options", {}),
        }
        if hasattr(self, "classes_"):
            state["classes_"] = np.asarray(self.classes_).tolist()
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in_"] = [str(f) for f in self.feature_names_in_]
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "class": type(self).__name__,
            "sklearn_version": sklearn.__version__,
            "params": params,
            "state": state,
        }

    def dumps(self) -> str:
        return json.dumps(self.dump_dict())

    def dump(self, file: Any) -> None:
        """Writes the model as JSON to a path (atomically) or an open text file."""
        text = self.dumps()
        if hasattr(file, "write"):
            file.write(text)
            return
        path = os.fspath(file)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fhec-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def _from_dict(cls, d: dict) -> "_LinearModel":
        est = cls(**d["params"])
        s = d["state"]
        est.n_features_in_ = int(s["n_features_in_"])
        coef = np.asarray(s["coef_"], dtype=np.float64)
        est.coef_ = coef.reshape(-1) if s["coef_ndim"] == 1 else coef.reshape(-1, est.n_features_in_)
        est.intercept_ = np.asarray(s["intercept_"], dtype=np.float64)
        if "classes_" in s:
            est.classes_ = np.asarray(s["classes_"])
        if "feature_names_in_" in s:
            est.feature_names_in_ = np.asarray(s["feature_names_in_"], dtype=object)
        est.quantized_ = QuantizedLinear.from_dict(s["quantized_"])
        est.fhe_circuit = None
        if s.get("compiled"):
            opts = s.get("compile_options") or {}
            est.compile(None, p_error=opts.get("p_error"), global_p_error=opts.get("global_p_error"))
        return est


class _Regressor(RegressorMixin, _LinearModel):
    def _inverse_link(self, eta: np.ndarray) -> np.ndarray:
        return eta

    def predict(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Predictions of the quantised model; ``fhe`` picks how the dot product runs."""
        y = self._inverse_link(self._decision(X, fhe))
        return y[:, 0] if self._single_output() else y


class _LogLinkRegressor(_Regressor):
    def _inverse_link(self, eta: np.ndarray) -> np.ndarray:
        return np.exp(eta)


class _TweedieRegressor(_Regressor):
    def _inverse_link(self, eta: np.ndarray) -> np.ndarray:
        log = self.link == "log" or (self.link == "auto" and self.power > 0)
        return np.exp(eta) if log else eta


class _Classifier(ClassifierMixin, _LinearModel):
    def decision_function(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Dequantised decision values: (n,) for two classes, (n, n_classes) otherwise."""
        d = self._decision(X, fhe)
        return d[:, 0] if d.shape[1] == 1 else d

    def _predict_from_decision(self, d: np.ndarray) -> np.ndarray:
        idx = (d > 0).astype(int) if d.ndim == 1 else d.argmax(axis=1)
        return np.asarray(self.classes_)[idx]

    def predict(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Class labels of the quantised model; ``fhe`` picks how the dot product runs."""
        return self._predict_from_decision(self.decision_function(X, fhe=fhe))


def _sigmoid(d: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-d))


def _ovr_normalise(p: np.ndarray) -> np.ndarray:
    s = p.sum(axis=1)
    zero = s == 0
    p[zero, :] = 1
    s[zero] = p.shape[1]
    return p / s[:, None]


def _softmax(d: np.ndarray) -> np.ndarray:
    e = np.exp(d - d.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class _LogisticClassifier(_Classifier):
    def predict_proba(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Class probabilities: sigmoid for two classes, softmax otherwise (as scikit-learn)."""
        d = self.decision_function(X, fhe=fhe)
        if d.ndim == 1:
            p = _sigmoid(d)
            return np.stack([1 - p, p], axis=1)
        return _softmax(d)


class _SGDClassifier(_Classifier):
    def predict_proba(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Class probabilities for ``loss="log_loss"`` or ``"modified_huber"`` (as scikit-learn)."""
        if self.loss not in ("log_loss", "modified_huber"):
            raise AttributeError(f"probability estimates are not available for loss={self.loss!r}")
        d = self.decision_function(X, fhe=fhe)
        if self.loss == "log_loss":
            p = _sigmoid(d)
            return np.stack([1 - p, p], axis=1) if p.ndim == 1 else _ovr_normalise(p)
        p = (np.clip(d, -1, 1) + 1.0) / 2.0
        return np.stack([1 - p, p], axis=1) if p.ndim == 1 else _ovr_normalise(p)


def _make(name: str, sk_class: type, base: type, summary: str, n_bits: Any = 8, n_bits_doc: str = "") -> type:
    """A public estimator class: ``sk_class``'s constructor parameters plus ``n_bits``."""
    params = []
    seen = set()
    # XGBoost's estimators take most parameters through **kwargs of their base class: use both
    for cls in [sk_class, *[c for c in sk_class.__mro__[1:] if c.__name__ == "XGBModel"]]:
        for n, p in inspect.signature(cls.__init__).parameters.items():
            if n == "self" or n in seen or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            seen.add(n)
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    params.append(inspect.Parameter("n_bits", inspect.Parameter.KEYWORD_ONLY, default=n_bits))
    names = tuple(p.name for p in params)
    defaults = {p.name: p.default for p in params}
    # XGBoost and LightGBM take extra booster parameters (verbose=-1, ...) through **kwargs
    open_kwargs = any(
        p.kind == p.VAR_KEYWORD for p in inspect.signature(sk_class.__init__).parameters.values()
    )

    def __init__(self: Any, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(names)
        if unknown and not open_kwargs:
            raise TypeError(f"{name}() got unexpected keyword argument(s) {', '.join(sorted(unknown))}")
        for n in names:
            setattr(self, n, kwargs.get(n, defaults[n]))
        self._extra_params = sorted(unknown)
        for n in self._extra_params:
            setattr(self, n, kwargs[n])

    def get_params(self: Any, deep: bool = True) -> dict:
        params = BaseEstimator.get_params(self, deep)
        params.update({n: getattr(self, n) for n in getattr(self, "_extra_params", ())})
        return params

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __init__.__signature__ = inspect.Signature([self_param, *params])  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{name}.__init__"
    doc = (
        f"{summary}\n\n"
        f"A drop-in for ``sklearn.{sk_class.__module__.split('.')[1]}.{sk_class.__name__}`` (same parameters, "
        + (n_bits_doc or "plus ``n_bits``: an int, or ``{'inputs': int, 'weights': int}``; default 8")
        + ") whose prediction runs on encrypted inputs: ``fit``, ``compile(X)``, then "
        "``predict(X, fhe='disable'|'simulate'|'execute')``."
    )
    cls = type(
        name,
        (base,),
        {
            "__init__": __init__,
            **({"get_params": get_params} if open_kwargs else {}),
            "__doc__": doc,
            "__module__": "fhec.sklearn",
            "__qualname__": name,
            "_sklearn_class": sk_class,
            "_param_names": names,
        },
    )
    return cls


LinearRegression = _make("LinearRegression", sklm.LinearRegression, _Regressor, "Ordinary least squares.")
Ridge = _make("Ridge", sklm.Ridge, _Regressor, "Least squares with L2 regularisation.")
Lasso = _make("Lasso", sklm.Lasso, _Regressor, "Least squares with L1 regularisation.")
ElasticNet = _make("ElasticNet", sklm.ElasticNet, _Regressor, "Least squares with L1 and L2 regularisation.")
SGDRegressor = _make("SGDRegressor", sklm.SGDRegressor, _Regressor, "Linear regression fitted by SGD.")
LinearSVR = _make("LinearSVR", sksvm.LinearSVR, _Regressor, "Linear support vector regression.")
PoissonRegressor = _make("PoissonRegressor", sklm.PoissonRegressor, _LogLinkRegressor, "Poisson GLM (log link).")
GammaRegressor = _make("GammaRegressor", sklm.GammaRegressor, _LogLinkRegressor, "Gamma GLM (log link).")
TweedieRegressor = _make("TweedieRegressor", sklm.TweedieRegressor, _TweedieRegressor, "Tweedie GLM.")
LogisticRegression = _make(
    "LogisticRegression", sklm.LogisticRegression, _LogisticClassifier, "Logistic regression classifier."
)
SGDClassifier = _make("SGDClassifier", sklm.SGDClassifier, _SGDClassifier, "Linear classifier fitted by SGD.")
LinearSVC = _make("LinearSVC", sksvm.LinearSVC, _Classifier, "Linear support vector classifier.")

ESTIMATORS: dict[str, type] = {
    c.__name__: c
    for c in (
        LinearRegression,
        Ridge,
        Lasso,
        ElasticNet,
        SGDRegressor,
        LinearSVR,
        PoissonRegressor,
        GammaRegressor,
        TweedieRegressor,
        LogisticRegression,
        SGDClassifier,
        LinearSVC,
    )
}


#: estimators of other families (trees), registered by their modules for ``load``
_EXTRA: dict[str, type] = {}


def loads(text: str) -> Any:
    """A model from the JSON text of ``dumps``."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise FhecError(f"not an fhec model file: {e}") from e
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise FhecError("not an fhec model file (no 'fhec.sklearn' format marker)")
    if d.get("version") != FORMAT_VERSION:
        raise FhecError(f"model file version {d.get('version')!r} is not supported (this fhec reads {FORMAT_VERSION})")
    cls = ESTIMATORS.get(d.get("class", "")) or _EXTRA.get(d.get("class", ""))
    if cls is None:
        raise FhecError(f"model file names an unknown estimator {d.get('class')!r}")
    try:
        return cls._from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise FhecError(f"damaged model file ({type(e).__name__}: {e})") from e


def load(file: Any) -> Any:
    """A model from a path or an open text file written by ``dump``."""
    if hasattr(file, "read"):
        return loads(file.read())
    with open(os.fspath(file)) as f:
        return loads(f.read())


__all__ = [*ESTIMATORS, "load", "loads", "NotCompiledError", "CompileError"]
