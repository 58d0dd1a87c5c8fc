#!/usr/bin/env bash
# Build the serving image, run it, wait until every model is loaded (GET /readyz), POST a drawn
# "7" to /predict and expect it back, then check that the container stops on SIGTERM.  The last
# line is "VERDICT: PASS ..." or "VERDICT: FAIL stage=...".
#
#   scripts/check_image.sh                      # docker, or podman where docker has no engine
#   CONTAINER_ENGINE=podman scripts/check_image.sh
#   scripts/check_image.sh --build-arg SERVE_BASE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 \
#                          --build-arg ONNXRUNTIME_PACKAGE=onnxruntime-gpu     # the GPU variant
#   scripts/check_image.sh --keep-image         # keep the image (tag digit-serving:check)
#
# A machine without a registry or a Docker engine may keep a container checker of its own
# (a `shared/tools/container/check_dockerfile.sh` in a folder above this project, or the one
# named by CONTAINER_CHECK): then that tool runs the same check, and the arguments (also e.g.
# --from-map, --build-volume) go to it.  CONTAINER_CHECK=none uses docker or podman anyway.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
sample="$here/smoke-digit-7.png"
expect='"label": ?"7"'

# --- the machine's own checker, when there is one ---
checker=${CONTAINER_CHECK:-}
if [ -z "$checker" ]; then
  dir=$root
  while [ "$dir" != / ]; do
    dir=$(dirname "$dir")
    if [ -x "$dir/shared/tools/container/check_dockerfile.sh" ]; then
      checker="$dir/shared/tools/container/check_dockerfile.sh"
      break
    fi
  done
fi
if [ "$checker" = none ]; then
  checker=""
elif [ -n "$checker" ]; then
  exec bash "$checker" "$root" --health /readyz \
    --post-path /predict --content-type image/png --post-data "@$sample" --expect "$expect" "$@"
fi

# --- otherwise docker or podman, directly ---
verdict() { echo "VERDICT: $*"; }
engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  elif command -v podman >/dev/null; then engine=podman
  else verdict "FAIL stage=setup reason=\"no container engine: install docker or podman\""; exit 1; fi
fi
build_args=() keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --build-arg) build_args+=(--build-arg "${2:?--build-arg needs K=V}"); shift 2 ;;
    --keep-image) keep=1; shift ;;
    *) verdict "FAIL stage=usage reason=\"$1 needs the shared checker (CONTAINER_CHECK)\""; exit 2 ;;
  esac
done
image=digit-serving:check
name=digit-serving-check-$$
cleanup() {
  "$engine" rm -f "$name" >/dev/null 2>&1 || true
  [ "$keep" = 1 ] || "$engine" rmi -f "$image" >/dev/null 2>&1 || true
}
trap cleanup EXIT

started=$(date +%s)
"$engine" build ${build_args[@]+"${build_args[@]}"} -t "$image" "$root" ||
  { verdict "FAIL stage=build reason=\"$engine build failed\""; exit 1; }
build_seconds=$(( $(date +%s) - started ))
"$engine" run -d --name "$name" -p 127.0.0.1::8000 "$image" >/dev/null ||
  { verdict "FAIL stage=run reason=\"$engine run failed\""; exit 1; }
port=$("$engine" port "$name" 8000/tcp | head -n1 | sed 's/.*://')

deadline=$(( $(date +%s) + 120 ))
until curl -fsS --max-time 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
  if [ "$("$engine" inspect -f '{{.State.Running}}' "$name")" != true ]; then
    "$engine" logs "$name" 2>&1 | tail -20
    verdict "FAIL stage=health reason=\"the container exited\""; exit 1
  fi
  if [ "$(date +%s)" -gt "$deadline" ]; then
    verdict "FAIL stage=health reason=\"/readyz not 200 after 120 s\""; exit 1
  fi
  sleep 1
done
answer=$(curl -fsS --max-time 30 -H 'Content-Type: image/png' --data-binary "@$sample" \
  "http://127.0.0.1:$port/predict") || { verdict "FAIL stage=post reason=\"POST /predict failed\""; exit 1; }
echo "$answer" | grep -Eq "$expect" || { verdict "FAIL stage=post reason=\"unexpected answer: $answer\""; exit 1; }

stop_started=$(date +%s)
"$engine" stop -t 10 "$name" >/dev/null
stop_seconds=$(( $(date +%s) - stop_started ))
code=$("$engine" inspect -f '{{.State.ExitCode}}' "$name")
size=$("$engine" image inspect -f '{{.Size}}' "$image")
if [ "$code" != 0 ]; then
  verdict "FAIL stage=stop reason=\"exit status $code after SIGTERM ($stop_seconds s)\""; exit 1
fi
verdict "PASS engine=$engine build=${build_seconds}s size=$(( size / 1000000 ))MB health=/readyz post=/predict:7 stop=${stop_seconds}s/exit=0"
