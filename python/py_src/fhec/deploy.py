"""Deployment: a compiled model as two files, one per side, and the three roles that use them.

    from fhec.deploy import ModelDev, ModelClient, ModelServer

    ModelDev("out/", model).save()                     # out/model.server.fhec, out/model.client.fhec

    client = ModelClient("out/", key_dir="keys/")      # secret keys made once, kept in keys/ (0600)
    keys = client.evaluation_keys()                    # bytes: send once to the server
    blob = client.quantize_encrypt_serialize(X)        # bytes: send to the server

    server = ModelServer("out/")                       # the server file: no secret, no float model
    result = server.run(blob, keys)                    # bytes: send back to the client

    client.deserialize_decrypt_dequantize(result)      # probabilities / predictions
    client.predict(result)                             # class labels / predictions

The server file holds the compiled program (instructions, tables). The client file holds what the
client needs: the quantisers and encodings, the output dequantisation and post-processing, the class
labels, and the program's interface (parameters, input and output ports, fingerprint) — not the
program's instructions or tables. Both are fhec files with a version of their own; see
``docs/deployment.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ._circuit import Circuit, Client, Server
from ._fhec import ClientModel as _ClientModel
from ._fhec import ServerModel as _ServerModel
from .errors import FhecError

__all__ = ["ModelDev", "ModelClient", "ModelServer", "RemoteModel", "ServiceError", "SERVER_SUFFIX", "CLIENT_SUFFIX"]

SERVER_SUFFIX = ".server.fhec"
CLIENT_SUFFIX = ".client.fhec"


def _write_atomic(path: Path, data: bytes, private: bool = False) -> None:
    """Writes ``data`` to ``path`` through a fresh temporary file in the same directory (created
    exclusively, mode 0600), fsynced, then renamed over ``path``: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".fhec-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not private:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # platforms without directory fsync
        pass


