"""PyTorch networks.

Trained in float (post-training quantisation): exported to ONNX in memory, then
``fhec.onnx.compile_onnx_model`` (docs/onnx.md)::

    import fhec.torch
    qm = fhec.torch.compile_torch_model(net, X_train, n_bits=8)
    y = qm.forward(X_test, fhe="execute")

Trained for FHE (quantisation-aware) with this module's layers — ``QuantInput``, ``QuantLinear``,
``QuantConv2d``, ``QuantAvgPool2d``, ``QuantMaxPool2d``, ``QuantActivation`` / ``QuantReLU`` /
``QuantIdentity``, ``QuantAdd`` for skip connections (plain torch; docs/nn.md) — and compiled from their own integers::

    qm = fhec.torch.compile_torch_model(qat_net, X_train, import_qat=True)

Needs ``torch`` (and ``onnx`` for float networks: the ``fhec[torch]`` extra).
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np

from .onnx import DEFAULT_N_BITS, QuantizedModule, compile_onnx_model

#: the QAT layers (``fhec._torch_qat``), imported with torch on first use
_QAT = ("QValue", "QuantInput", "QuantLinear", "QuantConv2d", "QuantAvgPool2d", "QuantMaxPool2d", "QuantActivation",
        "QuantReLU", "QuantIdentity", "QuantAdd")
__all__ = ["compile_torch_model", "QuantizedModule", *_QAT]


def __getattr__(name: str) -> Any:
    # the QAT layers subclass torch's modules: torch is imported on their first use only
    if name in _QAT:
        try:
            from . import _torch_qat
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("fhec.torch's QAT layers need PyTorch: pip install 'fhec[torch]'") from e
        return getattr(_torch_qat, name)
    raise AttributeError(f"module 'fhec.torch' has no attribute {name!r}")

#: The opset the TorchScript exporter (torch < 2.9) is asked for; torch's newer exporter (``dynamo=True``,
#: its default from 2.9) picks its own (18 and later). fhec reads opsets 7 to 23.
OPSET = 17


def _export(torch: Any, net: Any, X: np.ndarray) -> bytes:
    example = (torch.tensor(X[:2], dtype=torch.float32),)
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    if (major, minor) >= (2, 9):
        program = torch.onnx.export(
            net,
            example,
            input_names=["x"],
            output_names=["y"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
        return program.model_proto.SerializeToString()
    buf = io.BytesIO()
    torch.onnx.export(
        net,
        example,
        buf,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        opset_version=OPSET,
    )
    return buf.getvalue()


def compile_torch_model(
    torch_model: Any,
    X_calib: Any,
    n_bits: int | Mapping[str, int] = DEFAULT_N_BITS,
    rounding_threshold_bits: int | str | Mapping[str, Any] | None = None,
    p_error: float | None = None,
    global_p_error: float | None = None,
    partitions: bool = True,
    import_qat: bool = False,
    windows: bool = False,
    output_parts: int | str = 1,
    max_key_bytes: int | None = None,
) -> QuantizedModule:
    """Compiles a torch network. ``X_calib``: inputs (numpy or a tensor, first axis the samples).

    Float networks (``import_qat=False``): exported (in eval mode) to ONNX in memory and compiled as
    ``fhec.onnx.compile_onnx_model`` does, ``X_calib`` calibrating the quantisers.

    ``import_qat=True``: a network built from this module's QAT layers, compiled from its own integers
    (its quantisers are already calibrated; ``X_calib`` gives the input shape and is checked against the
    program: the compiled network must reproduce the model's integers on it). ``n_bits`` and
    ``rounding_threshold_bits`` belong to the layers then and must be left out.

    ``windows`` and ``output_parts``: as for ``compile_onnx_model`` (float networks only);
    ``max_key_bytes``: as for ``compile_onnx_model`` (every network)."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("fhec.torch needs PyTorch: pip install 'fhec[torch]'") from e
    X = X_calib.detach().cpu().numpy() if isinstance(X_calib, torch.Tensor) else np.asarray(X_calib)
    X = X.astype(np.float64)
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError("X_calib must be a batch of samples (first axis: samples)")
    qat = any(type(m).__module__ == "fhec._torch_qat" for m in torch_model.modules())
    if import_qat:
        if n_bits is not DEFAULT_N_BITS or rounding_threshold_bits is not None:
            raise ValueError("import_qat=True: the bit widths are the QAT layers' own (leave n_bits and "
                             "rounding_threshold_bits out)")
        if windows or output_parts != 1:
            raise ValueError("import_qat=True: windows and output_parts apply to float networks (leave them out)")
        return _compile_qat(torch, torch_model, X, p_error, global_p_error, partitions, max_key_bytes)
    if qat:
        raise ValueError("this network is built from fhec.torch's QAT layers: compile it with import_qat=True")
    was_training = torch_model.training
    torch_model.eval()
    try:
        model = _export(torch, torch_model, X)
    finally:
        torch_model.train(was_training)
    return compile_onnx_model(
        model,
        X,
        n_bits=n_bits,
        rounding_threshold_bits=rounding_threshold_bits,
        p_error=p_error,
        global_p_error=global_p_error,
        partitions=partitions,
        windows=windows,
        output_parts=output_parts,
        max_key_bytes=max_key_bytes,
    )


def _compile_qat(torch: Any, net: Any, X: np.ndarray, p_error: float | None, global_p_error: float | None,
                 partitions: bool, max_key_bytes: int | None) -> QuantizedModule:
    import json

    from . import _fhec, _torch_qat
    from ._circuit import Circuit, _key_budget

    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.as_tensor(X, dtype=torch.float32))
    finally:
        net.train(was_training)
    if not isinstance(out, _torch_qat.QValue):
        raise TypeError(f"import_qat=True: the network returned {type(out).__name__}, not a QValue: build it from "
                        "fhec.torch's QAT layers, starting with QuantInput, and return the last layer's output")
    spec = _torch_qat.integer_network(out, tuple(X.shape[1:]))
    q = _fhec.mlp_network(json.dumps(spec))
    qm = QuantizedModule(q, Circuit(q.compile(p_error, global_p_error, partitions, None, _key_budget(max_key_bytes)),
                                    True))
    qm.network = spec
    # the program must reproduce the model's own integers (the clear interpreter on the given inputs)
    rows = qm.quantize_input(X.astype(np.float32))  # the values torch saw
    mine = qm._integers(rows[: min(len(rows), 64)], "disable")
    theirs = out.ints.reshape(out.ints.shape[0], -1)[: len(mine)].cpu().numpy().astype(np.int64)
    if not np.array_equal(mine, theirs):
        bad = int((mine != theirs).any(axis=1).sum())
        raise RuntimeError(f"fhec.torch: the compiled network differs from the model's integers on {bad} of "
                             f"{len(mine)} samples (a bug: please report it)")
    return qm
