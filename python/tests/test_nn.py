"""fhec.sklearn NeuralNetClassifier / NeuralNetRegressor: trained in numpy with the program's semantics
(quantisation-aware), exact in every fhe mode and on every input the program accepts (the numpy integer
network == the IR's clear interpreter == simulation == encrypted run), accumulators within
n_accum_bits, the scikit-learn contract, determinism, dump/load, the client/server split."""

import json
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fhec
import fhec.sklearn as fs
from fhec.sklearn._nn import _int_forward

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
XTR, XTE, YTR, YTE = train_test_split(X_IRIS, Y_IRIS, test_size=0.25, random_state=42)
X_REG, Y_REG = make_regression(n_samples=300, n_features=4, noise=3.0, random_state=6)

# small and quick: 4 → 8 → 3, 3-bit weights and activations, 7-bit accumulators rounded to 4 bits
pytestmark = pytest.mark.filterwarnings("ignore::fhec.sklearn.InputRangeWarning")

SMALL = dict(n_layers=2, n_hidden_neurons_multiplier=2, n_w_bits=3, n_a_bits=3, n_accum_bits=7,
             rounding_threshold_bits=4, max_epochs=60, lr=0.01, batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def clf():
    m = fs.NeuralNetClassifier(**SMALL).fit(XTR, YTR)
    m.compile(XTR)
    return m


@pytest.fixture(scope="module")
def reg():
    m = fs.NeuralNetRegressor(**{**SMALL, "n_layers": 3, "n_w_bits": 4, "n_a_bits": 4, "n_accum_bits": 8}).fit(X_REG, Y_REG)
    m.compile()
    return m


def test_the_classifier_learns_and_every_fhe_mode_agrees(clf):
    assert clf.score(XTE, YTE) >= 0.85
    clear = clf.predict_proba(XTE)
    assert np.array_equal(clf.predict_proba(XTE, fhe="simulate"), clear)
    rows = XTE[:4]
    assert np.array_equal(clf.predict_proba(rows, fhe="execute"), clf.predict_proba(rows))
    assert np.array_equal(clf.predict(rows, fhe="execute"), clf.predict(rows))


def _corner_integers(m, rng: np.random.Generator) -> np.ndarray:
    """Random client integers of the whole input range, the all-lowest, all-highest and alternating rows."""
    n = m.network_["input"]["n_bits"]
    d = m.n_features_in_
    q = rng.integers(0, 2**n, size=(40, d))
    q[0], q[1] = 0, 2**n - 1
    q[2] = np.where(np.arange(d) % 2, 2**n - 1, 0)
    return q


def _assert_interpreter_on(m, q: np.ndarray) -> None:
    """The numpy integer network == the IR's clear interpreter == the simulation, row by row."""
    ours = _int_forward(m.network_, q)
    for i in range(len(q)):
        assert np.array_equal(np.asarray(m.fhe_circuit.eval_clear(q[i : i + 1])).reshape(-1), ours[i])
    sim = np.concatenate([np.asarray(o).reshape(1, -1) for o in m.fhe_circuit.simulate_batch([q[i : i + 1] for i in range(len(q))])])
    assert np.array_equal(sim, ours)


def test_the_integer_network_is_the_interpreter_on_every_input(clf, reg):
    """Not only the data: random and corner integers of the whole input range."""
    rng = np.random.default_rng(1)
    for m in (clf, reg):
        _assert_interpreter_on(m, _corner_integers(m, rng))


def test_accumulators_stay_within_n_accum_bits(clf):
    report = clf.bitwidth_report()
    assert clf.accumulator_bits_ and max(clf.accumulator_bits_) <= 7
    lookups = [r for r in report if r["kind"] == "lookup"]
    assert lookups and all(r["bits"] <= 4 for r in lookups)
    stats = clf.fhe_circuit.statistics
    assert max(stats["pbs_by_precision"]) <= 4
    # unbounded accumulators are wider, and the rounding drops more bits
    wide = fs.NeuralNetClassifier(**{**SMALL, "n_accum_bits": None, "n_w_bits": 5, "max_epochs": 5}).fit(XTR, YTR)
    assert max(wide.accumulator_bits_) > 7
    bounded = fs.NeuralNetClassifier(**{**SMALL, "n_w_bits": 5, "max_epochs": 5}).fit(XTR, YTR)
    assert max(bounded.accumulator_bits_) <= 7


def test_per_layer_accumulator_bounds():
    """One bound per dense layer: the output layer's accumulators are decrypted, not rounded, so its
    bound may be wider (no lookup pays for it), and it is kept without the rounding's half step."""
    from fhec import _qat

    assert _qat.budget(8, 4, 4) == (127 - 8) // 4 and _qat.budget(8, None, 4) == 127 // 4
    m = fs.NeuralNetClassifier(**{**SMALL, "n_w_bits": 5, "n_accum_bits": [6, 10], "max_epochs": 20}).fit(XTR, YTR)
    hidden, out = m.accumulator_bits_
    assert hidden <= 6 < out <= 10
    same = fs.NeuralNetClassifier(**{**SMALL, "n_w_bits": 5, "n_accum_bits": 6, "max_epochs": 20}).fit(XTR, YTR)
    assert max(same.accumulator_bits_) <= 6
    assert clone(m).get_params()["n_accum_bits"] == [6, 10]
    m.compile()
    assert np.array_equal(m.predict_proba(XTE, fhe="simulate"), m.predict_proba(XTE))
    assert np.array_equal(m.predict_proba(XTE[:2], fhe="execute"), m.predict_proba(XTE[:2]))
    q = _corner_integers(m, np.random.default_rng(2))
    _assert_interpreter_on(m, q)
    # the worst-case corner rows run encrypted too: the wider output accumulator decrypts exactly
    enc = m.fhe_circuit.run_batch([[q[i : i + 1]] for i in range(3)])
    assert np.array_equal(np.concatenate([np.asarray(o).reshape(1, -1) for o in enc]), _int_forward(m.network_, q[:3]))


def test_the_kept_weights_are_the_steps_average():
    """ema_decay: the network keeps the moving average of the steps' weights, not the last step's."""
    def weights(m):
        return [layer["weights"] for layer in m.network_["layers"]]

    start = fs.NeuralNetClassifier(**{**SMALL, "max_epochs": 0}).fit(XTR, YTR)
    still = fs.NeuralNetClassifier(**{**SMALL, "max_epochs": 3, "ema_decay": 1 - 1e-12}).fit(XTR, YTR)
    last = fs.NeuralNetClassifier(**{**SMALL, "max_epochs": 3, "ema_decay": 0}).fit(XTR, YTR)
    averaged = fs.NeuralNetClassifier(**{**SMALL, "max_epochs": 3}).fit(XTR, YTR)
    assert weights(still) == weights(start) != weights(last)
    assert weights(averaged) not in (weights(start), weights(last))


def test_the_regressor(reg):
    assert reg.score(X_REG, Y_REG) > 0.85
    clear = reg.predict(X_REG[:30])
    assert clear.shape == (30,)
    assert np.array_equal(reg.predict(X_REG[:30], fhe="simulate"), clear)
    assert np.array_equal(reg.predict(X_REG[:3], fhe="execute"), clear[:3])


def test_client_server_split(clf):
    enc = clf.encrypt(XTE[:3])
    server = fhec.Server(clf.fhe_circuit.program_bytes(), clf.client().evaluation_keys())
    out = clf.decrypt(server.run(enc))
    assert np.array_equal(clf.predict(out), clf.predict(XTE[:3]))


def test_model_files_predict_labels(clf, tmp_path):
    from fhec.deploy import ModelClient, ModelDev, ModelServer

    named = fs.NeuralNetClassifier(**{**SMALL, "max_epochs": 20}).fit(XTR, np.array(["a", "b", "c"])[YTR])
    named.compile()
    ModelDev(tmp_path, named).save()
    client, server = ModelClient(tmp_path), ModelServer(tmp_path)
    out = server.run(client.quantize_encrypt_serialize(XTE[:3]), client.get_serialized_evaluation_keys())
    assert list(client.predict(out)) == list(named.predict(XTE[:3]))
    assert np.allclose(client.deserialize_decrypt_dequantize(out), named.predict_proba(XTE[:3]))


def test_training_is_deterministic_and_params_follow_the_incumbent():
    a = fs.NeuralNetClassifier(**{**SMALL, "max_epochs": 5}).fit(XTR, YTR)
    b = fs.NeuralNetClassifier(**{**SMALL, "max_epochs": 5}).fit(XTR, YTR)
    assert a.network_ == b.network_
    c = fs.NeuralNetClassifier(**{**SMALL, "max_epochs": 5, "random_state": 1}).fit(XTR, YTR)
    assert c.network_ != a.network_
    m = fs.NeuralNetClassifier(module__n_layers=2, module__n_w_bits=4, module__activation_function="tanh")
    assert m.n_layers == 2 and m.n_w_bits == 4 and m.activation_function == "tanh"
    m.set_params(module__n_a_bits=2, max_epochs=3)
    assert m.n_a_bits == 2 and m.max_epochs == 3
    assert clone(m).get_params() == m.get_params()
    m.fit(XTR, YTR)
    assert len(m.loss_curve_) == 3 and m.network_["layers"][0]["lookup"] is not None


def test_fit_benchmark_and_from_sklearn_model():
    m, ref = fs.NeuralNetClassifier(**{**SMALL, "max_epochs": 100}).fit_benchmark(XTR, YTR)
    assert m.network_ and ref.score(XTE, YTE) > 0.8
    with pytest.raises(TypeError, match="compile_torch_model"):
        fs.NeuralNetClassifier.from_sklearn_model(ref, XTR)


def test_pipeline_and_grid_search():
    grid = GridSearchCV(
        make_pipeline(StandardScaler(), fs.NeuralNetClassifier(**{**SMALL, "max_epochs": 20})),
        {"neuralnetclassifier__n_accum_bits": [6, 8]},
        cv=3,
    ).fit(XTR, YTR)
    assert grid.best_score_ > 0.7
    best = grid.best_estimator_
    best[-1].compile()
    Xs = best[0].transform(XTE[:3])
    assert np.array_equal(best[-1].predict(Xs, fhe="execute"), best.predict(XTE[:3]))


def test_dump_load_and_pickle(clf, tmp_path):
    path = tmp_path / "nn.json"
    clf.dump(path)
    back = fs.load(path)
    assert type(back) is fs.NeuralNetClassifier and back.fhe_circuit is not None
    assert np.array_equal(back.predict_proba(XTE), clf.predict_proba(XTE))
    assert np.array_equal(back.predict(XTE[:2], fhe="execute"), clf.predict(XTE[:2]))
    twin = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(twin.predict(XTE, fhe="simulate"), clf.predict(XTE))
    d = json.loads(clf.dumps())
    d["state"]["network_"]["layers"][0]["weights"][0].append(1)
    with pytest.raises(fhec.FhecError, match="weight row 0"):
        fs.loads(json.dumps(d))


def test_options_and_errors():
    with pytest.raises(NotFittedError):
        fs.NeuralNetClassifier().predict(XTE)
    with pytest.raises(TypeError, match="unexpected keyword argument 'hidden'"):
        fs.NeuralNetClassifier(hidden=3)
    for bad, match in [
        ({"n_w_bits": 1}, "n_w_bits"),
        ({"activation_function": "swish2"}, "activation_function"),
        ({"n_accum_bits": 3}, "no room for one weight"),
        ({"n_accum_bits": [7]}, "one bound per dense layer expected \\(3\\), got 1"),
        ({"n_accum_bits": [7, "9", 8]}, "n_accum_bits\\[1\\]"),
        ({"n_accum_bits": [3, 9, 9]}, "n_accum_bits\\[0\\]=3 leaves no room"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"ema_decay": -0.1}, "ema_decay"),
        ({"lr": 0}, "lr"),
        ({"input_range": "global"}, "input_range"),
    ]:
        with pytest.raises(ValueError, match=match):
            fs.NeuralNetClassifier(**bad).fit(XTR, YTR)
    with pytest.raises(ValueError, match="two classes"):
        fs.NeuralNetClassifier(max_epochs=1).fit(XTR, np.zeros(len(XTR)))
    m = fs.NeuralNetClassifier(**{**SMALL, "max_epochs": 2}).fit(XTR, YTR)
    with pytest.raises(fs.NotCompiledError):
        m.predict(XTE, fhe="execute")
    with pytest.raises(ValueError, match="features"):
        m.predict(XTE[:, :2])
    with pytest.warns(fs.InputRangeWarning):
        m.predict(XTE * 10)


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "gelu", "leaky_relu"])
def test_other_activations_are_exact(act):
    m = fs.NeuralNetClassifier(**{**SMALL, "activation_function": act, "max_epochs": 30}).fit(XTR, YTR)
    assert m.score(XTE, YTE) > 0.6
    q = m.quantize_input(XTE)
    ours = _int_forward(m.network_, q)
    net = fhec._fhec.mlp_network(json.dumps(m.network_))
    circuit = fhec.Circuit(net.compile(None, None, True), True)
    for i in range(5):
        assert np.array_equal(np.asarray(circuit.eval_clear(q[i : i + 1])).reshape(-1), ours[i])


