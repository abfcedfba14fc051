"""Circuits and the two roles of a deployment: a :class:`Client` holds the secret keys (keygen,
evaluation keys, encrypt, decrypt); a :class:`Server` is built from a program and evaluation keys —
bytes received from a client — and can only run. No server object holds or can create a secret key.

    circuit = f.compile(inputset)
    client = circuit.client()                      # or fhec.Client.keygen(program_bytes)
    server = fhec.Server(circuit.program_bytes(), client.evaluation_keys())   # elsewhere, from bytes
    result = client.decrypt(server.run(client.encrypt(x)))
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Sequence

from ._fhec import Circuit as _Circuit
from ._fhec import Client as _Client
from ._fhec import Server as _Server
from ._tensors import _array, _flat
from .errors import ExecutionError


# how the compile error of a key budget that no parameters meet begins (the backend's KEY_BUDGET_NOT_MET)
KEY_BUDGET_NOT_MET = "no parameters found with evaluation keys within"


def _key_budget(max_key_bytes: Any) -> int | None:
    """``max_key_bytes`` of the compile functions, checked: ``None`` or a positive int (bytes)."""
    if max_key_bytes is None:
        return None
    if isinstance(max_key_bytes, bool) or not isinstance(max_key_bytes, int) or not 0 < max_key_bytes < 2**64:
        try:
            import numpy as np

            if isinstance(max_key_bytes, np.integer) and 0 < int(max_key_bytes) < 2**64:
                return int(max_key_bytes)
        except ImportError:  # pragma: no cover
            pass
        raise ValueError(f"max_key_bytes must be a positive number of bytes (an int), got {max_key_bytes!r}")
    return max_key_bytes


def _samples(samples: Iterable[Any]) -> list:
    return [[_flat(a) for a in (s if isinstance(s, (tuple, list)) else (s,))] for s in samples]


class Client:
    """The client side: the program's description and the secret keys. Encrypts arguments (clear
    arguments travel unencrypted in the same file) and decrypts results. ``Client(program, secret_keys)``
    restores a client from bytes saved before; :meth:`keygen` makes fresh keys."""

    def __init__(self, program: bytes, secret_keys: bytes, *, single: bool | None = None):
        self._init(_Client(program, secret_keys), single)

    def _init(self, c: _Client, single: bool | None) -> None:
        self._c = c
        self._single = c.n_outputs == 1 if single is None else single

    @classmethod
    def _wrap(cls, c: _Client, single: bool | None = None) -> "Client":
        obj = cls.__new__(cls)
        obj._init(c, single)
        return obj

    @classmethod
    def keygen(cls, program: bytes) -> "Client":
        """Fresh secret keys for a program file (``Circuit.program_bytes()``) or a model's client file."""
        return cls._wrap(_Client.keygen(program))

    @property
    def key_id(self) -> int:
        """The random id of these keys; evaluation keys and ciphertexts carry it."""
        return self._c.key_id

    @property
    def fingerprint(self) -> int:
        """The fingerprint of the program these keys are for (ciphertexts carry it)."""
        return self._c.fingerprint

    def evaluation_keys(self) -> bytes:
        """The evaluation keys (compressed) to send to a server: public, no secret in them."""
        return self._c.evaluation_keys()

    def secret_keys(self) -> bytes:
        """The secret keys as bytes, to store on the client (never send them anywhere)."""
        return self._c.secret_keys()

    def _out(self, flats: list) -> Any:
        outs = [_array(o) for o in flats]
        return outs[0] if self._single else tuple(outs)

    def encrypt(self, *args: Any) -> bytes:
        """Encrypts one sample's arguments; returns ciphertexts as bytes (an fhec file)."""
        return self._c.encrypt([[_flat(a) for a in args]])

    def encrypt_batch(self, samples: Iterable[Sequence[Any]]) -> bytes:
        """Encrypts many samples at once (in parallel) into one ciphertext file."""
        return self._c.encrypt(_samples(samples))

    def decrypt(self, encrypted: bytes) -> Any:
        """Decrypts a server's result for one sample."""
        out = self._c.decrypt(encrypted)
        if len(out) != 1:
            raise ExecutionError(f"these ciphertexts hold {len(out)} samples: use decrypt_batch")
        return self._out(out[0])

    def decrypt_batch(self, encrypted: bytes) -> list[Any]:
        """Decrypts a server's result for a batch: one result per sample."""
        return [self._out(r) for r in self._c.decrypt(encrypted)]


class Server:
    """The server side: a program file and a client's evaluation keys (bytes). It runs ciphertexts
    and returns ciphertexts; it holds no secret key and has no way to make one."""

    def __init__(self, program: bytes, evaluation_keys: bytes):
        self._s = _Server(program, evaluation_keys)

    @classmethod
    def _wrap(cls, s: _Server) -> "Server":
        obj = cls.__new__(cls)
        obj._s = s
        return obj

    @property
    def key_id(self) -> int:
        """The id of the client keys the evaluation keys came from."""
        return self._s.key_id

    def run(self, encrypted: bytes) -> bytes:
        """Runs the program on ciphertexts from ``Client.encrypt``; returns encrypted results.
        Ciphertexts of another keygen are refused (:class:`fhec.KeyMismatchError`)."""
        return self._s.run(encrypted)


