"""fhec.sklearn: every linear estimator in every fhe mode, the scikit-learn contract, errors, dump/load.

Encrypted runs use real keys and secure parameters; linear models need no evaluation keys, so key
generation is instantaneous and every test can afford it.
"""

import io
import json
import warnings

import numpy as np
import pytest
import sklearn.linear_model as sklm
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fhec
import fhec.sklearn as fs

RNG = np.random.default_rng(7)

X_REG, Y_REG = make_regression(n_samples=240, n_features=6, noise=10.0, random_state=1)
X_BIN, Y_BIN = make_classification(n_samples=240, n_features=6, n_informative=4, random_state=2)
X_MULTI, Y_MULTI = make_classification(
    n_samples=300, n_features=6, n_informative=4, n_classes=3, n_clusters_per_class=1, random_state=3
)
# positive targets for the GLMs (log link)
Y_POS = np.exp((X_REG @ np.array([0.3, -0.2, 0.1, 0.0, 0.25, -0.1])) / 3.0) + 0.1

REGRESSORS = {
    "LinearRegression": ({}, X_REG, Y_REG),
    "Ridge": ({"alpha": 0.5}, X_REG, Y_REG),
    "Lasso": ({"alpha": 0.1}, X_REG, Y_REG),
    "ElasticNet": ({"alpha": 0.1, "l1_ratio": 0.5}, X_REG, Y_REG),
    "SGDRegressor": ({"random_state": 0, "max_iter": 2000}, X_REG, Y_REG),
    "LinearSVR": ({"random_state": 0, "max_iter": 5000, "C": 10.0}, X_REG, Y_REG),
    "PoissonRegressor": ({}, X_REG, Y_POS),
    "GammaRegressor": ({}, X_REG, Y_POS),
    "TweedieRegressor": ({"power": 1.5}, X_REG, Y_POS),
}
CLASSIFIERS = {
    "LogisticRegression": ({}, X_BIN, Y_BIN),
    "LogisticRegression-multi": ({}, X_MULTI, Y_MULTI),
    "SGDClassifier": ({"random_state": 0, "loss": "log_loss"}, X_BIN, Y_BIN),
    "SGDClassifier-multi": ({"random_state": 0, "loss": "modified_huber"}, X_MULTI, Y_MULTI),
    "LinearSVC": ({"random_state": 0}, X_BIN, Y_BIN),
    "LinearSVC-multi": ({"random_state": 0}, X_MULTI, Y_MULTI),
}
ALL = {**REGRESSORS, **CLASSIFIERS}
EXECUTED_ROWS = 24


