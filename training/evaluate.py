"""How honest the image model's answers are, on pictures as people send them, through POST /predict.

    python -m training.evaluate --data-dir ../shared/datasets                    # in-process app on ./models
    python -m training.evaluate --data-dir ../shared/datasets --gunicorn         # a real gunicorn on 127.0.0.1
    python -m training.evaluate --data-dir ../shared/datasets --url http://127.0.0.1:8000

The sets (each picture drawn the same way every time, from its index):
- ``official``: the 10,000 official MNIST test digits, as 28x28 PNGs (raw) and drawn as people
  send them (dark ink on white, enlarged 4x to 9x, anywhere on a 280x280 RGB canvas);
- ``uci``: scikit-learn's ``load_digits``, 1,797 scanned digits of writers MNIST never saw (the UCI
  "optical recognition of handwritten digits" test set, 8x8), enlarged to 32-128 px with margins;
- ``fonts``: the ten digits in each handwriting font installed (Debian's fonts-dkg-handwriting,
  fonts-breip, fonts-bwht, ... see HANDWRITING_FONT_FILES), distorted like a hand;
- ``nondigits``: synthetic non-digits of kinds training never saw (``nondigits.EVALUATION_KINDS``),
  and ``nondigits_seen_kinds``: new pictures of the training kinds, for comparison;
- ``blends``: 1,000 pairs of different official test digits averaged into one picture.
None of them is ever trained on.  Training (``MnistTask``) computes the same figures in-process
with the service's own preprocessing and writes them into the manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service import imaging, verdict
from service.errors import NoInk
from service.manifest import ImageSpec, Verdict
from training import nondigits

OFFICIAL_CANVAS = 280
# Handwriting fonts from Debian packages (apt-get install fonts-dkg-handwriting fonts-breip
# fonts-bwht fonts-femkeklaver fonts-humor-sans fonts-rufscript fonts-sjfonts fonts-comic-neue
# fonts-dancingscript fonts-ecolier-court fonts-klee); those installed are used.
HANDWRITING_FONT_FILES = (
    "truetype/fifthhorseman/dkg*.ttf",
    "truetype/breip/*.ttf",
    "opentype/bwht/*.otf",
    "truetype/femkeklaver/*.ttf",
    "truetype/humor-sans/*.ttf",
    "truetype/rufscript/*.ttf",
    "truetype/sjfonts/*.ttf",
    "opentype/comic-neue/*.otf",
    "opentype/dancingscript/*.otf",
    "truetype/ecolier-court/*.ttf",
    "truetype/klee/*.ttf",
)
FONT_VARIANTS = 8  # distorted renderings of each digit in each font
NONDIGIT_EVALUATION_COUNT = 2500
NONDIGIT_EVALUATION_SEED = 8080
BLEND_COUNT = 1000


@dataclass(frozen=True)
class PictureSet:
    """Pictures drawn on demand (a set of 10,000 280x280 canvases would not fit in memory well)."""

    name: str
    labels: np.ndarray  # the digit, or -1 for a non-digit
    draw: Callable[[int], np.ndarray]  # index -> uint8 grayscale picture, as the person sends it
    kinds: tuple[str, ...] = ()  # per picture, for the non-digits

    def __len__(self) -> int:
        return len(self.labels)

    def pictures(self) -> Iterator[np.ndarray]:
        return (self.draw(index) for index in range(len(self)))

    def head(self, count: int | None) -> PictureSet:
        """The first ``count`` pictures (all of them for None)."""
        return PictureSet(self.name, self.labels[:count], self.draw, self.kinds[:count])


def as_people_send(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 light-on-dark MNIST digit as dark ink on white, 4x-9x larger, anywhere on 280x280."""
    size = int(rng.integers(28 * 4, 28 * 9 + 1))
    ink = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (OFFICIAL_CANVAS, OFFICIAL_CANVAS), 255)
    canvas.paste(
        ink, (int(rng.integers(0, OFFICIAL_CANVAS - size + 1)), int(rng.integers(0, OFFICIAL_CANVAS - size + 1)))
    )
    return np.asarray(canvas)


