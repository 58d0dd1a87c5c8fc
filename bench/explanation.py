"""What ``?include=input`` and ``?include=explanation`` cost per POST /predict request.

    python -m bench.explanation                      # 200 rounds, 1 and 16 images per request
    python -m bench.explanation --rounds 50 --images 1

In one process, through the Flask app built on the committed models (``--repository``) with one
onnxruntime thread, so that the figures are the service's own work: HTTP parsing, decoding, the
MNIST recipe, inference, the extras and the JSON; the network adds the same to every variant.
Each round sends every variant once, in a rotating order, so that load from other processes
hits them all alike; the table gives the median and 90th percentile over rounds, the median
extra time against the plain request, and the response size.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

from bench.serve_payloads import drawn_digit, png_bytes
from service import create_app
from service.config import ServiceConfig

VARIANTS = ["", "input", "explanation", "input,explanation"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="mnist_mlp")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--images", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()

    app = create_app(ServiceConfig(model_repository=args.repository, refresh_interval=0, intra_op_threads=1))
    client = app.test_client()
    print(f"{args.model} from {args.repository}, 1 onnxruntime thread, Flask test client, {args.rounds} rounds\n")
    print(f"{'images':>6}  {'include':<18} {'p50 ms':>8} {'p90 ms':>8} {'extra ms':>9} {'kB':>7}")
    for images in args.images:
        pngs = [png_bytes(drawn_digit(index % 10, 280)) for index in range(images)]
        timings: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        sizes: dict[str, int] = {}
        for round_number in range(args.rounds + 5):  # the first 5 warm up
            order = VARIANTS[round_number % len(VARIANTS) :] + VARIANTS[: round_number % len(VARIANTS)]
            for variant in order:
                url = f"/predict?model={args.model}" + (f"&include={variant}" if variant else "")
                started = time.perf_counter()
                files = {f"f{index}": (io.BytesIO(png), f"{index}.png") for index, png in enumerate(pngs)}
                response = client.post(url, data=files, content_type="multipart/form-data")
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.get_data(as_text=True)
                if round_number >= 5:
                    timings[variant].append(elapsed * 1000)
                sizes[variant] = len(response.get_data())
        plain = statistics.median(timings[""])
        for variant in VARIANTS:
            values = sorted(timings[variant])
            median = statistics.median(values)
            p90 = values[int(0.9 * (len(values) - 1))]
            print(
                f"{images:>6}  {variant or '(none)':<18} {median:>8.2f} {p90:>8.2f} {median - plain:>+9.2f} "
                f"{sizes[variant] / 1000:>7.1f}"
            )


if __name__ == "__main__":
    main()
