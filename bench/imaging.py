"""The MNIST recipe (service/imaging.py) against an earlier version of itself: speed and sameness.

    python -m bench.imaging                          # timing, then every picture set: about 15 minutes
    python -m bench.imaging --check none             # timing only, about a minute
    python -m bench.imaging --time none --limit 500  # sameness on the first 500 pictures of each set
    python -m bench.imaging --reference 382e3fb      # against the recipe at that commit (the default)

The reference is ``service/imaging.py`` as it was at a git commit (``--reference``), loaded
from ``git show`` into a module of its own, so no copy of the old code lives in the tree.

Timing: the CPU time of ``prepare`` (bytes -> 28x28) for each payload, the reference and the
current recipe interleaved round by round in alternating order, so that load from other
processes hits both alike; the naive app's open + convert("L") + resize is timed the same way
for scale.  Then POST /predict through the service's Flask app with the naive resize, the
reference and the current recipe in turn, and through bench/naive_app.py: what the service
costs around the recipe.  Medians over rounds of many calls, in-process, no server.  Pillow is
configured as the service configures it (``configure_pillow``) for every contender.

Sameness: every picture of a broad corpus through both recipes: the 28x28 outputs' largest and
mean absolute difference, whether both refuse the same pictures (NoInk, InvalidImage), and how
many answers of the newest ``mnist_mlp`` (onnxruntime) change; where the picture has a label,
the accuracy of both.  The corpus: the official MNIST test digits as people send them (dark on
white, anywhere on a 280x280 RGB canvas), the same on unevenly lit noisy paper, as transparent
canvases, inverted (light on dark) and stretched to odd shapes; the 28x28 digits themselves and
dark-on-white 28x28; scikit-learn's UCI digits enlarged; handwriting-font digits; non-digits and
blends; tiny and huge canvases; phone photos (``serve_payloads.phone_photo``) and the pictures
in examples/.  Needs the MNIST files (``--data-dir``, default $MNIST_DATA_DIR or
../shared/datasets); nothing here asserts.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from bench.serve_payloads import drawn_digit, phone_photo, png_bytes
from service import imaging
from service.config import ServiceConfig
from service.errors import InvalidImage, NoInk
from service.manifest import MANIFEST_FILENAME, MODEL_FILENAME, ImageSpec, read_manifest
from service.repository import version_numbers

ROOT = Path(__file__).resolve().parents[1]
SPEC = ImageSpec(preprocessing="mnist", height=28, width=28, channels=1)
MODEL = "mnist_mlp"
# The recipe before the float32 work was moved to in-place steps and a separable paper surface.
DEFAULT_REFERENCE = "382e3fb"


def reference_module(commit: str) -> types.ModuleType:
    """service/imaging.py as it was at ``commit``, as a module of its own."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:service/imaging.py"], check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType(f"imaging_at_{commit}")
    exec(compile(source, f"{commit}:service/imaging.py", "exec"), module.__dict__)
    return module


def naive_prepare(data: bytes, spec: ImageSpec) -> np.ndarray:
    """What bench/naive_app.py does with an upload."""
    image = Image.open(io.BytesIO(data)).convert("L").resize((spec.width, spec.height))
    return np.asarray(image, dtype=np.float32) / 255


def encode(picture: np.ndarray | Image.Image, mode: str | None = None, fmt: str = "PNG") -> bytes:
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, fmt)
    return buffer.getvalue()


# --- timing ---------------------------------------------------------------------------------------


def timing_payloads(data_dir: Path) -> dict[str, bytes]:
    from training.evaluate import as_people_send

    digits, _ = mnist_test(data_dir)
    return {
        "280x280 RGB PNG (bench.compare png280)": png_bytes(drawn_digit(7, 280).convert("RGB")),
        "MNIST digit as sent, 280x280 RGB PNG": encode(as_people_send(digits[0], np.random.default_rng(0)), "RGB"),
        "phone photo 3000x2000 JPEG": phone_photo(),
    }


