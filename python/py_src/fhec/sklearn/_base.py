"""What every fhec.sklearn estimator shares: training through the scikit-learn (or booster) model it
wraps, input validation, `from_sklearn_model`, `fit_benchmark`, and the JSON file format. A family
(`_linear.py`, `_trees.py`) adds its quantisation (`_quantize`), its program (`compile`) and its part
of the saved state (`_state` / `_load_state`)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import Client, FhecError, Server
from .._modes import FHE_MODES, check_mode  # noqa: F401 (re-exported to the families)

FORMAT = "fhec.sklearn"
FORMAT_VERSION = 1


class NotCompiledError(FhecError):
    """``predict(..., fhe="simulate"|"execute")`` before ``compile``."""


class Decrypted:
    """The integer outputs of a compiled model for a batch, decrypted by the client
    (:meth:`FheModel.decrypt`). Pass it to ``predict`` / ``predict_proba`` / ``decision_function`` in place
    of ``X``: the model applies its client-side post-processing (dequantisation, link, argmax)."""

    def __init__(self, outputs: np.ndarray):
        self.outputs = outputs

    def __len__(self) -> int:
        return int(self.outputs.shape[0])


class FheModel(BaseEstimator):
    """Base of every estimator (the public classes are made by ``_linear._make``). A family defines
    ``_check_bits()`` (raise ``ValueError`` on a bad ``n_bits``, before any training),
    ``_quantize(model, X)`` (quantise the fitted model, inputs calibrated on ``X``),
    ``compile(X=None, **options)``, and ``_state()`` / ``_load_state(state)`` (its part of the file)."""

    _sklearn_class: type = BaseEstimator
    #: the attribute a fitted model has (``check_is_fitted``)
    _fitted_attr = "quantized_"
    _param_names: tuple[str, ...] = ()

    # -- training ---------------------------------------------------------------------------------

    def _sklearn_params(self) -> dict[str, Any]:
        names = [*self._param_names, *getattr(self, "_extra_params", ())]
        return {k: getattr(self, k) for k in names if k != "n_bits"}

    def fit(self, X: Any, y: Any, **fit_params: Any) -> "FheModel":
        """Trains the float model (scikit-learn, XGBoost or LightGBM), then quantises it with the
        input quantisers calibrated on ``X``. Drops any compiled circuit."""
        self._check_bits()
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
        self._quantize(model, validate_data(self, X, reset=False, dtype=np.float64))
        self.fhe_circuit = None

    def fit_benchmark(self, X: Any, y: Any, **fit_params: Any) -> tuple["FheModel", Any]:
        """Fits this model and returns it with the float model trained on the same data."""
        self.fit(X, y, **fit_params)
        return self, self.sklearn_model_

    @classmethod
    def from_sklearn_model(cls, model: Any, X: Any, n_bits: Any = None) -> "FheModel":
        """Quantises an already trained model of the wrapped class; ``X`` calibrates the inputs."""
        if not isinstance(model, cls._sklearn_class):
            raise TypeError(
                f"{cls.__name__}.from_sklearn_model expects a fitted sklearn {cls._sklearn_class.__name__}, "
                f"got {type(model).__name__}"
            )
        check_is_fitted(model)
        if X is None:
            raise ValueError("from_sklearn_model needs X to calibrate the input quantisers")
        params = {k: v for k, v in model.get_params(deep=False).items() if k in cls._param_names}
        est = cls(**params) if n_bits is None else cls(**params, n_bits=n_bits)
        est._check_bits()
        est._adopt(model, X)
        return est

    # -- inputs -----------------------------------------------------------------------------------

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

    def _compiled(self, what: str) -> Any:
        circuit = getattr(self, "fhe_circuit", None)
        if circuit is None:
            raise NotCompiledError(f"call compile(X) before {what}")
        return circuit

    def _run(self, rows: np.ndarray, fhe: str) -> np.ndarray:
        """The compiled program on integer rows (one sample each): simulated or encrypted."""
        circuit = self._compiled(f'predicting with fhe="{fhe}"')
        samples = [rows[i : i + 1] for i in range(rows.shape[0])]
        out = circuit.simulate_batch(samples) if fhe == "simulate" else circuit.run_batch(samples)
        return np.concatenate(out, axis=0)

    # -- client / server --------------------------------------------------------------------------

    def client(self) -> Client:
        """The client of the compiled model: it holds the secret keys (generated on first use)."""
        return self._compiled("client()").client()

    def server(self) -> Server:
        """A server of the compiled model for this client's keys. A server elsewhere is built from bytes
        alone: ``fhec.Server(model.fhe_circuit.program_bytes(), model.client().evaluation_keys())``."""
        return self._compiled("server()").server()

    def encrypt(self, X: Any) -> bytes:
        """Client: quantises (and encodes) ``X`` and encrypts it, one sample per row; an fhec ciphertext
        file for ``Server.run``."""
        rows = self._encode(X)
        return self.client().encrypt_batch([rows[i : i + 1] for i in range(rows.shape[0])])

    def decrypt(self, encrypted: bytes) -> Decrypted:
        """Client: decrypts a server's results; pass them to ``predict`` (or ``predict_proba``,
        ``decision_function``) in place of ``X``."""
        out = self.client().decrypt_batch(encrypted)
        return Decrypted(np.concatenate(out, axis=0))

    # -- persistence ------------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        """Pickling (joblib, copy): the compiled circuit (and its keys) is not pickled; a model that
        was compiled is compiled again when unpickled (keys are generated anew)."""
        state = dict(super().__getstate__())
        state["_was_compiled"] = state.pop("fhe_circuit", None) is not None
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        was_compiled = state.pop("_was_compiled", False)
        super().__setstate__(state)
        self.fhe_circuit = None
        if was_compiled:
            self.compile(None, **getattr(self, "_compile_options", {}))

    def dump_dict(self) -> dict:
        """The model as a JSON-compatible dict (parameters and quantised state; no keys)."""
        check_is_fitted(self, self._fitted_attr)
        params = self.get_params(deep=False)
        try:
            json.dumps(params)
        except TypeError as e:
            raise ValueError(f"cannot dump {type(self).__name__}: a parameter is not JSON-serialisable ({e})") from e
        state: dict[str, Any] = {
            "n_features_in_": int(self.n_features_in_),
            **self._state(),
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
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".fhec-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def _from_dict(cls, d: dict) -> "FheModel":
        est = cls(**d["params"])
        s = d["state"]
        est.n_features_in_ = int(s["n_features_in_"])
        if "classes_" in s:
            est.classes_ = np.asarray(s["classes_"])
        if "feature_names_in_" in s:
            est.feature_names_in_ = np.asarray(s["feature_names_in_"], dtype=object)
        est._load_state(s)
        est.fhe_circuit = None
        if s.get("compiled"):
            est.compile(None, **(s.get("compile_options") or {}))
        return est
