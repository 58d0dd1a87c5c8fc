# syntax=docker/dockerfile:1
#
# Images of this project:
#
#   serve (default)  CPU serving: gunicorn + Flask + onnxruntime and the committed models/; no torch.
#                      docker build -t digit-serving .
#                      docker run --rm -p 8000:8000 digit-serving
#   serve on CUDA    the same stage on an NVIDIA CUDA runtime base, with onnxruntime-gpu:
#                      docker build -t digit-serving:gpu \
#                        --build-arg SERVE_BASE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 \
#                        --build-arg ONNXRUNTIME_PACKAGE=onnxruntime-gpu .
#                      docker run --rm --gpus all -p 8000:8000 digit-serving:gpu
#                    The CUDA major version must be the one onnxruntime-gpu is built for
#                    (1.31: CUDA 13 + cuDNN 9).  Otherwise onnxruntime falls back to CPU with
#                    only a log line: GET /models/<name> shows the provider really used.
#   train            fits the models (torch) from MNIST mounted at /data (MNIST/raw inside)
#                    into a model repository mounted at /models; arguments go to
#                    `python -m training` (e.g. `mnist_mlp --epochs 5`):
#                      docker build --target train -t digit-serving-train .
#                      docker run --rm --user "$(id -u):$(id -g)" \
#                        -v "$PWD/data:/data:ro" -v "$PWD/models:/models" digit-serving-train
#                    pip fetches torch and its CUDA wheels (several GB) from PyPI.  A machine
#                    that keeps wheels on disk mounts them into the build instead (podman):
#                      podman build --target train -t digit-serving-train \
#                        --volume /opt/pypi-more:/opt/pypi-more:ro \
#                        --build-arg EXTRA_INDEX_URL=file:///opt/pypi-more/simple .
#
# Run-time settings are environment variables: PORT (8000), WORKERS, WORKER_THREADS,
# INTRA_OP_THREADS, MODEL_REPOSITORY, ... (README.md lists them).
#
# Plain Dockerfile syntax only (no RUN heredocs, no COPY --link) so that podman 4.3 builds it
# as well as Docker does: scripts/check_image.sh builds, runs and probes it.

# The Debian release is pinned, so apt package names and glibc cannot change under us.
ARG PYTHON_IMAGE=python:3.11-slim-trixie
# The base of the serve stage (same as PYTHON_IMAGE, or a CUDA runtime for the GPU image).
ARG SERVE_BASE=python:3.11-slim-trixie


# ---------------------------------------------------------------- train
FROM ${PYTHON_IMAGE} AS train
ARG EXTRA_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin app
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/ service/
COPY training/ training/
# The cache mount keeps downloaded wheels between builds without putting them in a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ${EXTRA_INDEX_URL:+--extra-index-url "$EXTRA_INDEX_URL"} ".[train]"
USER 10001:10001
# What `python -m training` uses when --data-dir and --repository are not given, so that
# arguments such as `mnist_mlp --epochs 5` can be added without repeating the mount points.
ENV MNIST_DATA_DIR=/data \
    MODEL_REPOSITORY=/models
ENTRYPOINT ["python", "-m", "training"]


# ---------------------------------------------------------------- serving runtime
# What both serving stages below need: a Python and the user the server runs as.
FROM ${SERVE_BASE} AS serve-runtime
# The CUDA images carry no Python: take the distribution's (3.12 on Ubuntu 24.04).
RUN if ! command -v python3 >/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin app


# ---------------------------------------------------------------- serving install
FROM serve-runtime AS serve-build
# onnxruntime-gpu for a CUDA base: both packages provide the `onnxruntime` module.
ARG ONNXRUNTIME_PACKAGE=onnxruntime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# A virtualenv, because Ubuntu's Python refuses system-wide pip installs (PEP 668).
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only the service package: the base install is the serving side, with no training/ code.
# COPY rather than RUN --mount=type=bind: podman 4.3 reuses a cached layer even when the
# mounted files changed, which would ship stale code.
COPY pyproject.toml README.md ./
COPY service/ service/
# onnxruntime-gpu is released a little after onnxruntime, so the GPU image takes its newest
# release rather than the same version number.  pip and setuptools are not needed at run
# time (24 MB) and leave in the same layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
    && if [ "$ONNXRUNTIME_PACKAGE" != onnxruntime ]; then \
        pip uninstall -y onnxruntime \
        && pip install "${ONNXRUNTIME_PACKAGE}"; \
    fi \
    && pip uninstall -y setuptools pip


# ---------------------------------------------------------------- serve (default target)
FROM serve-runtime AS serve
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    PORT=8000 \
    MODEL_REPOSITORY=/app/models
COPY --from=serve-build /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py ./
COPY models/ models/
# A numeric id: Kubernetes' runAsNonRoot can only verify a number (deploy/deployment.yaml).
USER 10001:10001
EXPOSE 8000
# slim images have no curl; urlopen raises (exit 1) on anything but a 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
# Exec form: gunicorn is PID 1, receives SIGTERM itself and shuts down gracefully.
ENTRYPOINT ["gunicorn", "--config", "gunicorn.conf.py"]
CMD ["service:create_app()"]