def time_calls(function: Callable[[], object], calls: int) -> float:
    """CPU seconds per call of this thread: time spent waiting for a CPU another job holds is not counted."""
    started = time.thread_time()
    for _ in range(calls):
        function()
    return (time.thread_time() - started) / calls


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int, seconds: float) -> dict[str, float]:
    """Median CPU ms per call of each contender, timed round by round in alternating order."""
    for function in contenders.values():
        function()  # warm caches (and the recipe's per-size tables)
    slowest = max(time_calls(function, 3) for function in contenders.values())
    calls = max(1, int(seconds / rounds / len(contenders) / slowest))
    times: dict[str, list[float]] = {key: [] for key in contenders}
    for round_number in range(rounds):
        for key in list(contenders) if round_number % 2 == 0 else list(reversed(contenders)):
            times[key].append(time_calls(contenders[key], calls) * 1e3)
    return {key: statistics.median(values) for key, values in times.items()}


def timing(reference: types.ModuleType, payloads: dict[str, bytes], rounds: int, seconds: float) -> None:
    print(f"prepare(bytes) -> 28x28, CPU ms per call, median of {rounds} rounds, interleaved in-process")
    print(f"{'payload':42s} {'naive':>8s} {'reference':>10s} {'current':>8s}"
          f" {'current/ref':>12s} {'current-naive':>14s}")
    for name, data in payloads.items():
        median = interleaved(
            {
                "naive": lambda: naive_prepare(data, SPEC),
                "reference": lambda: reference.prepare(data, SPEC),
                "current": lambda: imaging.prepare(data, SPEC),
            },
            rounds,
            seconds,
        )
        print(
            f"{name:42s} {median['naive']:8.3f} {median['reference']:10.3f} {median['current']:8.3f}"
            f" {median['current'] / median['reference']:12.2f} {median['current'] - median['naive']:14.3f}"
        )


def app_timing(reference: types.ModuleType, models: Path, data: bytes, rounds: int, seconds: float) -> None:
    """POST /predict through the service's Flask app with each recipe in turn, and through the naive app.

    What the service costs around the recipe, and so how fast the recipe would have to be for a
    ratio to the naive app.  Test clients in this process: no server, no network, one
    onnxruntime thread each (the calling one, so that its CPU time is counted).
    """
    from bench.naive_app import create_app as create_naive_app
    from service import create_app

    os.environ["MODEL_REPOSITORY"] = str(models)  # the naive app's only setting
    config = ServiceConfig(model_repository=models, refresh_interval=0, execution_providers="cpu", intra_op_threads=1)
    service, naive = create_app(config).test_client(), create_naive_app().test_client()
    current = imaging.prepare

    def post(client, prepare: Callable[[bytes, ImageSpec], np.ndarray] = current) -> Callable[[], object]:
        def call() -> None:
            imaging.prepare = prepare  # the service's inference calls imaging.prepare
            assert client.post("/predict", data=data, content_type="image/png").status_code == 200

        return call

    try:
        median = interleaved(
            {
                "naive app": post(naive),
                "service, naive resize": post(service, naive_prepare),
                "service, reference": post(service, reference.prepare),
                "service, current": post(service, current),
            },
            rounds,
            seconds,
        )
    finally:
        imaging.prepare = current
    print(f"\nPOST /predict of the 280x280 RGB PNG in-process, CPU us per request, median of {rounds} rounds")
    for key, milliseconds in median.items():
        print(f"{key:24s} {milliseconds * 1e3:8.0f}   naive app / this {median['naive app'] / milliseconds:5.2f}")


# --- sameness -------------------------------------------------------------------------------------