def _find(path: Any, suffix: str, name: str | None) -> Path:
    """A model file: ``path`` itself, or ``path/NAME{suffix}`` (NAME: the only such file there)."""
    p = Path(path)
    if not p.is_dir():
        return p
    if name is not None:
        return p / f"{name}{suffix}"
    found = sorted(p.glob(f"*{suffix}"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise FileNotFoundError(
            f"{p}: {what} {suffix} files; pass the file itself or name=… "
            f"({', '.join(f.name for f in found) or 'none found'})"
        )
    return found[0]


def _circuit_of(model: Any) -> tuple[Circuit, str]:
    if isinstance(model, Circuit):
        return model, "circuit"
    circuit = getattr(model, "fhe_circuit", None)
    if circuit is None:
        if hasattr(model, "compile"):
            raise FhecError(f"{type(model).__name__} is not compiled: call model.compile(X) before saving it")
        raise TypeError(f"ModelDev takes a compiled fhec model or a fhec.Circuit, not {type(model).__name__}")
    return circuit, type(model).__name__


class _ModelFile:
    """What a server or client file says of its model (``self._m``: the file as read by the binding)."""

    _m: Any

    @property
    def name(self) -> str:
        return self._m.name

    @property
    def kind(self) -> str:
        """The estimator's class (``"LogisticRegression"`` …), ``"circuit"`` or ``"program"``."""
        return self._m.kind

    @property
    def fingerprint(self) -> int:
        """The program's fingerprint (every ciphertext of this model carries it)."""
        return self._m.fingerprint


class ModelDev:
    """The developer's side: writes a compiled model's server file and client file.

    ``model`` is a compiled fhec.sklearn estimator or a :class:`fhec.Circuit` (a traced function:
    integers in and out)."""

    def __init__(self, path: Any, model: Any, name: str = "model"):
        self.path = Path(path)
        self.model = model
        self.name = name

    def save(self) -> tuple[Path, Path]:
        """Writes ``NAME.server.fhec`` and ``NAME.client.fhec`` in the directory (created if needed),
        each atomically; returns their paths."""
        circuit, kind = _circuit_of(self.model)
        server_bytes, client_bytes = circuit._c.model_files(self.name, kind)
        self.path.mkdir(parents=True, exist_ok=True)
        server_path = self.path / f"{self.name}{SERVER_SUFFIX}"
        client_path = self.path / f"{self.name}{CLIENT_SUFFIX}"
        _write_atomic(server_path, server_bytes)
        _write_atomic(client_path, client_bytes)
        return server_path, client_path


class ModelClient(_ModelFile):
    """The client's side, from a model's client file: secret keys, evaluation keys, encryption of
    float rows, decryption and post-processing.

    ``path``: the client file, or a directory holding it (``name`` picks one of several).
    ``key_dir``: where the secret keys live (one file per model and program, mode 0600); made on first
    use and reused after, so results encrypted earlier still decrypt. Without it, keys live in memory
    for this object only."""

    def __init__(self, path: Any, key_dir: Any = None, name: str | None = None):
        self.path: Path | None = _find(path, CLIENT_SUFFIX, name)
        self._init(self.path.read_bytes(), key_dir)

    @classmethod
    def from_bytes(cls, data: bytes, key_dir: Any = None) -> "ModelClient":
        """A client from a client file's bytes (as :class:`RemoteModel` downloads them)."""
        obj = cls.__new__(cls)
        obj.path = None
        obj._init(data, key_dir)
        return obj

    def _init(self, data: bytes, key_dir: Any) -> None:
        self._m = _ClientModel(data)
        self.key_dir = None if key_dir is None else Path(key_dir)
        self._client: Client | None = None
        self._evaluation_keys: bytes | None = None
        spec = json.loads(self._m.client_spec)
        classes = spec.get("classes")
        self.classes_ = None if classes is None else np.asarray(classes)

    @property
    def client_spec(self) -> dict:
        return json.loads(self._m.client_spec)

    # -- keys ------------------------------------------------------------------------------------------

    def _key_path(self) -> Path | None:
        if self.key_dir is None:
            return None
        return self.key_dir / f"{self.name}-{self.fingerprint:016x}.secret.keys"

    def keygen(self, force: bool = False) -> None:
        """Makes the secret keys (or reads them from ``key_dir``). ``force``: new keys even if some
        exist (ciphertexts made under the old ones no longer decrypt)."""
        if self._client is not None and not force:
            return
        path = self._key_path()
        if path is not None and path.exists() and not force:
            self._client = Client._wrap(self._m.client(path.read_bytes()))
            return
        client = Client._wrap(self._m.keygen())
        if path is not None:
            self.key_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, client.secret_keys(), private=True)
        self._client = client
        self._evaluation_keys = None

    generate_private_and_evaluation_keys = keygen

    @property
    def client(self) -> Client:
        """The :class:`fhec.Client` of these keys (for integer inputs and outputs)."""
        self.keygen()
        assert self._client is not None
        return self._client

    @property
    def key_id(self) -> int:
        return self.client.key_id

    def evaluation_keys(self) -> bytes:
        """The evaluation keys to send to the server (public: no secret in them); made once."""
        if self._evaluation_keys is None:
            self._evaluation_keys = self.client.evaluation_keys()
        return self._evaluation_keys

    get_serialized_evaluation_keys = evaluation_keys

    # -- data ------------------------------------------------------------------------------------------

    def quantize_encrypt_serialize(self, X: Any) -> bytes:
        """Quantises, encodes and encrypts rows of float features (one sample per row); returns the
        ciphertext file to send to the server."""
        if not self._m.takes_features:
            raise TypeError(
                f"model {self.name!r} takes integer inputs (a {self.kind}): encrypt them with "
                "ModelClient.client.encrypt(...)"
            )
        x = np.asarray(X, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"X must be a non-empty matrix of rows × features, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("Input X contains NaN or infinity.")
        data, _clipped = self._m.encrypt_rows(self.client._c, np.ascontiguousarray(x))
        return data

    def deserialize_decrypt(self, result: bytes) -> np.ndarray:
        """The decrypted integers of the model's output, ``rows × columns`` (a network's output in parts:
        the values the parts add up to)."""
        return self._m.decrypt_ints(self.client._c, result)

    def deserialize_decrypt_dequantize(self, result: bytes) -> np.ndarray:
        """Decrypted, dequantised and post-processed: predictions for regressions (``rows × outputs``),
        class probabilities for classifiers that have them, decision values otherwise."""
        return self._m.decrypt_values(self.client._c, result)

    def predict(self, result: bytes) -> np.ndarray:
        """Class labels for classifiers; predictions for regressions (one dimension when the model
        has one output) — what ``model.predict(X, fhe="execute")`` returns."""
        if self.classes_ is not None:
            return self.classes_[np.asarray(self._m.decrypt_classes(self.client._c, result), dtype=np.intp)]
        values = self.deserialize_decrypt_dequantize(result)
        return values[:, 0] if values.shape[1] == 1 else values


class ModelServer(_ModelFile):
    """The server's side, from a model's server file: runs ciphertexts with a client's evaluation keys.

    ``path``: the server file, or a directory holding it. Servers (expanded evaluation keys: tens to
    hundreds of MB each) are kept for the ``cache`` most recently used key sets."""

    def __init__(self, path: Any, name: str | None = None, cache: int = 2):
        self.path = _find(path, SERVER_SUFFIX, name)
        self._m = _ServerModel(self.path.read_bytes())
        self._servers: OrderedDict[bytes, Server] = OrderedDict()
        self._cache = max(1, int(cache))

    def server(self, evaluation_keys: bytes) -> Server:
        """The :class:`fhec.Server` for these evaluation keys (checked and expanded once)."""
        digest = hashlib.blake2b(evaluation_keys, digest_size=16).digest()
        s = self._servers.get(digest)
        if s is None:
            s = Server._wrap(self._m.server(evaluation_keys))
            self._servers[digest] = s
            while len(self._servers) > self._cache:
                self._servers.popitem(last=False)
        else:
            self._servers.move_to_end(digest)
        return s

    def run(self, encrypted: bytes, evaluation_keys: bytes) -> bytes:
        """Runs the model on a client's ciphertexts; returns the encrypted results. Ciphertexts of
        another model or under other keys are refused (:class:`fhec.KeyMismatchError`, …)."""
        return self.server(evaluation_keys).run(encrypted)


class ServiceError(FhecError):
    """An error answer of ``fhec serve``: ``status`` (HTTP), ``kind`` (``"unknown_key"``, ``"format"``,
    ``"busy"`` …) and the service's message."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(f"{kind} ({status}): {message}")
        self.status = status
        self.kind = kind


class RemoteModel:
    """A client of ``fhec serve`` (docs/deployment.md): downloads the model's client file, makes (or
    reads from ``key_dir``) the secret keys, uploads the evaluation keys once, and predicts on encrypted
    data. Nothing but ciphertexts and evaluation keys leaves this process.

        remote = RemoteModel("http://127.0.0.1:8080", "spam", key_dir="keys/")
        remote.predict(X); remote.predict_proba(X)

    A server that answers ``unknown_key`` (another replica, a restarted one, an emptied key store) gets
    the keys again and the request is retried once; ``busy`` (503) is retried after its ``Retry-After``,
    and a proxy's 502/504 or a refused connection after a short pause, up to ``retries`` times. Every
    request carries the key id (``X-Fhec-Key-Id``), the header a load balancer hashes on."""

    def __init__(self, url: str, name: str, key_dir: Any = None, timeout: float = 600.0, retries: int = 5):
        self.url = url.rstrip("/")
        self.name = name
        self.timeout = timeout
        self.retries = retries
        data = self._request("GET", f"/v1/models/{name}/client")
        self.client = ModelClient.from_bytes(data, key_dir=key_dir)
        self.classes_ = self.client.classes_
        self._uploaded = False

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        if body is not None:
            req.add_header("Content-Type", "application/octet-stream")
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    return r.read()
            except urllib.error.HTTPError as e:
                raw = e.read()
                try:
                    j = json.loads(raw)
                    kind, message = str(j.get("error", "http")), str(j.get("message", ""))
                except ValueError:
                    kind, message = "http", raw.decode("utf-8", "replace")[:500]
                if e.code == 503 and kind == "busy" and attempt < self.retries:
                    time.sleep(float(e.headers.get("Retry-After", "1")))
                    continue
                if e.code in (502, 504) and kind == "http" and attempt < self.retries:
                    # a proxy lost its upstream (a replica stopping): try again, maybe elsewhere
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise ServiceError(e.code, kind, message) from None
            except (ConnectionError, urllib.error.URLError) as e:
                if attempt < self.retries:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise ServiceError(0, "connection", str(e)) from None
        raise AssertionError("unreachable")

    def upload_keys(self) -> str:
        """Uploads the evaluation keys (once per key set); returns their key id."""
        # the key id header lets a load balancer send the keys where the runs will go
        headers = {"X-Fhec-Key-Id": f"{self.client.key_id:016x}"}
        answer = json.loads(
            self._request("POST", f"/v1/models/{self.name}/keys", self.client.evaluation_keys(), headers)
        )
        self._uploaded = True
        return answer["key_id"]

    def run(self, encrypted: bytes) -> bytes:
        """Runs ciphertexts (from ``self.client.quantize_encrypt_serialize``) on the service."""
        if not self._uploaded:
            self.upload_keys()
        headers = {"X-Fhec-Key-Id": f"{self.client.key_id:016x}"}
        try:
            return self._request("POST", f"/v1/models/{self.name}/run", encrypted, headers)
        except ServiceError as e:
            if e.kind != "unknown_key":
                raise
            self.upload_keys()
            return self._request("POST", f"/v1/models/{self.name}/run", encrypted, headers)

    def _result(self, X: Any) -> bytes:
        return self.run(self.client.quantize_encrypt_serialize(X))

    def predict(self, X: Any) -> np.ndarray:
        """Class labels, or predictions, of rows of float features, computed encrypted by the service."""
        return self.client.predict(self._result(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (classifiers that have them)."""
        return self.client.deserialize_decrypt_dequantize(self._result(X))

    def decision_values(self, X: Any) -> np.ndarray:
        """Dequantised and post-processed values: probabilities, decision values or predictions."""
        return self.client.deserialize_decrypt_dequantize(self._result(X))

    def models(self) -> list:
        """What the service serves (``GET /v1/models``)."""
        return json.loads(self._request("GET", "/v1/models"))
