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
    # the builder's lookups: blind rotations, and lanes of them where several read one input
    s = model.fhe_circuit.statistics
    assert report["lookups"] == s["pbs_count"] + s["lanes"], s
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


def test_pipeline_and_grid_search():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    grid = GridSearchCV(
        make_pipeline(StandardScaler(), fs.DecisionTreeClassifier(random_state=0)),
        {"decisiontreeclassifier__max_depth": [2, 3], "decisiontreeclassifier__n_bits": [3, 5]},
        cv=3,
    ).fit(X_BIN, Y_BIN)
    assert grid.best_score_ > 0.7
    best = grid.best_estimator_
    best[-1].compile()
    Xs = best[0].transform(X_BIN[:6])
    assert np.array_equal(best[-1].predict(Xs, fhe="execute"), best.predict(X_BIN[:6]))


@pytest.mark.skipif("XGBClassifier" not in fs.TREE_ESTIMATORS, reason="xgboost is not installed")
def test_from_a_raw_booster():
    import xgboost as xgb

    dtrain = xgb.DMatrix(X_BIN, label=Y_BIN)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, dtrain, num_boost_round=4)
    m = fs.XGBClassifier.from_sklearn_model(booster, X_BIN, n_bits=5)
    m.compile()
    p = m.predict_proba(X_BIN[:5], fhe="execute")
    assert np.array_equal(p, m.predict_proba(X_BIN[:5]))
    assert np.allclose(p[:, 1], booster.predict(xgb.DMatrix(X_BIN[:5])), atol=0.1)
    if "LGBMRegressor" in fs.TREE_ESTIMATORS:
        import lightgbm as lgb

        b = lgb.train({"objective": "regression", "num_leaves": 4, "verbose": -1}, lgb.Dataset(X_REG, Y_REG), 3)
        r = fs.LGBMRegressor.from_sklearn_model(b, X_REG, n_bits=5)
        r.compile()
        assert np.array_equal(r.predict(X_REG[:4], fhe="execute"), r.predict(X_REG[:4]))


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


def test_pickle_recompiles():
    import pickle

    model, X, _ = make("RandomForestClassifier")
    model.compile()
    twin = pickle.loads(pickle.dumps(model))
    assert twin.compile_report_ == model.compile_report_
    assert np.array_equal(twin.predict(X[:3], fhe="execute"), model.predict(X[:3]))


def test_partitions_keep_the_quantized_result(tmp_path):
    """``compile(partitions=True)`` predicts the quantised model's answers in simulation and the option
    survives dump/load; a fully grown tree reads 3-bit segments of its paths (docs/trees.md, "Deep
    trees"), so its lookups are of one precision and it keeps one parameter set."""
    model = fs.DecisionTreeClassifier(random_state=0).fit(X_BIN, Y_BIN)
    model.compile(X_BIN)
    assert model.compile_report_["max_depth"] > 7 and model.compile_report_["lookup_bits"] == 3
    one = model.fhe_circuit.statistics["parameters"]
    clear = model.predict(X_BIN[:40], fhe="disable")
    model.compile(X_BIN, partitions=True)
    assert model.fhe_circuit.statistics["parameters"] == one
    assert np.array_equal(model.predict(X_BIN[:40], fhe="simulate"), clear)
    path = tmp_path / "tree.json"
    model.dump(path)
    back = fs.load(path)
    assert back._compile_options["partitions"] is True
    assert np.array_equal(back.predict(X_BIN[:40], fhe="simulate"), clear)


def test_a_fully_grown_tree_runs_encrypted():
    """A tree deeper than one lookup can read (3-bit segments chained, docs/trees.md "Deep trees")
    runs encrypted and returns the quantised model's answers."""
    model = fs.DecisionTreeClassifier(random_state=0).fit(X_BIN, Y_BIN)
    model.compile(X_BIN)
    assert model.compile_report_["max_depth"] > 7
    rows = X_BIN[:3]
    assert np.array_equal(model.predict(rows, fhe="execute"), model.predict(rows, fhe="disable"))
    assert np.array_equal(model.predict_proba(rows, fhe="execute"), model.predict_proba(rows, fhe="disable"))


@pytest.mark.parametrize("leaf_mode", ["collect", "fused"])
def test_collect_mode_equals_fused_and_needs_less_noise(leaf_mode):
    """``collect`` (docs/trees.md, 5d) sums the leaf lookups per leaf value before one small lookup:
    the default for a fully grown tree (pure leaves, one non-zero value), whose decrypted output
    then carries one bootstrap's noise instead of one per leaf. Simulated and encrypted runs equal
    the quantised model in both modes, and the default needs no more key bytes than fused."""
    model = fs.DecisionTreeClassifier(random_state=0).fit(X_BIN, Y_BIN)
    model.compile(X_BIN)
    assert model.compile_report_["leaf_mode"] == "collect"
    default_keys = model.fhe_circuit.statistics["evaluation_key_bytes"]
    model.compile(X_BIN, leaf_mode=leaf_mode)
    assert model.compile_report_["leaf_mode"] == leaf_mode
    clear = model.predict_proba(X_BIN[:60], fhe="disable")
    assert np.array_equal(model.predict_proba(X_BIN[:60], fhe="simulate"), clear)
    assert np.array_equal(model.predict_proba(X_BIN[:2], fhe="execute"), clear[:2])
    assert model.fhe_circuit.statistics["evaluation_key_bytes"] >= default_keys
