"""PyTorch networks: exported to ONNX in memory, then ``fhec.onnx.compile_onnx_model`` (docs/onnx.md).

    import fhec.torch
    qm = fhec.torch.compile_torch_model(net, X_train, n_bits=8)
    y = qm.forward(X_test, fhe="execute")

Needs ``torch`` and ``onnx`` (the ``fhec[torch]`` extra).
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np

from .onnx import DEFAULT_N_BITS, QuantizedModule, compile_onnx_model

__all__ = ["compile_torch_model", "QuantizedModule"]

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
) -> QuantizedModule:
    """Exports ``torch_model`` (in eval mode) to ONNX in memory and compiles it as
    ``fhec.onnx.compile_onnx_model`` does; ``X_calib``: calibration inputs (numpy or a tensor)."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("fhec.torch needs PyTorch: pip install 'fhec[torch]'") from e
    X = X_calib.detach().cpu().numpy() if isinstance(X_calib, torch.Tensor) else np.asarray(X_calib)
    X = X.astype(np.float64)
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
    )