def sent_like_people(name: str, digits: np.ndarray, labels: np.ndarray, seed: int) -> PictureSet:
    """``digits`` (uint8 [N, 28, 28], light on dark) as people send them."""
    return PictureSet(name, labels, lambda i: as_people_send(digits[i], np.random.default_rng([seed, i])))


def blends(digits: np.ndarray, labels: np.ndarray, count: int = BLEND_COUNT, seed: int = 88) -> PictureSet:
    """Two different digits averaged into one picture, as people send it: no confident digit."""
    rng = np.random.default_rng(seed)
    first, second = rng.integers(len(digits), size=(2, 4 * count))
    different = labels[first] != labels[second]
    pairs = list(zip(first[different][:count], second[different][:count], strict=True))

    def draw(index: int) -> np.ndarray:
        a, b = pairs[index]
        blend = ((digits[a].astype(np.float32) + digits[b]) / 2).round().astype(np.uint8)
        return as_people_send(blend, np.random.default_rng([seed, index]))

    return PictureSet("blends", np.full(len(pairs), -1, dtype=np.int64), draw)


def raw(name: str, digits: np.ndarray, labels: np.ndarray) -> PictureSet:
    """The 28x28 images exactly as MNIST has them (the service uses such an image as sent)."""
    return PictureSet(name, labels, lambda i: digits[i])


def uci_digits(seed: int = 1797) -> PictureSet:
    """scikit-learn's 8x8 scanned digits (values 0..16), dark on white, enlarged with a margin."""
    from sklearn.datasets import load_digits  # evaluation only: an optional, heavy import

    bunch = load_digits()
    ink = (bunch.images * (255 / 16)).round().astype(np.uint8)

    def draw(index: int) -> np.ndarray:
        rng = np.random.default_rng([seed, index])
        size, margin = int(rng.integers(32, 129)), int(rng.integers(4, 40))
        digit = Image.fromarray(255 - ink[index]).resize((size, size), Image.Resampling.BILINEAR)
        canvas = Image.new("L", (size + 2 * margin, size + 2 * margin), 255)
        canvas.paste(digit, (margin, margin))
        return np.asarray(canvas)

    return PictureSet("uci", bunch.target.astype(np.int64), draw)


def handwriting_fonts(root: Path = Path("/usr/share/fonts")) -> list[Path]:
    return sorted({path for pattern in HANDWRITING_FONT_FILES for path in root.glob(pattern)})


def font_digits(seed: int = 10) -> PictureSet:
    """Each digit in each installed handwriting font, FONT_VARIANTS times, slanted and turned a little."""
    fonts = handwriting_fonts()
    # Variants outermost, so that the first pictures already cover every font and digit.
    cases = [(font, digit, variant) for variant in range(FONT_VARIANTS) for digit in range(10) for font in fonts]

    def draw(index: int) -> np.ndarray:
        font_path, digit, _ = cases[index]
        rng = np.random.default_rng([seed, index])
        image = Image.new("L", (nondigits.CANVAS, nondigits.CANVAS), 255)
        font = ImageFont.truetype(str(font_path), size=int(rng.integers(48, 80)))
        ImageDraw.Draw(image).text(
            (nondigits.CANVAS / 2, nondigits.CANVAS / 2),
            str(digit),
            fill=0,
            font=font,
            anchor="mm",
            stroke_width=int(rng.integers(0, 3)),
            stroke_fill=0,
        )
        return nondigits.handwritten(image, rng)

    return PictureSet("fonts", np.array([digit for _, digit, _ in cases], dtype=np.int64), draw)


def _nondigit_set(name: str, kinds: list[str], count: int, seed: int) -> PictureSet:
    chosen = tuple(kinds[i % len(kinds)] for i in range(count))
    return PictureSet(
        name,
        np.full(count, -1, dtype=np.int64),
        lambda i: nondigits.draw(chosen[i], np.random.default_rng([seed, i])),
        kinds=chosen,
    )


def nondigit_evaluation(count: int = NONDIGIT_EVALUATION_COUNT, seed: int = NONDIGIT_EVALUATION_SEED) -> PictureSet:
    """Non-digits of the kinds training never sees."""
    return _nondigit_set("nondigits", list(nondigits.EVALUATION_KINDS), count, seed)


