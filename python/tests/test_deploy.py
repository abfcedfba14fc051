"""fhec.deploy: a compiled model as a server file and a client file; a client with its own keys (kept
in a key directory), a server with evaluation keys only; every prediction equals the model's own."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression

import fhec
from fhec.deploy import ModelClient, ModelDev, ModelServer
from fhec.sklearn import DecisionTreeClassifier, LinearRegression, LogisticRegression

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "deploy"


@pytest.fixture(scope="module")
def classification():
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, random_state=3)
    return X, y


def deploy_round_trip(tmp_path, model, X):
    """Saves the model, then runs X through a client and a server made from the files alone."""
    server_path, client_path = ModelDev(tmp_path / "out", model, name="m").save()
    assert server_path.name == "m.server.fhec" and client_path.name == "m.client.fhec"
    client = ModelClient(tmp_path / "out", key_dir=tmp_path / "keys")
    server = ModelServer(tmp_path / "out")
    assert client.fingerprint == server.fingerprint
    result = server.run(client.quantize_encrypt_serialize(X), client.evaluation_keys())
    return client, server, result


def test_logistic_regression_deployed_predicts_what_the_model_predicts(tmp_path, classification):
    X, y = classification
    model = LogisticRegression().fit(X[:200], y[:200])
    model.compile(X[:200])
    X_test = X[200:230]
    client, _, result = deploy_round_trip(tmp_path, model, X_test)
    assert client.kind == "LogisticRegression" and client.name == "m"
    np.testing.assert_array_equal(client.predict(result), model.predict(X_test, fhe="simulate"))
    np.testing.assert_array_equal(client.deserialize_decrypt_dequantize(result), model.predict_proba(X_test, fhe="simulate"))
    np.testing.assert_array_equal(client.classes_, model.classes_)
    ints = client.deserialize_decrypt(result)
    assert ints.dtype == np.int64 and ints.shape[0] == len(X_test)


def test_a_tree_ensemble_deployed_predicts_what_the_model_predicts(tmp_path, classification):
    X, y = classification
    model = DecisionTreeClassifier(max_depth=3, n_bits=4).fit(X[:200], y[:200])
    model.compile(X[:200])
    X_test = X[200:206]
    client, _, result = deploy_round_trip(tmp_path, model, X_test)
    np.testing.assert_array_equal(client.predict(result), model.predict(X_test, fhe="simulate"))
    np.testing.assert_array_equal(client.deserialize_decrypt_dequantize(result), model.predict_proba(X_test, fhe="simulate"))


def test_a_regressor_deployed_predicts_what_the_model_predicts(tmp_path):
    X, y = make_regression(n_samples=200, n_features=5, noise=0.1, random_state=1)
    model = LinearRegression().fit(X, y)
    model.compile(X)
    client, _, result = deploy_round_trip(tmp_path, model, X[:20])
    np.testing.assert_array_equal(client.predict(result), model.predict(X[:20], fhe="simulate"))


def test_secret_keys_persist_privately_and_old_results_still_decrypt(tmp_path, classification):
    X, y = classification
    model = LogisticRegression().fit(X, y)
    model.compile(X)
    client, server, result = deploy_round_trip(tmp_path, model, X[:5])
    files = list((tmp_path / "keys").iterdir())
    assert len(files) == 1 and files[0].name == f"m-{client.fingerprint:016x}.secret.keys"
    assert stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600
    # no temporary file left behind
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.client.fhec", "m.server.fhec"]
    again = ModelClient(tmp_path / "out", key_dir=tmp_path / "keys")
    assert again.key_id == client.key_id
    np.testing.assert_array_equal(again.predict(result), client.predict(result))
    # new keys on request: the old results no longer decrypt under them
    again.keygen(force=True)
    assert again.key_id != client.key_id
    with pytest.raises(fhec.KeyMismatchError):
        again.predict(result)


def test_the_server_side_holds_no_secret(tmp_path, classification):
    X, y = classification
    model = LogisticRegression().fit(X, y)
    model.compile(X)
    ModelDev(tmp_path, model).save()
    server = ModelServer(tmp_path)
    for forbidden in ("keygen", "decrypt", "client", "secret_keys", "predict", "quantize_encrypt_serialize"):
        assert not hasattr(server, forbidden)
    # the server file is refused where a client file is expected, and the other way round
    with pytest.raises(fhec.FormatError, match="server file"):
        ModelClient(tmp_path / "model.server.fhec")
    with pytest.raises(fhec.FormatError, match="client file"):
        ModelServer(tmp_path / "model.client.fhec")


def test_a_traced_circuit_deploys_with_integer_inputs(tmp_path):
    W = np.array([[3, -1], [0, 2], [5, 5], [-7, 1]])

    @fhec.compiler({"x": "encrypted"})
    def f(x):
        return np.maximum((x @ W).round_bits(3), 0)

    rng = np.random.default_rng(5)
    circuit = f.compile([rng.integers(0, 8, size=(1, 4)) for _ in range(30)])
    ModelDev(tmp_path, circuit, name="layer").save()
    client = ModelClient(tmp_path / "layer.client.fhec")
    server = ModelServer(tmp_path / "layer.server.fhec")
    assert client.kind == "circuit"
    with pytest.raises(TypeError, match="integer inputs"):
        client.quantize_encrypt_serialize(np.zeros((1, 4)))
    x = np.array([[7, 1, 3, 0]])
    out = server.run(client.client.encrypt(x), client.evaluation_keys())
    np.testing.assert_array_equal(client.client.decrypt(out), circuit.simulate(x))


def test_committed_fixtures_read_and_run_from_python():
    versions = sorted(FIXTURES.glob("v*"))
    assert versions, f"no fixtures under {FIXTURES}"
    for version_dir in versions:
        client = ModelClient(version_dir / "logreg.client.fhec")
        server = ModelServer(version_dir / "logreg.server.fhec")
        assert client.classes_.tolist() == ["no", "yes"]
        result = server.run(client.quantize_encrypt_serialize([[0.3, -0.7, 1.9]]), client.evaluation_keys())
        probs = client.deserialize_decrypt_dequantize(result)
        assert probs.shape == (1, 2) and abs(probs.sum() - 1) < 1e-12
        assert client.predict(result).tolist()[0] in ("no", "yes")


def test_mistakes_are_clear_errors(tmp_path, classification):
    X, y = classification
    model = LogisticRegression().fit(X, y)
    with pytest.raises(fhec.FhecError, match="not compiled"):
        ModelDev(tmp_path, model).save()
    with pytest.raises(TypeError, match="compiled fhec model"):
        ModelDev(tmp_path, object()).save()
    model.compile(X)
    ModelDev(tmp_path, model, name="a").save()
    ModelDev(tmp_path, model, name="b").save()
    with pytest.raises(FileNotFoundError, match="2 .client.fhec files"):
        ModelClient(tmp_path)
    assert ModelClient(tmp_path, name="b").name == "b"
    with pytest.raises(fhec.FormatError, match="model name"):
        ModelDev(tmp_path, model, name="../evil").save()
    client = ModelClient(tmp_path, name="a")
    with pytest.raises(ValueError, match="NaN"):
        client.quantize_encrypt_serialize(np.full((1, X.shape[1]), np.nan))
    with pytest.raises(fhec.ShapeError):
        client.quantize_encrypt_serialize(np.zeros((2, X.shape[1] + 1)))
    # ciphertexts under one client's keys, run with another client's evaluation keys: refused
    blob = client.quantize_encrypt_serialize(X[:1])
    other = ModelClient(tmp_path, name="b")
    with pytest.raises(fhec.KeyMismatchError):
        ModelServer(tmp_path, name="b").run(blob, other.evaluation_keys())
