"""Tree ensembles: scikit-learn decision trees and forests whose prediction runs on encrypted inputs.

``fit`` trains the float model with scikit-learn and exports its trees to fhec's ensemble schema; Rust
(``fhec_trees``) calibrates per-feature input quantisers on the training data, maps every threshold
onto the quantised grid (the quantised model takes the float model's path on quantised inputs) and
quantises the leaves. The client quantises a row, encodes it as thermometer bits (``[q_j ≥ k]`` for every
level ``k``), encrypts them; the server computes one low-precision lookup per leaf and returns one
ciphertext per output. Design: docs/trees.md.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

import sklearn.ensemble as skens
import sklearn.tree as sktree
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import Circuit, FhecError
from .._circuit import _key_budget
from .._fhec import QuantizedTrees, post_process, trees_import, trees_quantize
from . import _linear
from ._base import Decrypted, FheModel, check_mode
from ._linear import _make
from ._quant import quantize_rows

DEFAULT_N_BITS = 6
DEFAULT_LEAF_BITS = 8


def default_leaf_bits(n_trees: int, boosted: bool = False) -> int:
    """Leaf bits when not given: 8 for a single tree, fewer for many so that the encrypted sum stays
    narrow (a narrow sum keeps the bootstraps' noise budget, hence their cost, low; docs/trees.md).
    A forest averages its trees' rounding errors: 9 − ⌈log2(trees)⌉, at least 3 (50 trees × 3 bits
    lose nothing on spambase). Boosted trees share one leaf scale although their leaves shrink from
    tree to tree: at least 5 bits (50 trees: −0.1 r² points on Friedman #1, where 3 bits lose 7)."""
    lo = 5 if boosted else 3
    return int(min(DEFAULT_LEAF_BITS, max(lo, 9 - int(np.ceil(np.log2(max(n_trees, 1)))))))


def parse_tree_bits(n_bits: Any, n_trees: int = 1, boosted: bool = False) -> tuple[int, int]:
    """``n_bits``: an int (input bits; leaves by ``default_leaf_bits``), or
    ``{"inputs": a, "leaves": b}``."""
    if isinstance(n_bits, (int, np.integer)) and not isinstance(n_bits, bool):
        n_in, n_leaf = int(n_bits), default_leaf_bits(n_trees, boosted)
    elif isinstance(n_bits, dict):
        aliases = {"inputs": "inputs", "op_inputs": "inputs", "leaves": "leaves", "op_leaves": "leaves"}
        unknown = set(n_bits) - set(aliases)
        if unknown:
            raise ValueError(f"n_bits: unknown keys {sorted(map(str, unknown))}; use 'inputs' and 'leaves'")
        got = {aliases[k]: v for k, v in n_bits.items()}
        n_in = int(got.get("inputs", DEFAULT_N_BITS))
        n_leaf = int(got.get("leaves", default_leaf_bits(n_trees, boosted)))
    else:
        raise ValueError(f"n_bits must be an int or a dict {{'inputs': int, 'leaves': int}}, got {n_bits!r}")
    if not 1 <= n_in <= 10:
        raise ValueError(f"n_bits: inputs need 1 to 10 bits (2^n − 1 encrypted bits per feature), got {n_in}")
    if not 2 <= n_leaf <= 16:
        raise ValueError(f"n_bits: leaves need 2 to 16 bits, got {n_leaf}")
    return n_in, n_leaf


def export_sklearn(model: Any) -> dict:
    """fhec's ensemble schema from a fitted scikit-learn tree or forest (its ``tree_`` arrays)."""
    if getattr(model, "n_outputs_", 1) != 1:
        raise ValueError("multi-output trees (y with several columns) are not supported")
    estimators = getattr(model, "estimators_", None)
    trees = [model] if estimators is None else list(estimators)
    classifier = hasattr(model, "classes_")
    n_classes = len(model.classes_) if classifier else 0
    n_outputs = 1 if not classifier or n_classes == 2 else n_classes
    out = []
    for est in trees:
        t = est.tree_
        nodes = []
        for i in range(t.node_count):
            left, right = int(t.children_left[i]), int(t.children_right[i])
            if left == -1:
                v = np.asarray(t.value[i, 0], dtype=np.float64)
                if classifier:
                    total = v.sum()
                    frac = v / total if total > 0 else np.full_like(v, 1.0 / len(v))
                    value = [float(frac[1])] if n_outputs == 1 else [float(x) for x in frac]
                else:
                    value = [float(v[0])]
                nodes.append({"kind": "leaf", "value": value})
            else:
                nodes.append({
                    "kind": "split",
                    "feature": int(t.feature[i]),
                    "threshold": float(t.threshold[i]),
                    "cmp": "le",
                    "left": left,
                    "right": right,
                    "missing_left": bool(t.missing_go_to_left[i]) if hasattr(t, "missing_go_to_left") else False,
                })
        out.append({"nodes": nodes})
    return {
        "n_features": int(model.n_features_in_),
        "n_outputs": n_outputs,
        "trees": out,
        "base_score": [0.0] * n_outputs,
        "aggregation": "sum" if estimators is None else "mean",
        "post": "proba" if classifier else "identity",
        "float": "f32",
    }


class _TreeModel(FheModel):
    def _check_bits(self) -> None:
        parse_tree_bits(self.n_bits)

    def _quantize(self, model: Any, X: np.ndarray) -> None:
        ensemble = self._export(model)
        n_in, n_leaf = parse_tree_bits(self.n_bits, len(ensemble["trees"]), ensemble["aggregation"] == "sum")
        try:
            q = trees_quantize(json.dumps(ensemble), np.ascontiguousarray(X, dtype=np.float64), n_in, n_leaf, "quantile")
        except FhecError as e:
            raise ValueError(str(e)) from e
        self._set_quantized(json.loads(q.to_json()), q)

    def _export(self, model: Any) -> dict:
        return export_sklearn(model)

    def _set_quantized(self, q: dict, model: Any = None) -> None:
        """``quantized_``: the quantised ensemble as plain data (the saved state); ``_model``: the Rust
        object that quantises, encodes, scores and compiles it."""
        self.quantized_ = q
        self._model = model if model is not None else QuantizedTrees.from_json(json.dumps(q))

    @classmethod
    def from_sklearn_model(cls, model: Any, X: Any, n_bits: Any = None) -> "FheModel":
        """Quantises an already trained estimator (for XGBoost and LightGBM also a raw ``Booster``);
        ``X`` calibrates the inputs."""
        booster_type = getattr(cls, "_booster_type", None)
        if booster_type is not None and isinstance(model, booster_type()):
            est = cls() if n_bits is None else cls(n_bits=n_bits)
            est._check_bits()
            est._adopt(_BoosterView(model, est), X)
            return est
        return super().from_sklearn_model(model, X, n_bits)

    def compile(
        self,
        X: Any = None,
        p_error: float | None = None,
        global_p_error: float | None = None,
        leaf_mode: str | None = None,
        partitions: bool = True,
        many_lut: bool | None = None,
        max_key_bytes: int | None = None,
    ) -> Circuit:
        """Builds the encrypted program (one lookup per leaf or sibling pair, docs/trees.md) and picks
        secure parameters. ``X`` is only checked. ``leaf_mode``: ``"fused"`` (tables with the leaf
        values), ``"indicator"`` (a 0/1 table per leaf, then a clear product) or ``"collect"`` (tables
        returning 1, summed per leaf value or digit, one small lookup per sum: less noise on the output);
        default: the mode the cost model prefers (the candidates within 1.5× of the fewest lookups are
        compiled). ``partitions`` (default on): let lookups of low precision or sensitivity run on
        parameters of their own where the cost model says it pays (docs/crypto.md, "Partitions");
        ``False``: one parameter set for every lookup. ``many_lut``: lookups on one input (a sibling
        pair's two leaves, a leaf's several outputs) in one blind rotation (docs/crypto.md,
        "Many-LUT"): ``None`` (default) where the cost model says it pays, ``True`` wherever
        possible, ``False`` never. ``max_key_bytes``: the most bytes of evaluation keys (as sent) the program may need; the fastest
        program within them is kept, or ``CompileError`` names the smallest keys found (docs/crypto.md,
        "Key budget"); default: the fastest, whatever its keys."""
        check_is_fitted(self, "quantized_")
        budget = _key_budget(max_key_bytes)
        if X is not None:
            validate_data(self, X, reset=False, dtype=np.float64)
        classes = json.dumps(np.asarray(self.classes_).tolist()) if hasattr(self, "classes_") else None
        c, report = self._model.compile(leaf_mode, p_error, global_p_error, classes, partitions, many_lut, budget)
        self.fhe_circuit = Circuit(c, True)
        self.compile_report_ = dict(report)
        self._compile_options = {
            "p_error": p_error,
            "global_p_error": global_p_error,
            "leaf_mode": leaf_mode,
            "partitions": partitions,
            "many_lut": many_lut,
            "max_key_bytes": budget,
        }
        return self.fhe_circuit

    def quantize_input(self, X: Any) -> np.ndarray:
        """Quantised features (the quantisers' levels)."""
        check_is_fitted(self, "quantized_")
        return quantize_rows(self._model, self._validate(X))

    def encode_input(self, X: Any) -> np.ndarray:
        """The thermometer bits the client encrypts, one row per sample."""
        return self._model.thermometer(self.quantize_input(X))

    def _encode(self, X: Any) -> np.ndarray:
        return self.encode_input(X)

    def _scores(self, X: Any, fhe: str) -> np.ndarray:
        if isinstance(X, Decrypted):
            return X.outputs
        check_mode(fhe)
        qx = self.quantize_input(X)
        if fhe == "disable":
            return self._model.scores(qx)
        return self._run(self._model.thermometer(qx), fhe)

    def _raw(self, X: Any, fhe: str) -> np.ndarray:
        s = self._scores(X, fhe)
        return self._model.dequantize(s)

    def _state(self) -> dict:
        return {"quantized_": self.quantized_}

    def _load_state(self, s: dict) -> None:
        self._set_quantized(s["quantized_"])


class _TreeRegressor(RegressorMixin, _TreeModel):
    def predict(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Predictions of the quantised model; ``fhe`` picks how the trees run."""
        return self._raw(X, fhe)[:, 0]


class _TreeClassifier(ClassifierMixin, _TreeModel):
    def predict_proba(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Class probabilities of the quantised model: a forest's mean of leaf class fractions, or
        the sigmoid / softmax of a boosted ensemble's margins."""
        return post_process(self._raw(X, fhe), self.quantized_["post"])

    def predict(self, X: Any, fhe: str = "disable") -> np.ndarray:
        """Class labels of the quantised model; ``fhe`` picks how the trees run."""
        p = self.predict_proba(X, fhe=fhe)
        return np.asarray(self.classes_)[p.argmax(axis=1)]


_DOC = "plus ``n_bits``: input bits per feature (default 6), or ``{'inputs': int, 'leaves': int}``"


def _make_tree(name: str, sk_class: type, base: type, summary: str) -> type:
    return _make(name, sk_class, base, summary, n_bits=DEFAULT_N_BITS, n_bits_doc=_DOC)


DecisionTreeClassifier = _make_tree(
    "DecisionTreeClassifier", sktree.DecisionTreeClassifier, _TreeClassifier, "Decision tree classifier."
)
DecisionTreeRegressor = _make_tree(
    "DecisionTreeRegressor", sktree.DecisionTreeRegressor, _TreeRegressor, "Decision tree regressor."
)
RandomForestClassifier = _make_tree(
    "RandomForestClassifier", skens.RandomForestClassifier, _TreeClassifier, "Random forest classifier."
)
RandomForestRegressor = _make_tree(
    "RandomForestRegressor", skens.RandomForestRegressor, _TreeRegressor, "Random forest regressor."
)
ExtraTreesClassifier = _make_tree(
    "ExtraTreesClassifier", skens.ExtraTreesClassifier, _TreeClassifier, "Extremely randomised trees classifier."
)
ExtraTreesRegressor = _make_tree(
    "ExtraTreesRegressor", skens.ExtraTreesRegressor, _TreeRegressor, "Extremely randomised trees regressor."
)

class _BoosterView:
    """A raw XGBoost/LightGBM ``Booster`` seen as a fitted estimator (features; classes 0 … C−1)."""

    def __init__(self, booster: Any, est: Any):
        self.booster = booster
        exported = est._export(self)
        self.n_features_in_ = int(exported["n_features"])
        if isinstance(est, ClassifierMixin):
            self.classes_ = np.arange(max(2, int(exported["n_outputs"])))


class _XGBExport:
    @staticmethod
    def _booster_type() -> type:
        import xgboost

        return xgboost.Booster

    def _export(self, model: Any) -> dict:
        booster = model.booster if isinstance(model, _BoosterView) else model.get_booster()
        raw = booster.save_raw("json")
        return json.loads(trees_import("xgboost", bytes(raw).decode()))


class _XGBClassifier(_XGBExport, _TreeClassifier):
    pass


class _XGBRegressor(_XGBExport, _TreeRegressor):
    pass


try:  # XGBoost is optional: the estimators exist when it is installed (use the xgboost-cpu package)
    import xgboost as _xgb

    XGBClassifier = _make_tree("XGBClassifier", _xgb.XGBClassifier, _XGBClassifier, "XGBoost classifier.")
    XGBRegressor = _make_tree("XGBRegressor", _xgb.XGBRegressor, _XGBRegressor, "XGBoost regressor.")
    _XGB: tuple = (XGBClassifier, XGBRegressor)
except ImportError:  # pragma: no cover - exercised where xgboost is absent
    _XGB = ()

class _LGBMExport:
    @staticmethod
    def _booster_type() -> type:
        import lightgbm

        return lightgbm.Booster

    def _export(self, model: Any) -> dict:
        booster = model.booster if isinstance(model, _BoosterView) else model.booster_
        return json.loads(trees_import("lightgbm", json.dumps(booster.dump_model())))


class _LGBMClassifier(_LGBMExport, _TreeClassifier):
    pass


class _LGBMRegressor(_LGBMExport, _TreeRegressor):
    pass


try:  # LightGBM is optional too
    import lightgbm as _lgb

    LGBMClassifier = _make_tree("LGBMClassifier", _lgb.LGBMClassifier, _LGBMClassifier, "LightGBM classifier.")
    LGBMRegressor = _make_tree("LGBMRegressor", _lgb.LGBMRegressor, _LGBMRegressor, "LightGBM regressor.")
    _LGBM: tuple = (LGBMClassifier, LGBMRegressor)
except ImportError:  # pragma: no cover
    _LGBM = ()

TREE_ESTIMATORS: dict[str, type] = {
    c.__name__: c
    for c in (
        DecisionTreeClassifier,
        DecisionTreeRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        *_XGB,
        *_LGBM,
    )
}
_linear._EXTRA.update(TREE_ESTIMATORS)
