"""The exported ONNX graph computes what the PyTorch module computes, at any batch size."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from training.export import ParityError, check_parity, export_onnx
from training.tasks import TASKS, MnistTask, Settings


def _trained(name, mnist_dir=None):
    if name == "mnist_mlp":
        return MnistTask().train(Settings(data_dir=mnist_dir, epochs=1, train_limit=512, test_limit=64))
    return TASKS[name].train(Settings(epochs=20))  # parity does not need a converged model


@pytest.mark.parametrize("name", list(TASKS))
def test_onnx_matches_pytorch_at_batch_1_7_and_64(name, request, tmp_path):
    task = TASKS[name]
    trained = _trained(name, request.getfixturevalue("mnist_dir") if name == "mnist_mlp" else None)
    path = tmp_path / "model.onnx"
    export_onnx(trained.module, trained.example, path, task.input.name, task.output.name)

    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # self-contained: no external data
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (graph_input,), (graph_output,) = session.get_inputs(), session.get_outputs()
    assert (graph_input.name, graph_output.name) == (task.input.name, task.output.name)
    assert graph_input.shape == ["batch", *task.input.shape[1:]]
    assert graph_output.shape == ["batch", *task.output.shape[1:]]

    generator = torch.Generator().manual_seed(0)
    for batch_size in (1, 7, 64):
        rows = trained.example[torch.randint(len(trained.example), (batch_size,), generator=generator)]
        with torch.no_grad():
            expected = trained.module(rows).numpy()
        (actual,) = session.run(None, {task.input.name: rows.numpy()})
        assert actual.shape == (batch_size, *task.output.shape[1:])
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def test_mnist_graph_normalises_and_ends_with_softmax(mnist_dir, tmp_path):
    trained = _trained("mnist_mlp", mnist_dir)
    path = tmp_path / "model.onnx"
    export_onnx(trained.module, trained.example, path, "pixels", "probabilities")
    operators = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert operators[-1] == "Softmax"
    assert {"Sub", "Div"} <= set(operators)  # the normalisation lives in the graph


def test_parity_check_rejects_a_graph_that_computes_something_else(trained_projection, tmp_path):
    path = tmp_path / "model.onnx"
    export_onnx(trained_projection.module, trained_projection.example, path, "x", "y")
    different = copy.deepcopy(trained_projection.module)
    with torch.no_grad():
        different.weight.add_(1e-3)
    with pytest.raises(ParityError, match="differ by up to"):
        check_parity(different, path, trained_projection.example, "x")
