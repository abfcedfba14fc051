"""`fhec serve` end to end: models saved by fhec.deploy, served by the `fhec` binary on loopback,
used through fhec.deploy.RemoteModel; bad requests get a 4xx JSON error and leave the service healthy;
back-pressure, timeouts and graceful shutdown behave as documented (docs/deployment.md)."""

import json
import os
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification

from fhec.deploy import ModelClient, ModelDev, RemoteModel, ServiceError
from fhec.sklearn import DecisionTreeClassifier, LogisticRegression

ROOT = Path(__file__).resolve().parents[2]
FHEC = Path(os.environ.get("FHEC_BIN", ROOT / "target" / "release" / "fhec"))


class Service:
    """`fhec serve` in a child process, on a free loopback port."""

    def __init__(self, models: Path, keys: Path, *args: str):
        assert FHEC.exists(), f"{FHEC} is missing: build it with `cargo build --release -p fhec` (or set FHEC_BIN)"
        self.proc = subprocess.Popen(
            [str(FHEC), "serve", str(models), "--keys", str(keys), "--listen", "127.0.0.1:0", *args],
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stderr.readline()
        assert "listening on http://" in line, line + self.proc.stderr.read()
        self.url = line.split("listening on ")[1].split()[0]

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        out = self.proc.stderr.read()
        return self.proc.wait(timeout=60), out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, random_state=7)
    d = tmp_path_factory.mktemp("served")
    linear = LogisticRegression().fit(X[:200], y[:200])
    linear.compile(X[:200])
    ModelDev(d, linear, name="linear").save()
    tree = DecisionTreeClassifier(max_depth=3, n_bits=4).fit(X[:200], y[:200])
    tree.compile(X[:200])
    ModelDev(d, tree, name="tree").save()
    return d, X[200:], linear, tree


@pytest.fixture(scope="module")
def service(models, tmp_path_factory):
    d = models[0]
    s = Service(d, tmp_path_factory.mktemp("keys"))
    yield s
    s.stop()


def test_remote_models_predict_exactly_what_the_models_predict(models, service):
    _, X, linear, tree = models
    for name, model, rows in (("linear", linear, X[:40]), ("tree", tree, X[:6])):
        remote = RemoteModel(service.url, name)
        np.testing.assert_array_equal(remote.predict(rows), model.predict(rows, fhe="simulate"))
        np.testing.assert_array_equal(remote.predict_proba(rows), model.predict_proba(rows, fhe="simulate"))
    listed = {m["name"]: m for m in RemoteModel(service.url, "linear").models()}
    assert set(listed) == {"linear", "tree"}
    assert listed["tree"]["lookups"] > 0 and listed["linear"]["evaluation_key_bytes"] == 0
    assert listed["tree"]["log2_p_error_per_lookup"] <= -128