def mnist_test(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = data_dir / "MNIST" / "raw"
    return read_idx(raw / "t10k-images-idx3-ubyte"), read_idx(raw / "t10k-labels-idx1-ubyte").astype(np.int64)


def read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    dimensions = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def uneven_light(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark on white -> on paper lit from one side (a tilted plane and a curve), with sensor noise."""
    height, width = picture.shape
    rows, cols = np.mgrid[0:height, 0:width] / max(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    lighting = rng.uniform(150, 230) + rng.uniform(20, 70) * (np.cos(angle) * cols + np.sin(angle) * rows - 0.5)
    lighting -= rng.uniform(0, 40) * ((rows - 0.5) ** 2 + (cols - rng.uniform(0, 1)) ** 2)
    ink = rng.uniform(20, 70)
    scene = lighting * (picture / 255.0) + ink * (1 - picture / 255.0) + rng.normal(0, rng.uniform(1, 8), picture.shape)
    return np.clip(scene, 0, 255).astype(np.uint8)


def transparent(picture: np.ndarray) -> Image.Image:
    """Dark on white -> black ink whose alpha is the ink, on transparent pixels (a canvas export)."""
    rgba = Image.new("RGBA", (picture.shape[1], picture.shape[0]), (0, 0, 0, 0))
    rgba.putalpha(Image.fromarray(255 - picture))
    return rgba


def resized(picture: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(picture).resize((side, side), Image.Resampling.BILINEAR))


# (width, height): strips, slivers, and sizes just past the paper grid and the working size.
ODD_SHAPES = [(300, 40), (40, 300), (1200, 90), (6, 60), (65, 65), (63, 129), (1030, 700), (2, 280)]


def corpus(data_dir: Path, limit: int | None) -> Iterator[tuple[str, list[int], Callable[[int], bytes]]]:
    """(set name, labels (-1: none), index -> upload bytes) for every set of pictures."""
    from training import evaluate

    digits, labels = mnist_test(data_dir)
    as_sent = evaluate.sent_like_people("mnist as sent", digits, labels, seed=2024)
    count = len(digits) if limit is None else min(limit, len(digits))
    few = count if limit is None else min(limit, 1000)

    def rng(seed: int, index: int) -> np.random.Generator:
        return np.random.default_rng([seed, index])

    yield "mnist as sent, RGB PNG", labels[:count], lambda i: encode(as_sent.draw(i), "RGB")
    yield "mnist on uneven noisy paper, JPEG", labels[:few], lambda i: encode(
        uneven_light(as_sent.draw(i), rng(7, i)), "RGB", "JPEG")
    yield "mnist transparent canvas, RGBA PNG", labels[:few], lambda i: encode(transparent(as_sent.draw(i)))
    yield "mnist inverted (light on dark)", labels[:few], lambda i: encode(255 - as_sent.draw(i))
    yield "mnist 28x28 as in MNIST", labels[:few], lambda i: encode(digits[i])
    yield "mnist 28x28 dark on white, RGB", labels[:few], lambda i: encode(255 - digits[i], "RGB")
    yield "mnist tiny 8-20 px", labels[:few], lambda i: encode(resized(255 - digits[i], 8 + i % 13))
    yield "mnist stretched to odd shapes", labels[:few], lambda i: encode(
        Image.fromarray(as_sent.draw(i)).resize(ODD_SHAPES[i % len(ODD_SHAPES)]))
    yield "mnist huge 1500-4000 px", labels[: min(few, 100)], lambda i: encode(
        resized(as_sent.draw(i), 1500 + (i * 577) % 2500), "RGB", "JPEG")
    for pictures in (evaluate.uci_digits(), evaluate.font_digits(), evaluate.nondigit_evaluation(),
                     evaluate.blends(digits, labels)):
        pictures = pictures.head(None if limit is None else min(limit, len(pictures)))
        yield pictures.name, pictures.labels, lambda i, draw=pictures.draw: encode(draw(i))
    sizes = [(3000, 2000), (2000, 3000), (1600, 1200), (800, 600), (4000, 3000)]
    yield "phone photos", [7] * len(sizes), lambda i: phone_photo(*sizes[i], quality=85 + i)
    examples = sorted(path for path in (ROOT / "examples").iterdir() if path.suffix in (".png", ".jpg"))
    names = " ".join(path.name for path in examples)
    yield f"examples/ {names}", [-1] * len(examples), lambda i: examples[i].read_bytes()


def outcome(prepare: Callable[[bytes, ImageSpec], np.ndarray], data: bytes) -> np.ndarray | str:
    try:
        return prepare(data, SPEC)
    except (NoInk, InvalidImage) as refusal:
        return type(refusal).__name__


def newest_session(models: Path) -> ort.InferenceSession:
    version_dir = models / MODEL / str(version_numbers(models / MODEL)[-1])
    read_manifest(version_dir / MANIFEST_FILENAME)  # the same check the service makes
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(version_dir / MODEL_FILENAME), options, providers=["CPUExecutionProvider"])


def sameness(reference: types.ModuleType, data_dir: Path, models: Path, limit: int | None) -> None:
    session = newest_session(models)
    input_name = session.get_inputs()[0].name

    def answers(batch: list[np.ndarray]) -> np.ndarray:
        return session.run(None, {input_name: np.stack(batch)[:, None].astype(np.float32)})[0]

    print(f"\nsameness against {reference.__name__}, model {MODEL} v{version_numbers(models / MODEL)[-1]}")
    print(f"{'set':44s} {'pictures':>8s} {'max |d|':>9s} {'mean |d|':>9s} {'refusals':>9s} {'changed':>8s}"
          f" {'accuracy ref -> current':>24s}")
    totals = {"pictures": 0, "changed": 0, "refusals differ": 0}
    for name, labels, upload in corpus(data_dir, limit):
        old_batch, new_batch, kept_labels = [], [], []
        refusals, refusals_differ, largest, total_difference = 0, 0, 0.0, 0.0
        for index in range(len(labels)):
            data = upload(index)
            old, new = outcome(reference.prepare, data), outcome(imaging.prepare, data)
            if isinstance(old, str) or isinstance(new, str):
                refusals += 1
                refusals_differ += not (isinstance(old, str) and isinstance(new, str) and old == new)
                continue
            difference = np.abs(old - new)
            largest = max(largest, float(difference.max()))
            total_difference += float(difference.mean())
            old_batch.append(old)
            new_batch.append(new)
            kept_labels.append(labels[index])
        changed, accuracy = 0, ""
        if old_batch:
            old_answers, new_answers = answers(old_batch).argmax(axis=1), answers(new_batch).argmax(axis=1)
            changed = int(np.sum(old_answers != new_answers))
            truth = np.asarray(kept_labels)
            if np.all(truth >= 0):
                accuracy = f"{np.mean(old_answers == truth):.4f} -> {np.mean(new_answers == truth):.4f}"
        mean = total_difference / max(1, len(old_batch))
        differ = f" ({refusals_differ} differ)" if refusals_differ else ""
        print(f"{name[:44]:44s} {len(labels):8d} {largest:9.2e} {mean:9.2e} {refusals:9d}"
              f" {changed:8d} {accuracy:>24s}{differ}", flush=True)
        totals["pictures"] += len(labels)
        totals["changed"] += changed
        totals["refusals differ"] += refusals_differ
    print(f"in all: {totals['pictures']} pictures, {totals['changed']} answers changed "
          f"({totals['changed'] / max(1, totals['pictures']):.3%}), {totals['refusals differ']} refusals differ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.imaging", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", default=DEFAULT_REFERENCE, help="the git commit whose recipe to compare with")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("MNIST_DATA_DIR") or ROOT.parent / "shared" / "datasets")
    )
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--time", choices=["all", "none"], default="all")
    parser.add_argument("--check", choices=["all", "none"], default="all")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=6.0, help="time per payload, all contenders and rounds")
    parser.add_argument("--limit", type=int, help="at most N pictures per set (a quick look)")
    arguments = parser.parse_args(argv)
    reference = reference_module(arguments.reference)
    # Pillow's process-wide settings as the service makes them (PILLOW_BLOCKS_MAX=0 in the
    # environment: without its buffer pool); they apply to every contender alike.
    imaging.configure_pillow(ServiceConfig.from_env().max_image_pixels)
    if arguments.time == "all":
        payloads = timing_payloads(arguments.data_dir)
        timing(reference, payloads, arguments.rounds, arguments.seconds)
        app_timing(reference, arguments.models, next(iter(payloads.values())), arguments.rounds, arguments.seconds)
    if arguments.check == "all":
        sameness(reference, arguments.data_dir, arguments.models, arguments.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
