"""The main demo: a scikit-learn model, trained as usual, predicting on encrypted data.

Trains a logistic regression on the breast-cancer dataset that ships with scikit-learn, quantises and
compiles it, generates keys, and predicts the whole test split three ways: the float model, the
quantised model in the clear, and encrypted (encrypt on the client, run on ciphertexts, decrypt).
Prints accuracies, agreement and latency; exits non-zero if any encrypted prediction differs from the
quantised model's.
"""

import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fhec.sklearn import InputRangeWarning, LogisticRegression

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

t0 = time.perf_counter()
model, float_model = LogisticRegression(n_bits=8).fit_benchmark(X_train, y_train)
fit_s = time.perf_counter() - t0

t0 = time.perf_counter()
circuit = model.compile(X_train)
compile_s = time.perf_counter() - t0
t0 = time.perf_counter()
circuit.keygen()
keygen_s = time.perf_counter() - t0

fp32 = float_model.predict(X_test)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    quantized = model.predict(X_test, fhe="disable")
# test values beyond the training range are clipped to it (the quantisers' range), with a warning
warnings.simplefilter("ignore", InputRangeWarning)
t0 = time.perf_counter()
encrypted = model.predict(X_test, fhe="execute")
batch_s = time.perf_counter() - t0

single = []
for i in range(100):
    t = time.perf_counter()
    model.predict(X_test[i % len(X_test)][None, :], fhe="execute")
    single.append(time.perf_counter() - t)

st = circuit.statistics
n = len(X_test)
print(f"breast cancer (scikit-learn): {X.shape[0]} samples × {X.shape[1]} features; LogisticRegression, n_bits=8")
print(f"  parameters: {st['parameters']}; lookups per row: {st['pbs_count']}; evaluation keys: {st['evaluation_key_bytes']} bytes")
print(f"  failure probability per row: 2^{st['log2_p_error_global']:.0f} (target 2^-40)")
print(f"  fit {fit_s * 1e3:.0f} ms, compile {compile_s * 1e3:.1f} ms, keygen {keygen_s * 1e3:.2f} ms")
for w in caught:
    print(f"  note: {w.message}")
print(f"  accuracy fp32      : {np.mean(fp32 == y_test):.4f}")
print(f"  accuracy quantized : {np.mean(quantized == y_test):.4f}")
print(f"  accuracy encrypted : {np.mean(encrypted == y_test):.4f}  ({n} rows encrypted, run, decrypted)")
agree = int(np.sum(encrypted == quantized))
print(f"  encrypted == quantized on {agree}/{n} rows")
print(f"  latency: {np.median(single) * 1e3:.3f} ms per row (encrypt + run + decrypt, median of 100); "
      f"batch of {n}: {batch_s * 1e3:.0f} ms ({n / batch_s:.0f} rows/s)")
sys.exit(0 if agree == n else 1)