class Circuit:
    """A compiled program: keys, encrypted execution, simulation, and the IR at each stage."""

    def __init__(self, c: _Circuit, single: bool):
        self._c = c
        self._single = single

    def keygen(self) -> None:
        """Generates the secret and evaluation keys (once): a client and a server of one keygen."""
        self._c.keygen()

    def client(self) -> Client:
        """The client of this circuit's keys (generated on first use)."""
        return Client._wrap(self._c.client(), self._single)

    def server(self) -> Server:
        """The server of this circuit's keys: built from the client's evaluation keys only."""
        return Server._wrap(self._c.server())

    def program_bytes(self) -> bytes:
        """The compiled program as an fhec file: what a server needs besides evaluation keys."""
        return self._c.program_bytes()

    def _out(self, flats: list) -> Any:
        outs = [_array(o) for o in flats]
        return outs[0] if self._single else tuple(outs)

    def encrypt_run_decrypt(self, *args: Any) -> Any:
        """Encrypts the inputs, runs the circuit on ciphertexts, decrypts the result."""
        return self._out(self._c.run_batch([[_flat(a) for a in args]])[0])

    def run_batch(self, samples: Iterable[Sequence[Any]], progress: bool | None = None) -> list[Any]:
        """Encrypted execution of many samples at once (parallel): one result per sample.

        ``progress``: a progress bar. In a terminal the runtime draws one on stderr once a run lasts a
        second; elsewhere (a notebook, a log) a tqdm bar does, per group of samples, when the cost
        model expects more than a second. ``True``/``False`` force it on or off; ``FHEC_PROGRESS=0``
        silences both."""
        batch = _samples(samples)
        if not self._tqdm_wanted(len(batch), progress):
            return [self._out(r) for r in self._c.run_batch(batch)]
        from tqdm.auto import tqdm

        step = max(1, len(batch) // 50)
        out: list[Any] = []
        with tqdm(total=len(batch), desc="encrypted run", unit="sample", file=sys.stderr) as bar:
            for i in range(0, len(batch), step):
                out.extend(self._out(r) for r in self._c.run_batch(batch[i : i + step]))
                bar.update(min(step, len(batch) - i))
        return out

    def _tqdm_wanted(self, n: int, progress: bool | None) -> bool:
        if progress is False or os.environ.get("FHEC_PROGRESS") == "0" or n < 2:
            return False
        try:
            import tqdm  # noqa: F401
        except ImportError:
            return False
        if progress:
            return True
        if sys.stderr.isatty():
            return False  # the runtime's own bar
        per_sample = float(self._c.statistics["estimated_seconds"]) / max(os.cpu_count() or 1, 1)
        return per_sample * n > 1.0

    def simulate(self, *args: Any) -> Any:
        """The compiled program on clear values, without keys: what encrypted execution returns."""
        return self._out(self._c.simulate([_flat(a) for a in args]))

    def encrypt(self, *args: Any) -> bytes:
        """Client (``self.client().encrypt``): encrypts one sample's arguments; an fhec file as bytes."""
        return self.client().encrypt(*args)

    def encrypt_batch(self, samples: Iterable[Sequence[Any]]) -> bytes:
        """Client: encrypts many samples at once (in parallel) into one ciphertext file."""
        return self.client().encrypt_batch(samples)

    def run(self, encrypted: bytes) -> bytes:
        """Server (``self.server().run``): runs the program on ciphertexts with the evaluation keys only."""
        return self.server().run(encrypted)

    def decrypt(self, encrypted: bytes) -> Any:
        """Client: decrypts the output of ``run`` for one sample (what ``encrypt_run_decrypt`` returns)."""
        return self.client().decrypt(encrypted)

    def decrypt_batch(self, encrypted: bytes) -> list[Any]:
        """Client: decrypts the output of ``run`` for a batch: one result per sample."""
        return self.client().decrypt_batch(encrypted)

    def simulate_batch(self, samples: Iterable[Sequence[Any]]) -> list[Any]:
        """Simulation of many samples at once: one result per sample."""
        return [self._out(r) for r in self._c.simulate_batch(_samples(samples))]

    def eval_clear(self, *args: Any) -> Any:
        """The reference in the clear. For a traced function: the function evaluated on unbounded
        integers (every op by its definition, user functions called directly; no range checks). For
        other circuits: the module's clear interpreter (integer semantics of every op; inputs outside
        their ranges and values that overflow their types are refused)."""
        return self._out(self._c.eval_clear([_flat(a) for a in args]))

    @property
    def ir(self) -> str:
        """The ``fhe`` module after the passes (what is lowered)."""
        return self._c.ir

    @property
    def traced_ir(self) -> str:
        """The ``fhe`` module as traced (before passes)."""
        return self._c.traced_ir

    @property
    def tfhe_ir(self) -> str:
        """The lowered TFHE program."""
        return self._c.tfhe_ir

    @property
    def client_spec(self) -> dict:
        """The client half of the compiled model: input quantisers and encodings, output
        dequantisation, post-processing, class labels (integers in and out for traced programs)."""
        return json.loads(self._c.client_spec)

    @property
    def statistics(self) -> dict:
        """Lookups per precision, parameters, failure probabilities, key sizes, estimated latency."""
        return self._c.statistics

