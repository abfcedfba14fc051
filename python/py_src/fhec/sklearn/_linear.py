"""The linear family: scikit-learn estimators whose prediction runs on encrypted inputs.

Each class wraps the scikit-learn estimator of the same name: the constructor takes every parameter
of that estimator plus ``n_bits``; ``fit`` trains the float model with scikit-learn and quantises it
(in Rust, ``fhec-quant``; ``_quant.py``); ``compile`` builds the encrypted program (a dot product, no bootstrap);
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
from typing import Any

import numpy as np
import sklearn.linear_model as sklm
import sklearn.svm as sksvm
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import Circuit, CompileError, FhecError
from ._base import FORMAT, FORMAT_VERSION, Decrypted, FheModel, NotCompiledError, check_mode
from .._fhec import post_process
from ._quant import QuantizedLinear, parse_n_bits

class _LinearModel(FheModel):
    """The linear family; the public classes are made by ``_make`` below."""

    def _check_bits(self) -> None:
        parse_n_bits(self.n_bits)

    def _quantize(self, model: Any, X: np.ndarray) -> None:
        self.coef_ = model.coef_
        self.intercept_ = model.intercept_
        n_in, n_w = parse_n_bits(self.n_bits)
        W, b = self._weights()
        self.quantized_ = QuantizedLinear.build(W, b, X, n_in, n_w)

    def _weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Float weights (d, C) and biases (C,) of the decision function."""
        coef = np.asarray(self.coef_, dtype=np.float64)
        W = coef.reshape(-1, coef.shape[-1]).T if coef.ndim > 1 else coef.reshape(-1, 1)
        b = np.broadcast_to(np.asarray(self.intercept_, dtype=np.float64).ravel(), (W.shape[1],)).copy()
        return W, b

    # -- compilation --------------------------------------------------------------------------

    def compile(self, X: Any = None, p_error: float | None = None, global_p_error: float | None = None) -> Circuit:
        """Builds the encrypted program (the quantised dot product) and picks secure parameters.

        The program accepts every input the quantisers can produce, so ``X`` only has its shape and
        values checked (and may be left out). Keys are generated at the first encrypted run, or by
        ``model.fhe_circuit.keygen()``."""
        check_is_fitted(self, "quantized_")
        if X is not None:
            validate_data(self, X, reset=False, dtype=np.float64)
        classes = json.dumps(np.asarray(self.classes_).tolist()) if hasattr(self, "classes_") else None
        self.fhe_circuit = self.quantized_.compile(
            p_error=p_error, global_p_error=global_p_error, post=self._post(), classes=classes
        )
        self._compile_options = {"p_error": p_error, "global_p_error": global_p_error}
        return self.fhe_circuit

    # -- inference ----------------------------------------------------------------------------

    def quantize_input(self, X: Any) -> np.ndarray:
        """The quantised integer rows the client encrypts (values outside the calibrated range are
        clipped, with an ``InputRangeWarning``)."""
        check_is_fitted(self, "quantized_")
        return self.quantized_.inputs.quantize(self._validate(X))

    def _encode(self, X: Any) -> np.ndarray:
        return self.quantize_input(X)

    def _accumulate(self, X: Any, fhe: str) -> np.ndarray:
        if isinstance(X, Decrypted):
            return X.outputs
        check_mode(fhe)
        q = self.quantize_input(X)
        if fhe == "disable":
            return self.quantized_.accumulate(q)
        return self._run(q, fhe)

    def _decision(self, X: Any, fhe: str) -> np.ndarray:
        """Dequantised decision values, (n, C)."""
        acc = self._accumulate(X, fhe)
        return self.quantized_.dequantize(acc)

    def _single_output(self) -> bool:
        return np.ndim(self.coef_) == 1

    # -- persistence --------------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "coef_": np.asarray(self.coef_, dtype=np.float64).tolist(),
            "coef_ndim": int(np.ndim(self.coef_)),
            "intercept_": np.asarray(self.intercept_, dtype=np.float64).tolist(),
            "quantized_": self.quantized_.to_dict(),
        }

    def _load_state(self, s: dict) -> None:
        coef = np.asarray(s["coef_"], dtype=np.float64)
        self.coef_ = coef.reshape(-1) if s["coef_ndim"] == 1 else coef.reshape(-1, self.n_features_in_)
        self.intercept_ = np.asarray(s["intercept_"], dtype=np.float64)
        self.quantized_ = QuantizedLinear.from_dict(s["quantized_"])


class _Regressor(RegressorMixin, _LinearModel):
    def _post(self) -> str:
        """The client spec's post-processing: the inverse link (computed in Rust, ``fhec-quant``)."""
        return "identity"

    def predict(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Predictions of the quantised model; ``fhe`` picks how the dot product runs."""
        y = post_process(self._decision(X, fhe), self._post())
        return y[:, 0] if self._single_output() else y


class _LogLinkRegressor(_Regressor):
    def _post(self) -> str:
        return "exp"


class _TweedieRegressor(_Regressor):
    def _post(self) -> str:
        log = self.link == "log" or (self.link == "auto" and self.power > 0)
        return "exp" if log else "identity"


class _Classifier(ClassifierMixin, _LinearModel):
    def _post(self) -> str:
        """The client spec's post-processing: decision values only (no probabilities)."""
        return "decision"

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


class _LogisticClassifier(_Classifier):
    def _post(self) -> str:
        return "sigmoid" if self.quantized_.weights.shape[1] == 1 else "softmax"

    def predict_proba(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Class probabilities: sigmoid for two classes, softmax otherwise (as scikit-learn)."""
        return post_process(self._decision(X, fhe), self._post())


class _SGDClassifier(_Classifier):
    def _post(self) -> str:
        if self.loss == "log_loss":
            return "sigmoid" if self.quantized_.weights.shape[1] == 1 else "one_vs_rest"
        return "modified_huber" if self.loss == "modified_huber" else "decision"

    def predict_proba(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Class probabilities for ``loss="log_loss"`` or ``"modified_huber"`` (as scikit-learn)."""
        if self.loss not in ("log_loss", "modified_huber"):
            raise AttributeError(f"probability estimates are not available for loss={self.loss!r}")
        return post_process(self._decision(X, fhe), self._post())


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