def test_bad_requests_get_a_json_4xx_and_the_service_stays_healthy(models, service):
    _, X, _, _ = models
    remote = RemoteModel(service.url, "tree")
    key_id = remote.upload_keys()
    run = "/v1/models/tree/run"
    cases = []
    # garbage instead of ciphertexts
    cases.append((service.request("POST", run, b"garbage", {"X-Fhec-Key-Id": key_id}), 400, "format"))
    # no key id header, a key id nobody uploaded
    cases.append((service.request("POST", run, b"x"), 400, "key_id"))
    cases.append((service.request("POST", run, b"x", {"X-Fhec-Key-Id": "0123456789abcdef"}), 404, "unknown_key"))
    # another model's ciphertexts under this client's keys
    linear = ModelClient.from_bytes(service.get("/v1/models/linear/client")[1])
    other = linear.quantize_encrypt_serialize(X[:1])
    cases.append((service.request("POST", run, other, {"X-Fhec-Key-Id": f"{linear.key_id:016x}"}), 404, "unknown_key"))
    mine = remote.client.quantize_encrypt_serialize(X[:1])
    cases.append((service.request("POST", "/v1/models/linear/run", mine, {"X-Fhec-Key-Id": key_id}), 404, "unknown_key"))
    # a header that does not match the ciphertexts
    linear_key = RemoteModel(service.url, "linear")
    linear_key.client = linear
    lk = linear_key.upload_keys()
    cases.append((service.request("POST", "/v1/models/linear/run", mine, {"X-Fhec-Key-Id": lk}), 400, "mismatch"))
    # truncated key upload, a secret-key file, keys of another model's parameters
    keys = remote.client.evaluation_keys()
    cases.append((service.request("POST", "/v1/models/tree/keys", keys[: len(keys) // 2]), 400, "format"))
    cases.append((service.request("POST", "/v1/models/tree/keys", remote.client.client.secret_keys()), 400, "security"))
    cases.append((service.request("POST", "/v1/models/linear/keys", keys), 400, "mismatch"))
    # unknown model, missing route
    cases.append((service.get("/v1/models/nope/client"), 404, "unknown_model"))
    for (status, body), want_status, want_kind in cases:
        assert status == want_status, (status, body, want_kind)
        answer = json.loads(body)
        assert answer["error"] == want_kind and answer["message"], answer
    assert service.get("/healthz") == (200, b'{"models":2,"status":"ok"}')
    # and it still computes exactly
    np.testing.assert_array_equal(remote.predict(X[:3]), models[3].predict(X[:3], fhe="simulate"))
    status, metrics = service.get("/metrics")
    text = metrics.decode()
    assert status == 200 and 'fhec_requests_total{endpoint="run",status="400"}' in text
    assert "fhec_key_cache_hits_total" in text and "fhec_lookups_total" in text


def test_a_replica_without_the_keys_gets_them_again(models, tmp_path):
    d, X, _, tree = models
    first = Service(d, tmp_path / "k1")
    second = Service(d, tmp_path / "k2")
    try:
        remote = RemoteModel(first.url, "tree")
        np.testing.assert_array_equal(remote.predict(X[:2]), tree.predict(X[:2], fhe="simulate"))
        remote.url = second.url  # the balancer sends it elsewhere: "unknown_key", upload, retry
        np.testing.assert_array_equal(remote.predict(X[2:4]), tree.predict(X[2:4], fhe="simulate"))
        assert len(list((tmp_path / "k2" / "tree").iterdir())) == 1
    finally:
        first.stop()
        second.stop()


def test_back_pressure_timeouts_and_graceful_shutdown(models, tmp_path):
    d, X, _, tree = models
    s = Service(d, tmp_path / "keys", "--jobs", "1", "--queue", "0", "--timeout", "1")
    try:
        remote = RemoteModel(s.url, "tree", retries=0)
        key = remote.upload_keys()
        big = remote.client.quantize_encrypt_serialize(np.tile(X[:50], (4, 1)))  # 200 rows: seconds
        results = {}

        def call(i):
            results[i] = s.request("POST", "/v1/models/tree/run", big, {"X-Fhec-Key-Id": key})

        threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r[0] for r in results.values())
        # one ran into the timeout (504), the other found no room (503, Retry-After)
        assert statuses == [503, 504], results
        for status, body in results.values():
            assert json.loads(body)["error"] == {503: "busy", 504: "timeout"}[status]
        # healthy afterwards: a small batch runs exactly
        np.testing.assert_array_equal(remote.predict(X[:2]), tree.predict(X[:2], fhe="simulate"))
    finally:
        code, err = s.stop()
    assert code == 0 and "stopped" in err, err


def test_bodies_over_the_limit_are_refused_with_413(models, tmp_path):
    s = Service(models[0], tmp_path / "keys", "--max-body", "1K")
    try:
        status, body = s.request("POST", "/v1/models/tree/keys", b"\0" * 4096)
        assert status == 413 and json.loads(body)["error"] == "too_large", (status, body)
        status, body = s.request("POST", "/v1/models/tree/run", b"\0" * 4096, {"X-Fhec-Key-Id": "00000000000000aa"})
        assert status == 413 and json.loads(body)["error"] == "too_large", (status, body)
        assert s.get("/healthz")[0] == 200
    finally:
        s.stop()