def make(key):
    params, X, y = ALL[key]
    cls = fs.ESTIMATORS[key.split("-")[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the float training
        model = cls(**params).fit(X, y)
    return model, X, y


@pytest.fixture(scope="module", params=sorted(ALL))
def compiled(request):
    model, X, y = make(request.param)
    model.compile(X)
    return request.param, model, X, y


def test_every_fhe_mode_gives_the_quantized_result(compiled):
    key, model, X, _ = compiled
    rows = X[:EXECUTED_ROWS]
    clear = model.predict(rows, fhe="disable")
    assert np.array_equal(model.predict(rows, fhe="simulate"), clear)
    assert np.array_equal(model.predict(rows, fhe="execute"), clear)
    if key in CLASSIFIERS:
        d = model.decision_function(rows)
        assert np.array_equal(model.decision_function(rows, fhe="execute"), d)
        if hasattr(model, "predict_proba") and "LinearSVC" not in key:
            assert np.array_equal(model.predict_proba(rows, fhe="execute"), model.predict_proba(rows))


def test_the_quantized_accumulator_is_what_the_circuit_computes(compiled):
    _, model, X, _ = compiled
    q = model.quantize_input(X[:EXECUTED_ROWS])
    want = model.quantized_.accumulate(q)
    got = np.concatenate(model.fhe_circuit.run_batch([q[i : i + 1] for i in range(q.shape[0])]))
    assert np.array_equal(got, want)
    assert np.array_equal(np.concatenate(model.fhe_circuit.simulate_batch([q[i : i + 1] for i in range(len(q))])), want)


def test_quantized_model_is_close_to_the_float_model(compiled):
    key, model, X, y = compiled
    fp = model.sklearn_model_
    if key in CLASSIFIERS:
        assert abs(model.score(X, y) - fp.score(X, y)) <= 0.03, key
    else:
        pf, pq = fp.predict(X), model.predict(X)
        assert np.max(np.abs(pf - pq)) <= 0.02 * (np.max(np.abs(pf)) + 1e-9) + 1e-6, key


def test_statistics_of_a_linear_circuit(compiled):
    _, model, _, _ = compiled
    st = model.fhe_circuit.statistics
    assert st["pbs_count"] == 0
    assert st["evaluation_key_bytes"] == 0
    assert st["log2_p_error_per_lookup"] <= -40


def test_predict_proba_matches_sklearn_formulas():
    model, X, _ = make("LogisticRegression-multi")
    d = model.decision_function(X[:10])
    p = model.predict_proba(X[:10])
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.array_equal(p.argmax(axis=1), d.argmax(axis=1))
    svc, X2, _ = make("LinearSVC")
    assert not hasattr(svc, "predict_proba") or pytest.raises(AttributeError, svc.predict_proba, X2)
    sgd = fs.SGDClassifier(loss="hinge", random_state=0).fit(X_BIN, Y_BIN)
    with pytest.raises(AttributeError, match="loss='hinge'"):
        sgd.predict_proba(X_BIN[:3])


def test_multi_output_ridge():
    Y = np.stack([Y_REG, -0.5 * Y_REG + 3], axis=1)
    model = fs.Ridge(alpha=1.0).fit(X_REG, Y)
    model.compile()
    out = model.predict(X_REG[:6], fhe="execute")
    assert out.shape == (6, 2)
    assert np.array_equal(out, model.predict(X_REG[:6]))


def test_n_bits_dict_and_accuracy_grows_with_bits():
    errs = []
    for bits in (3, 6, 10):
        m = fs.LinearRegression(n_bits={"inputs": bits, "weights": bits}).fit(X_REG, Y_REG)
        errs.append(np.abs(m.predict(X_REG) - m.sklearn_model_.predict(X_REG)).mean())
    assert errs[0] > errs[1] > errs[2]
    m = fs.LinearRegression(n_bits={"op_inputs": 5, "op_weights": 4}).fit(X_REG, Y_REG)
    assert m.quantized_.inputs.n_bits == 5 and m.quantized_.weight_bits == 4


def test_five_bit_linear_models_stay_within_a_point_of_fp32():
    """At n_bits=5 every linear row keeps r² (regressions) or accuracy (classifiers) within 1 point of
    the float model on held-out data: the weights use all 2^5 levels of each output's range (a one-signed
    regression keeps every level; symmetric weights lost 1.5 points here)."""
    from sklearn.datasets import make_classification, make_regression
    from sklearn.metrics import r2_score
    from sklearn.model_selection import train_test_split

    for seed in range(3):
        X, y = make_regression(n_samples=1000, n_features=10, noise=10, random_state=seed)
        Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
        for cls in (fs.LinearRegression, fs.Ridge):
            m = cls(n_bits=5).fit(Xtr, ytr)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fs.InputRangeWarning)
                loss = r2_score(yte, m.sklearn_model_.predict(Xte)) - r2_score(yte, m.predict(Xte))
            assert loss <= 0.01, (cls.__name__, seed, loss)
        X, y = make_classification(n_samples=1000, n_features=10, random_state=seed)
        Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
        m = fs.LogisticRegression(n_bits=5).fit(Xtr, ytr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fs.InputRangeWarning)
            loss = m.sklearn_model_.score(Xte, yte) - m.score(Xte, yte)
        assert loss <= 0.01, ("LogisticRegression", seed, loss)


# -- the scikit-learn contract ---------------------------------------------------------------


def test_clone_and_params():
    m = fs.LogisticRegression(C=0.5, n_bits=6)
    c = clone(m)
    assert c.get_params() == m.get_params()
    assert c.get_params()["n_bits"] == 6 and c.get_params()["C"] == 0.5
    c.set_params(C=2.0, n_bits={"inputs": 4, "weights": 5})
    assert c.C == 2.0 and c.n_bits == {"inputs": 4, "weights": 5}
    # the constructor takes the scikit-learn estimator's parameters
    assert set(sklm.LogisticRegression().get_params()) | {"n_bits"} == set(m.get_params())
    with pytest.raises(TypeError, match="unexpected keyword"):
        fs.Ridge(alpha=1.0, not_a_parameter=3)
    assert "LogisticRegression(C=0.5, n_bits=6)" in repr(m)


@pytest.mark.filterwarnings("ignore::fhec.sklearn.InputRangeWarning")  # validation folds go beyond the training range
def test_pipeline_and_grid_search():
    pipe = make_pipeline(StandardScaler(), fs.LogisticRegression(n_bits=6))
    grid = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0], "logisticregression__n_bits": [4, 8]}, cv=3)
    grid.fit(X_BIN, Y_BIN)
    assert grid.best_score_ > 0.7
    best = grid.best_estimator_
    est = best[-1]
    est.compile()
    Xs = best[0].transform(X_BIN[:8])
    assert np.array_equal(est.predict(Xs, fhe="execute"), best.predict(X_BIN[:8]))


