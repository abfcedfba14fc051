"""fhec.sklearn trees: every estimator in every fhe mode (FHE == simulate == quantised clear, the
clear path == Rust's quantised scores), accuracy near the float model, the contract, errors, dump/load."""

import json
import warnings

import numpy as np
import pytest
import sklearn.tree as sktree
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError

import fhec
import fhec.sklearn as fs

X_BIN, Y_BIN = make_classification(n_samples=300, n_features=5, n_informative=3, random_state=4)
X_MULTI, Y_MULTI = make_classification(
    n_samples=300, n_features=5, n_informative=3, n_classes=3, n_clusters_per_class=1, random_state=5
)
X_REG, Y_REG = make_regression(n_samples=300, n_features=5, noise=5.0, random_state=6)

CASES = {
    "DecisionTreeClassifier": ({"max_depth": 3, "random_state": 0}, X_BIN, Y_BIN),
    "DecisionTreeClassifier-multi": ({"max_depth": 3, "random_state": 0}, X_MULTI, Y_MULTI),
    "DecisionTreeRegressor": ({"max_depth": 3, "random_state": 0}, X_REG, Y_REG),
    "RandomForestClassifier": ({"n_estimators": 4, "max_depth": 2, "random_state": 0}, X_BIN, Y_BIN),
    "RandomForestRegressor": ({"n_estimators": 3, "max_depth": 2, "random_state": 0}, X_REG, Y_REG),
    "ExtraTreesClassifier": ({"n_estimators": 3, "max_depth": 2, "random_state": 0}, X_MULTI, Y_MULTI),
}
if "XGBClassifier" in fs.TREE_ESTIMATORS:
    CASES["XGBClassifier"] = ({"n_estimators": 4, "max_depth": 2, "random_state": 0}, X_BIN, Y_BIN)
    CASES["XGBClassifier-multi"] = ({"n_estimators": 3, "max_depth": 2, "random_state": 0}, X_MULTI, Y_MULTI)
    CASES["XGBRegressor"] = ({"n_estimators": 4, "max_depth": 2, "random_state": 0}, X_REG, Y_REG)
if "LGBMClassifier" in fs.TREE_ESTIMATORS:
    CASES["LGBMClassifier"] = ({"n_estimators": 4, "num_leaves": 4, "random_state": 0, "verbose": -1}, X_BIN, Y_BIN)
    CASES["LGBMRegressor"] = ({"n_estimators": 3, "num_leaves": 4, "random_state": 0, "verbose": -1}, X_REG, Y_REG)
ROWS = 12


def make(key, n_bits=4):
    params, X, y = CASES[key]
    return fs.TREE_ESTIMATORS[key.split("-")[0]](**params, n_bits=n_bits).fit(X, y), X, y


@pytest.fixture(scope="module", params=sorted(CASES))
def compiled(request):
    model, X, y = make(request.param)
    model.compile(X)
    return request.param, model, X, y


def test_every_fhe_mode_gives_the_quantized_result(compiled):
    key, model, X, _ = compiled
    rows = X[:ROWS]
    clear = model.predict(rows)
    assert np.array_equal(model.predict(rows, fhe="simulate"), clear)
    assert np.array_equal(model.predict(rows, fhe="execute"), clear)
    if "Classifier" in key:
        assert np.array_equal(model.predict_proba(rows, fhe="execute"), model.predict_proba(rows))


def test_python_clear_path_equals_the_circuit_reference(compiled):
    _, model, X, _ = compiled
    bits = model.encode_input(X[:ROWS])
    clear = model._model.scores(model.quantize_input(X[:ROWS]))
    for i in range(ROWS):
        ref = model.fhe_circuit.eval_clear(bits[i : i + 1])
        assert np.array_equal(ref[0], clear[i])


def test_quantized_trees_stay_close_to_the_float_model(compiled):
    key, model, X, y = compiled
    if "Classifier" in key:
        assert abs(model.score(X, y) - model.sklearn_model_.score(X, y)) <= 0.05, key
    else:
        assert model.score(X, y) >= model.sklearn_model_.score(X, y) - 0.1, key
    report = model.compile_report_
    assert report["lookups"] == model.fhe_circuit.statistics["pbs_count"]
    assert report["input_bits"] == X.shape[1] * (2 ** 4 - 1)


def test_contract_and_errors():
    m = fs.RandomForestClassifier(n_estimators=3, n_bits={"inputs": 5, "leaves": 4})
    assert clone(m).get_params() == m.get_params()
    with pytest.raises(NotFittedError):
        m.predict(X_BIN)
    m.fit(X_BIN, Y_BIN)
    with pytest.raises(fs.NotCompiledError):
        m.predict(X_BIN, fhe="execute")
    with pytest.raises(ValueError, match="features"):
        m.predict(X_BIN[:, :3])
    bad = X_BIN[:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.predict(bad)
    with pytest.raises(ValueError, match="n_bits"):
        fs.DecisionTreeClassifier(n_bits=11).fit(X_BIN, Y_BIN)
    with pytest.raises(ValueError, match="multi-output"):
        fs.DecisionTreeRegressor().fit(X_REG, np.stack([Y_REG, Y_REG], axis=1))
    with pytest.raises(TypeError, match="expects a fitted sklearn DecisionTreeClassifier"):
        fs.DecisionTreeClassifier.from_sklearn_model(sktree.DecisionTreeRegressor().fit(X_REG, Y_REG), X_REG)
    sk = sktree.DecisionTreeClassifier(max_depth=2, random_state=0).fit(X_BIN, Y_BIN)
    ours = fs.DecisionTreeClassifier.from_sklearn_model(sk, X_BIN, n_bits=5)
    assert np.mean(ours.predict(X_BIN) == sk.predict(X_BIN)) > 0.9
    # a depth-0 tree (one leaf) is constant: nothing to run encrypted
    stump = fs.DecisionTreeRegressor(max_depth=1).fit(X_REG, np.zeros(len(X_REG)))
    with pytest.raises(fhec.CompileError, match="constant"):
        stump.compile()


@pytest.mark.skipif("XGBClassifier" not in fs.TREE_ESTIMATORS, reason="xgboost is not installed")
def test_xgboost_quantised_margins_follow_the_booster():
    import xgboost as xgb

    m = fs.XGBRegressor(n_estimators=20, max_depth=3, random_state=0, n_bits={"inputs": 8, "leaves": 12})
    m.fit(X_REG, Y_REG)
    # with fine quantisation the quantised model is close to the booster itself
    assert np.corrcoef(m.predict(X_REG), m.sklearn_model_.predict(X_REG))[0, 1] > 0.99
    assert isinstance(m.sklearn_model_, xgb.XGBRegressor)
    assert "n_estimators" in m.get_params() and "max_depth" in m.get_params()
    with pytest.raises(TypeError, match="expects a fitted sklearn XGBRegressor"):
        fs.XGBRegressor.from_sklearn_model(sktree.DecisionTreeRegressor().fit(X_REG, Y_REG), X_REG)


def test_dump_load_round_trip(tmp_path):
    model, X, _ = make("RandomForestClassifier")
    model.compile()
    path = tmp_path / "rf.json"
    model.dump(path)
    back = fs.load(path)
    assert type(back) is type(model) and back.fhe_circuit is not None
    assert np.array_equal(back.predict(X[:5], fhe="execute"), model.predict(X[:5]))
    d = json.loads(model.dumps())
    d["state"]["quantized_"]["trees"][0]["nodes"][0]["left"] = 999
    with pytest.raises(fhec.FhecError):
        fs.loads(json.dumps(d)).compile()
