"""BentoML's side of bench/frameworks.py: the same MLP as a BentoML service, in onnxruntime.

    MODEL_FILE=models/mnist_mlp/3/model.onnx bentoml serve bench.bentoml_service:MnistMlp --port 3000

POST /predict with ``{"inputs": [...]}`` -> ``{"outputs": [...]}`` (BentoML answers GET /readyz
itself); two workers, one onnxruntime thread each, as the other servers of the comparison.
"""

import os

import bentoml
import numpy as np
import onnxruntime as ort


@bentoml.service(workers=2, traffic={"timeout": 30})
class MnistMlp:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["MODEL_FILE"], options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @bentoml.api
    def predict(self, inputs: list) -> dict:
        return {"outputs": self.session.run(None, {self.input: np.asarray(inputs, dtype=np.float32)})[0].tolist()}