def test_degenerate_integer_networks_compile():
    """Descriptions at the edges of the integer network's typing: a lookup whose input is always 0 (a
    zero weight on a signed input), an accumulator far narrower than its type before a rounding, and
    nonnegative values times nonnegative weights (an unsigned product). Found by review: the first
    panicked in the lowering, the others were refused by the IR."""
    import json

    from fhec import _fhec

    def spec(weights, lookup, offset, n_bits=2, last=None):
        layers = [{"kind": "dense", "weights": weights, "lookup": lookup}]
        if last is not None:
            layers.append({"kind": "dense", "weights": last})
        outs = len(layers[-1]["weights"])
        return json.dumps({"input": {"n_bits": n_bits, "lo": [0.0] * len(weights[0]), "scale": [1.0] * len(weights[0])},
                           "input_offset": offset, "layers": layers,
                           "output": {"scale": [1.0] * outs, "offset": [0.0] * outs}, "post": "identity"})

    zero = _fhec.mlp_network(spec([[0]], {"lsbs": 0, "table_lo": -1, "tables": [[1, 2]]}, offset=1))
    assert zero.compile(None, None, True) is not None
    # 3-bit inputs centred (−4..3), weights 4 and 5: −36..27 in 7 bits, rounded by 3 bits to −4..3
    narrow = _fhec.mlp_network(spec([[4, 5]], {"lsbs": 3, "table_lo": -4, "tables": [[0, 1, 2, 3, 3, 2, 1, 0]]},
                                    offset=4, n_bits=3, last=[[1]]))
    assert narrow.compile(None, None, True) is not None
    # a lookup onto 0..3, then weights ≥ 0
    unsigned = _fhec.mlp_network(spec([[1, -1]], {"lsbs": 0, "table_lo": -3, "tables": [[0, 0, 1, 1, 2, 3, 3]]},
                                      offset=2, last=[[1], [2]]))
    assert unsigned.compile(None, None, True) is not None