def test_from_sklearn_model_and_fit_benchmark():
    sk = sklm.Ridge(alpha=0.3).fit(X_REG, Y_REG)
    m = fs.Ridge.from_sklearn_model(sk, X_REG, n_bits=7)
    assert m.alpha == 0.3 and m.n_bits == 7
    ours, float_model = fs.Ridge(alpha=0.3, n_bits=7).fit_benchmark(X_REG, Y_REG)
    assert np.array_equal(ours.predict(X_REG), m.predict(X_REG))
    assert np.allclose(float_model.coef_, sk.coef_)
    with pytest.raises(TypeError, match="expects a fitted sklearn Ridge"):
        fs.Ridge.from_sklearn_model(sklm.Lasso().fit(X_REG, Y_REG), X_REG)
    with pytest.raises(NotFittedError):
        fs.Ridge.from_sklearn_model(sklm.Ridge(), X_REG)


# -- bad input --------------------------------------------------------------------------------


def test_errors_are_clear_exceptions():
    with pytest.raises(NotFittedError):
        fs.LinearRegression().predict(X_REG)
    m = fs.LinearRegression().fit(X_REG, Y_REG)
    with pytest.raises(fs.NotCompiledError, match="compile"):
        m.predict(X_REG, fhe="execute")
    with pytest.raises(ValueError, match="fhe must be one of"):
        m.predict(X_REG, fhe="encrypted")
    with pytest.raises(ValueError, match="features"):
        m.predict(X_REG[:, :4])
    bad = X_REG[:3].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.predict(bad)
    with pytest.raises(ValueError, match="NaN"):
        m.predict(bad.tolist())
    with pytest.raises(ValueError):
        m.predict(np.array([["a"] * 6]))
    with pytest.raises(ValueError, match="n_bits"):
        fs.LinearRegression(n_bits=0).fit(X_REG, Y_REG)
    with pytest.raises(ValueError, match="n_bits"):
        fs.LinearRegression(n_bits={"inputs": 4}).fit(X_REG, Y_REG)
    with pytest.raises(fhec.CompileError, match="lower n_bits"):
        wide = np.tile(X_REG, (1, 40))
        fs.LinearRegression(n_bits=16).fit(wide, Y_REG).compile()


def test_out_of_range_inputs_are_clipped_with_a_warning():
    m = fs.LinearRegression(n_bits=6).fit(X_REG, Y_REG)
    m.compile()
    far = X_REG[:2] * 100
    with pytest.warns(fs.InputRangeWarning, match="outside the range"):
        got = m.predict(far, fhe="execute")
    lo = X_REG.min(axis=0)
    hi = X_REG.max(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(got, m.predict(np.clip(far, lo, hi)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", fs.InputRangeWarning)
        with pytest.raises(fs.InputRangeWarning):
            m.predict(far)


# -- persistence -------------------------------------------------------------------------------


def test_dump_load_round_trip(tmp_path):
    for key in ("LogisticRegression-multi", "TweedieRegressor", "LinearSVC"):
        model, X, _ = make(key)
        model.compile(X)
        path = tmp_path / f"{key}.json"
        model.dump(path)
        back = fs.load(path)
        assert type(back) is type(model)
        assert back.get_params() == model.get_params()
        assert back.fhe_circuit is not None
        assert np.array_equal(back.predict(X[:10], fhe="execute"), model.predict(X[:10]))
        buf = io.StringIO()
        model.dump(buf)
        assert np.array_equal(fs.loads(buf.getvalue()).predict(X), model.predict(X))
    # an uncompiled model stays uncompiled
    m = fs.Lasso(alpha=0.2).fit(X_REG, Y_REG)
    back = fs.loads(m.dumps())
    assert back.fhe_circuit is None and np.array_equal(back.predict(X_REG), m.predict(X_REG))


def test_load_rejects_what_is_not_a_model(tmp_path):
    with pytest.raises(fhec.FhecError, match="not an fhec model"):
        fs.loads("{ nope")
    with pytest.raises(fhec.FhecError, match="not an fhec model"):
        fs.loads(json.dumps({"hello": 1}))
    m = fs.Ridge().fit(X_REG, Y_REG)
    d = m.dump_dict()
    d["version"] = 99
    with pytest.raises(fhec.FhecError, match="version"):
        fs.loads(json.dumps(d))
    d = m.dump_dict()
    d["class"] = "RandomThing"
    with pytest.raises(fhec.FhecError, match="unknown estimator"):
        fs.loads(json.dumps(d))
    d = m.dump_dict()
    del d["state"]["quantized_"]["weights"]
    with pytest.raises(fhec.FhecError, match="damaged"):
        fs.loads(json.dumps(d))
    with pytest.raises(NotFittedError):
        fs.Ridge().dumps()


def test_pickle_and_deepcopy_recompile():
    import copy
    import pickle

    model, X, _ = make("LogisticRegression-multi")
    back = pickle.loads(pickle.dumps(model))  # not compiled: stays so
    assert back.fhe_circuit is None and np.array_equal(back.predict(X[:5]), model.predict(X[:5]))
    model.compile()
    for twin in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert twin.fhe_circuit is not None
        assert np.array_equal(twin.predict(X[:5], fhe="execute"), model.predict(X[:5]))
