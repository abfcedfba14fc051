"""The client/server split in Python: a Server built from bytes alone (a program file and evaluation
keys) runs what a Client encrypted; the server object holds no secret key and cannot make one; keys
of another keygen are refused with a clear error; errors are one hierarchy of exception classes."""

import numpy as np
import pytest
from sklearn.datasets import make_classification

import fhec
from fhec.sklearn import DecisionTreeClassifier, LogisticRegression

W = np.array([[3, -1, 2], [0, 2, -3], [5, 5, 1], [-7, 1, 0]])
RNG = np.random.default_rng(11)


@fhec.compiler({"x": "encrypted"})
def layer(x):
    return np.maximum((x @ W).round_bits(3), 0)


@pytest.fixture(scope="module")
def compiled():
    inputset = [RNG.integers(0, 4, size=(1, 4)) for _ in range(30)]
    return layer.compile(inputset), inputset


def test_a_server_from_bytes_runs_what_a_client_encrypted(compiled):
    circuit, inputset = compiled
    program = circuit.program_bytes()
    client = fhec.Client.keygen(program)
    # the server gets bytes only: the program and the client's evaluation keys
    server = fhec.Server(program, client.evaluation_keys())
    assert server.key_id == client.key_id
    xs = inputset[:4]
    out = client.decrypt_batch(server.run(client.encrypt_batch(xs)))
    for x, got in zip(xs, out):
        assert np.array_equal(got, np.maximum(((x @ W) + 4) >> 3, 0))
        assert np.array_equal(got, circuit.simulate(x))
    # a client restored from its saved secret keys decrypts the same results
    again = fhec.Client(program, client.secret_keys())
    assert again.key_id == client.key_id
    assert np.array_equal(again.decrypt(server.run(client.encrypt(xs[0]))), out[0])


def test_the_server_holds_no_secret_key(compiled):
    circuit, _ = compiled
    program = circuit.program_bytes()
    client = fhec.Client.keygen(program)
    server = fhec.Server(program, client.evaluation_keys())
    public = {name for name in dir(server) if not name.startswith("__")}
    assert public == {"_s", "_wrap", "key_id", "run"}, public
    inner = {name for name in dir(server._s) if not name.startswith("__")}
    assert inner == {"key_id", "n_outputs", "run"}, inner
    # nothing that encrypts, decrypts or exports keys: a server object cannot be made to
    for forbidden in ("encrypt", "decrypt", "secret_keys", "evaluation_keys", "keygen"):
        assert not hasattr(server, forbidden) and not hasattr(server._s, forbidden)
    # secret keys are not evaluation keys: a server refuses them by file kind
    with pytest.raises(fhec.FormatError, match="secret"):
        fhec.Server(program, client.secret_keys())
    # the circuit's own server is the same kind of object
    assert type(circuit.server()) is fhec.Server


def test_keys_of_another_keygen_are_refused(compiled):
    circuit, inputset = compiled
    program = circuit.program_bytes()
    a, b = fhec.Client.keygen(program), fhec.Client.keygen(program)
    assert a.key_id != b.key_id
    server_a = fhec.Server(program, a.evaluation_keys())
    with pytest.raises(fhec.KeyMismatchError, match="other keys") as e:
        server_a.run(b.encrypt(inputset[0]))
    assert isinstance(e.value, ValueError) and isinstance(e.value, fhec.ExecutionError)
    out = server_a.run(a.encrypt(inputset[0]))
    with pytest.raises(fhec.KeyMismatchError, match="other keys"):
        b.decrypt(out)
    # the circuit's client and server are of one keygen, and differ from both
    assert circuit.client().key_id == circuit.server().key_id not in (a.key_id, b.key_id)


def test_error_hierarchy_subclasses_the_builtins(compiled):
    circuit, _ = compiled
    assert issubclass(fhec.CompileError, ValueError) and issubclass(fhec.UnsupportedError, TypeError)
    assert issubclass(fhec.FileError, OSError) and issubclass(fhec.ExecutionError, RuntimeError)
    for cls in (fhec.ShapeError, fhec.RangeError, fhec.FormatError, fhec.KeyMismatchError, fhec.SecurityError):
        assert issubclass(cls, fhec.ExecutionError) and issubclass(cls, ValueError)
    with pytest.raises(fhec.RangeError, match="outside the range"):
        circuit.simulate(np.array([[4, 0, 0, 0]]))
    with pytest.raises(fhec.ShapeError, match="shape"):
        circuit.simulate(np.array([[1, 2, 3]]))
    with pytest.raises(fhec.FormatError):
        fhec.Client(b"FHEC garbage", b"")
    with pytest.raises(fhec.CompileError):
        layer.compile([np.zeros((1, 5), dtype=int)])


@pytest.mark.parametrize("model", [LogisticRegression(n_bits=6), DecisionTreeClassifier(max_depth=3, n_bits=4)])
def test_estimators_expose_the_split(model):
    X, y = make_classification(n_samples=120, n_features=5, random_state=0)
    model.fit(X, y)
    model.compile(X)
    client = model.client()
    server = fhec.Server(model.fhe_circuit.program_bytes(), client.evaluation_keys())
    decrypted = model.decrypt(server.run(model.encrypt(X[80:90])))
    assert len(decrypted) == 10
    assert np.array_equal(model.predict(decrypted), model.predict(X[80:90]))
    assert np.allclose(model.predict_proba(decrypted), model.predict_proba(X[80:90]))
    # the model's own server is of the client's keygen
    assert model.server().key_id == client.key_id