def nondigit_seen_kinds(count: int = NONDIGIT_EVALUATION_COUNT, seed: int = NONDIGIT_EVALUATION_SEED) -> PictureSet:
    """New pictures of the kinds training sees (other seeds than training's), for comparison."""
    return _nondigit_set("nondigits_seen_kinds", list(nondigits.TRAINING_KINDS), count, seed)


def nondigit_training(count: int, seed: int) -> PictureSet:
    """Non-digits of the training kinds (training uses seed 0 and up, never NONDIGIT_EVALUATION_SEED)."""
    return _nondigit_set("nondigits_training", list(nondigits.TRAINING_KINDS), count, seed)


# --- in process: the service's own preprocessing, the trained module -------------------------


def prepared(pictures: PictureSet, spec: ImageSpec) -> tuple[np.ndarray, np.ndarray]:
    """Each picture through the service's preprocessing: float32 [N, 28, 28] and which had ink."""
    arrays, inked = [], []
    for picture in pictures.pictures():
        try:
            arrays.append(imaging.prepare_image(Image.fromarray(picture), spec))
            inked.append(True)
        except NoInk:  # the service answers 422 no_ink
            arrays.append(np.zeros((spec.height, spec.width), dtype=np.float32))
            inked.append(False)
    if not arrays:
        return np.zeros((0, spec.height, spec.width), dtype=np.float32), np.zeros(0, dtype=bool)
    return np.stack(arrays), np.array(inked)


