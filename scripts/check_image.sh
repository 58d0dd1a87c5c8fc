#!/usr/bin/env bash
# Build the serving image, run it, wait until every model is loaded (GET /readyz), POST a
# drawn "7" to /predict and expect it back, then check that the container stops on SIGTERM.
# Needs root and no Docker engine (podman; see check_dockerfile.sh, copied unchanged from the
# team's shared tools).  The last line is "VERDICT: PASS ..." or "VERDICT: FAIL stage=...".
#
#   scripts/check_image.sh                  # the default (CPU) serve target
#   scripts/check_image.sh --keep-image     # keep it as localhost/ctrcheck-build/<dir name>
#
# The GPU variant, its CUDA base mapped onto a Debian without Python (no GPU here: the
# service then runs on onnxruntime-gpu's CPU fallback, which it reports):
#   scripts/check_image.sh \
#     --build-arg SERVE_BASE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 \
#     --build-arg ONNXRUNTIME_PACKAGE=onnxruntime-gpu \
#     --from-map nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04=debian:trixie-slim
#
# Extra arguments go to check_dockerfile.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/check_dockerfile.sh" "$here/.." \
  --health /readyz \
  --post-path /predict --content-type image/png --post-data "@$here/smoke-digit-7.png" \
  --expect '"label": ?"7"' \
  "$@"
