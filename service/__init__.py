"""A model-serving microservice: Flask + onnxruntime, run by gunicorn.  Never imports torch.

The path of a request::

    HTTP body --(service.api: parse multipart / raw image / JSON / .npy)-->
    service.imaging (image bytes -> 28x28 float array, the MNIST recipe)  or  service.tensors
    (JSON/npy numbers -> float32 arrays checked against the manifest's input shape) -->
    service.inference (batch, run) --> service.runtime.LoadedModel (the onnxruntime session of
    the model named by the request, found in service.registry) --> probabilities / outputs -->
    JSON (service.jsonio: never NaN) or .npy.

The path of a model: ``models/<name>/<version>/`` on disk --> service.repository (manifest valid,
sha256 matches) --> service.runtime (session; graph matches the manifest) --> service.registry
(serves the newest valid version, polls for new ones and swaps them in atomically).

Module map: config (environment -> ServiceConfig), manifest (the contract with training),
repository (files), runtime (sessions), registry (versions served), imaging, tensors, inference
(the protocol-free core), verdict (digit / uncertain / not a digit, from the manifest),
explanation (the prepared picture, occlusion maps), schemas (request and response bodies, also
the OpenAPI document's), errors (error types + JSON handlers), jsonio, metrics (Prometheus), logs
(JSON lines), v2_binary (the Open Inference Protocol's binary framing), api/ (blueprints: predict,
models, health, metrics, admin, v2, openapi, page, observability); worker (the gunicorn worker
class: buffering front, admission control, drain) and lifecycle (whether the process drains).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from service.config import ServiceConfig

log = logging.getLogger(__name__)


def create_app(config: ServiceConfig | None = None) -> Flask:
    """Build the app and load every model.

    Under gunicorn (without --preload) this runs in each worker after the fork, so every
    onnxruntime session belongs to the process that uses it.
    """
    # Imported here, not at the top: gunicorn.conf.py imports service.config and service.logs in
    # the master, and onnxruntime imported before a fork makes the workers hang or abort when
    # they exit (tests/e2e checks this).  Importing the package must stay light.
    from flask import Flask

    from service.api import EXTENSION, register_blueprints
    from service.config import ServiceConfig
    from service.errors import register_error_handlers
    from service.imaging import configure_pillow
    from service.registry import ModelRegistry
    from service.runtime import RuntimeSettings

    config = config or ServiceConfig.from_env()
    app = Flask(__name__, static_folder=None)
    app.config.update(
        DEBUG=False,
        MAX_CONTENT_LENGTH=config.max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=config.max_form_memory_bytes,
        MAX_FORM_PARTS=config.max_images_per_request + 16,  # files plus a few text fields
    )
    configure_pillow(config.max_image_pixels)

    settings = RuntimeSettings(providers=config.execution_providers, intra_op_threads=config.session_threads)
    registry = ModelRegistry(config.model_repository, settings)
    registry.refresh()
    log.info(
        "models loaded",
        extra={
            "repository": str(config.model_repository.resolve()),
            "models": {name: state.served.number if state.served else None for name, state in registry.states().items()},
            "intra_op_threads": settings.intra_op_threads,
            "workers": config.workers,
        },
    )
    if config.refresh_interval > 0:
        registry.start_polling(config.refresh_interval)

    app.extensions[EXTENSION] = {"config": config, "registry": registry}
    register_error_handlers(app)
    register_blueprints(app, config)
    return app
