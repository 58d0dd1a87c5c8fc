"""TorchServe's side of bench/frameworks.py: the same MLP behind TorchServe, in onnxruntime.

A module-level handler: TorchServe calls ``handle(None, context)`` once to load, then
``handle(requests, context)`` with the requests of a batch (one, as frameworks.py registers the
model), each body ``{"inputs": [...]}`` already parsed by TorchServe's Python backend.
"""

import os

import numpy as np
import onnxruntime as ort

_model = {}


def handle(data, context):
    if data is None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        path = os.path.join(context.system_properties["model_dir"], "model.onnx")
        _model["session"] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        _model["input"] = _model["session"].get_inputs()[0].name
        return None
    answers = []
    for request in data:
        pixels = np.asarray((request.get("body") or request.get("data"))["inputs"], dtype=np.float32)
        answers.append({"outputs": _model["session"].run(None, {_model["input"]: pixels})[0].tolist()})
    return answers
