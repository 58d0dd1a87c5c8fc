"""ONNX export: one self-contained file with a dynamic batch axis, checked, and proven equal to PyTorch.

We use the torch.export-based exporter (``dynamo=True``, the default since torch 2.9; the TorchScript
one is deprecated).  It gives the plain graph the service expects (e.g. Sub, Div, Reshape, Gemm, Relu,
Softmax for mnist_mlp) with the batch axis named "batch".  ``external_data=False`` keeps the weights
inside model.onnx, so the file and its sha256 are the whole model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

# The service compares outputs of the graph, not of torch: they must agree to this absolute tolerance.
PARITY_TOLERANCE = 1e-5


class ParityError(RuntimeError):
    """The exported graph does not compute what the PyTorch module computes."""


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str) -> None:
    """Write ``module`` to ``path`` as ONNX, run onnx.checker, and check parity with PyTorch on ``example``.

    ``example`` is a batch of at least two rows: torch.export specialises a batch of one to a
    fixed size, and the parity check below runs both a single row and the whole batch.
    """
    module = module.eval().cpu()
    example = example.cpu()
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=[input_name],
        output_names=[output_name],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    onnx.checker.check_model(str(path), full_check=True)
    check_parity(module, path, example, input_name)


def check_parity(module: nn.Module, path: Path, example: torch.Tensor, input_name: str) -> None:
    """Raise ParityError unless onnxruntime and PyTorch agree within PARITY_TOLERANCE on ``example``.

    Both one row and the whole batch are run, so a batch axis that is not really dynamic fails here.
    """
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (example[:1], example):
        with torch.no_grad():
            expected = module(batch).numpy()
        (actual,) = session.run(None, {input_name: batch.numpy()})
        if actual.shape != expected.shape:
            raise ParityError(f"{path}: onnxruntime returned shape {actual.shape}, PyTorch {expected.shape}")
        difference = float(np.max(np.abs(actual - expected)))
        if not difference <= PARITY_TOLERANCE:  # also catches NaN
            raise ParityError(
                f"{path}: onnxruntime and PyTorch differ by up to {difference:.3g} on a batch of "
                f"{len(batch)} (tolerance {PARITY_TOLERANCE})"
            )