def probabilities_of(module: Callable, arrays: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        batch = torch.from_numpy(arrays).unsqueeze(1)
        return torch.cat([module(chunk) for chunk in batch.split(2000)]).numpy()


def answer_in_process(module: Callable, sets: list[PictureSet], spec: ImageSpec, policy: Verdict) -> dict[str, Answers]:
    answers = {}
    for pictures in sets:
        arrays, inked = prepared(pictures, spec)
        probabilities = probabilities_of(module, arrays)
        probabilities[~inked] = 0.0
        answers[pictures.name] = Answers.of(pictures.labels, probabilities, policy, pictures.kinds)
    return answers


# --- the figures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answers:
    """What the service said about each picture of a set (422 no_ink: label -1, verdict "no_ink")."""

    labels: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray  # [N, 10]; zeros for a picture refused with 422
    verdicts: np.ndarray  # str
    kinds: tuple[str, ...] = ()

    @classmethod
    def of(cls, labels: np.ndarray, probabilities: np.ndarray, policy: Verdict, kinds: tuple[str, ...] = ()) -> Answers:
        """The answers the service gives for these probabilities (rows of zeros: no ink)."""
        names = [str(digit) for digit in range(probabilities.shape[1])]
        verdicts = [verdict.judge(row, names, policy)["verdict"] if row.any() else "no_ink" for row in probabilities]
        predicted = np.where(probabilities.any(axis=1), probabilities.argmax(axis=1), -1)
        return cls(np.asarray(labels), predicted, probabilities, np.array(verdicts), kinds)


def figures(name: str, answers: Answers) -> dict[str, float]:
    """The issue's figures for one set, as ``<set>_<figure>`` metrics (fractions in [0, 1])."""
    from training.calibration import expected_calibration_error

    digit = answers.verdicts == "digit"
    result: dict[str, float] = {f"{name}_images": float(len(answers.labels))}
    if (answers.labels >= 0).all():
        right = answers.predicted == answers.labels
        result[f"{name}_accuracy"] = float(right.mean())
        result[f"{name}_digit_verdicts"] = float(digit.mean())
        result[f"{name}_right_when_digit"] = float(right[digit].mean()) if digit.any() else 0.0
        answered = answers.probabilities.sum(axis=1) > 0
        result[f"{name}_ece"] = expected_calibration_error(answers.probabilities[answered], answers.labels[answered])
    else:
        refused = ~digit
        result[f"{name}_refused"] = float(refused.mean())
        result[f"{name}_not_a_digit_verdicts"] = float(np.isin(answers.verdicts, ["not_a_digit", "no_ink"]).mean())
        for kind in dict.fromkeys(answers.kinds):
            inside = np.array(answers.kinds) == kind
            result[f"{name}_refused_{kind.replace(' ', '_')}"] = float(refused[inside].mean())
    return result


# --- through /predict ---------------------------------------------------------------------

IMAGES_PER_REQUEST = 50


def png(picture: np.ndarray, rgb: bool) -> bytes:
    image = Image.fromarray(picture)
    buffer = io.BytesIO()
    (image.convert("RGB") if rgb else image).save(buffer, "PNG")
    return buffer.getvalue()


def ask(post: Callable[[list[bytes]], list[dict | None]], pictures: PictureSet, rgb: bool = True) -> Answers:
    """Send every picture of the set to /predict, IMAGES_PER_REQUEST at a time."""
    results: list[dict | None] = []
    batch: list[bytes] = []
    for picture in pictures.pictures():
        batch.append(png(picture, rgb=rgb and picture.shape != (28, 28)))
        if len(batch) == IMAGES_PER_REQUEST:
            results += post(batch)
            batch = []
    if batch:
        results += post(batch)
    labels = [str(digit) for digit in range(10)]
    return Answers(
        labels=pictures.labels,
        predicted=np.array([int(r["label"]) if r else -1 for r in results]),
        probabilities=np.array([[r["probabilities"][k] for k in labels] if r else [0.0] * 10 for r in results]),
        verdicts=np.array([r.get("verdict", "digit") if r else "no_ink" for r in results]),
        kinds=pictures.kinds,
    )


def _split_results(status: int, body: dict, count: int) -> list[dict | None]:
    if status == 200:
        return body["results"] if "results" in body else [body]
    if status == 422 and body["error"]["code"] == "no_ink":
        return [None] * count  # only when the whole request was one blank picture
    raise RuntimeError(f"/predict answered {status}: {body}")


def poster(send: Callable[[list[tuple[str, bytes]]], tuple[int, dict]]) -> Callable[[list[bytes]], list[dict | None]]:
    """Post a batch; when one picture has no ink (a 422 for the whole request), post one by one."""

    def post(batch: list[bytes]) -> list[dict | None]:
        status, body = send([(f"image{i}", data) for i, data in enumerate(batch)])
        if status == 422 and body.get("error", {}).get("code") == "no_ink" and len(batch) > 1:
            return [result for data in batch for result in post([data])]
        return _split_results(status, body, len(batch))

    return post


def flask_sender(repository: Path) -> Callable[[list[tuple[str, bytes]]], tuple[int, dict]]:
    from service import create_app
    from service.config import ServiceConfig

    client = create_app(
        ServiceConfig(model_repository=repository, refresh_interval=0, execution_providers="cpu")
    ).test_client()

    def send(files: list[tuple[str, bytes]]) -> tuple[int, dict]:
        data = {name: (io.BytesIO(content), f"{name}.png") for name, content in files}
        response = client.post("/predict", data=data, content_type="multipart/form-data")
        return response.status_code, response.get_json()

    return send


def http_sender(url: str) -> Callable[[list[tuple[str, bytes]]], tuple[int, dict]]:
    import requests

    session = requests.Session()

    def send(files: list[tuple[str, bytes]]) -> tuple[int, dict]:
        response = session.post(
            f"{url}/predict", files=[(name, (f"{name}.png", data, "image/png")) for name, data in files], timeout=60
        )
        return response.status_code, response.json()

    return send


@contextlib.contextmanager
def gunicorn(repository: Path, workers: int = 2) -> Iterator[str]:
    """gunicorn with the project's config on a free 127.0.0.1 port, until the block ends."""
    import requests

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as metrics_dir:
        env = {
            **os.environ,
            "MODEL_REPOSITORY": str(repository.resolve()),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WORKERS": str(workers),
            "REFRESH_INTERVAL": "0",
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            "LOG_LEVEL": "WARNING",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                    if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not become ready on {url} (exit status {process.poll()})")
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def measure(
    post: Callable[[list[bytes]], list[dict | None]], data_dir: Path, limit: int | None = None
) -> dict[str, float]:
    from training.data import load_mnist

    test = load_mnist(data_dir, train=False)
    digits = (test.images[:, 0] * 255).round().byte().numpy()
    labels = test.labels.numpy()
    measured: dict[str, float] = {}
    for pictures in [
        raw("official_raw", digits, labels),
        sent_like_people("official_as_sent", digits, labels, seed=2024),
        uci_digits(),
        font_digits(),
        nondigit_evaluation(),
        nondigit_seen_kinds(),
        blends(digits, labels),
    ]:
        pictures = pictures.head(limit)
        if not len(pictures):
            print(f"{pictures.name}: no pictures (no handwriting font installed?)", file=sys.stderr)
            continue
        started = time.perf_counter()
        answers = ask(post, pictures)
        measured |= figures(pictures.name, answers)
        print(f"{pictures.name}: {len(pictures)} pictures in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return measured


# The targets: (figure, metric, op, target); "other writers" are the UCI digits.
TARGETS = (
    ("official test accuracy (raw)", "official_raw_accuracy", ">=", 0.99),
    ("official test digits as users send them, verdict `digit`", "official_as_sent_digit_verdicts", ">=", 0.98),
    ("... of those, right", "official_as_sent_right_when_digit", ">=", 0.995),
    ("other writers' digits (UCI), right", "uci_accuracy", ">=", 0.92),
    ("other writers' digits (UCI), right when the verdict is `digit`", "uci_right_when_digit", ">=", 0.98),
    ("handwriting-font digits, right", "fonts_accuracy", ">=", 0.92),
    ("handwriting-font digits, right when the verdict is `digit`", "fonts_right_when_digit", ">=", 0.98),
    ("non-digits of unseen kinds refused (`not_a_digit`, `uncertain` or 422)", "nondigits_refused", ">=", 0.95),
    ("non-digits of the training kinds (new pictures) refused", "nondigits_seen_kinds_refused", ">=", None),
    ("blends of two different test digits, refused (`uncertain` or `not_a_digit`)", "blends_refused", ">=", None),
    ("expected calibration error, official test (raw)", "official_raw_ece", "<=", 0.01),
    ("expected calibration error, UCI digits", "uci_ece", "<=", None),
    ("expected calibration error, handwriting fonts", "fonts_ece", "<=", None),
)


def table(measured: dict[str, float]) -> str:
    """The targets as a Markdown table, with what was measured and whether it is met."""
    rows = ["| figure | measured | target | met |", "| --- | --- | --- | --- |"]
    for figure, metric, op, target in TARGETS:
        if metric not in measured:
            continue
        value = measured[metric]
        met = "" if target is None else ("yes" if (value >= target if op == ">=" else value <= target) else "NO")
        rows.append(f"| {figure} | {value:.2%} | {'reported' if target is None else f'{op} {target:.1%}'} | {met} |")
    kinds = [metric for metric in measured if metric.startswith("nondigits_refused_")]  # the unseen kinds
    rows += [
        f"| ... {metric.removeprefix('nondigits_refused_').replace('_', ' ')}s refused | {measured[metric]:.2%} | | |"
        for metric in kinds
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MNIST_DATA_DIR", "data")))
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", "models")))
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="a running service to ask, e.g. http://127.0.0.1:8000")
    where.add_argument(
        "--gunicorn", action="store_true", help="start gunicorn on 127.0.0.1 with --repository, ask it, stop it"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="the first N pictures of each set only (a quick look)")
    arguments = parser.parse_args(argv)
    if arguments.gunicorn:
        with gunicorn(arguments.repository) as url:
            measured = measure(poster(http_sender(url)), arguments.data_dir, arguments.limit)
    elif arguments.url:
        measured = measure(poster(http_sender(arguments.url.rstrip("/"))), arguments.data_dir, arguments.limit)
    else:
        measured = measure(poster(flask_sender(arguments.repository)), arguments.data_dir, arguments.limit)
    print(json.dumps(measured, indent=2))
    print(table(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
