"""Open Inference Protocol benchmark: MNIST batches through tritonclient.http binary tensors.

    python -m bench.v2_tritonclient [--duration 10] [--batch 256] [--clients 2] [--no-profile]

Starts the service under real gunicorn (gunicorn.conf.py, 2 workers) on a free loopback port;
``--clients`` threads, each with its own tritonclient.http client (blocking ``infer``: its
``async_infer`` polls with a 10 ms sleep), send one batch of ``--batch`` images as binary
tensors again as soon as the answer arrives, for ``--duration`` seconds, once as FP32 and once
as UINT8 pixels.  The baseline is onnxruntime's session.run alone on the same model file, batch
``--batch``, one thread, the service's session options, timed before and after the served run.
Then it says where the time of a request goes: the service's own metrics (Flask handler time,
onnxruntime time) against the latency the client sees, the client's CPU per request, and a
short cProfile of the client and of the V2 handler.  Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import requests
import tritonclient.http as httpclient

from bench.serve import ROOT, Server, free_port, newest_model_file, process_table, raw_onnxruntime, running, worker_pids
from bench.serve_payloads import mnist_like_batch
from service.runtime import session_options

MODEL = "mnist_mlp"
INFER_ENDPOINT = "/v2/models/<name>/infer"


def inputs_for(pixels: np.ndarray, datatype: str) -> list[httpclient.InferInput]:
    array = pixels if datatype == "UINT8" else (pixels / np.float32(255)).astype(np.float32)
    tensor = httpclient.InferInput("pixels", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)
    return [tensor]


def closed_loop(url: str, pixels: np.ndarray, datatype: str, clients: int, seconds: float) -> dict:
    """Each thread: its own client, infer after infer until the time is up."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client_thread() -> None:
        client = httpclient.InferenceServerClient(url, network_timeout=60)
        mine = []
        try:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    client.infer(MODEL, inputs_for(pixels, datatype)).as_numpy("probabilities")
                    mine.append(time.perf_counter() - started)
                except Exception as error:  # count and go on: a benchmark reports, never dies midway
                    errors.append(repr(error))
        finally:
            client.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client_thread) for _ in range(clients)]
    cpu_before, started = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "errors": len(errors), "elapsed": elapsed,
            "latencies": np.array(latencies), "client_cpu": time.process_time() - cpu_before}


def scrape(url: str) -> dict[str, float]:
    """Sums and counts of the two histograms that split a request's server time."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {
        ("serving_request_duration_seconds_sum", INFER_ENDPOINT): "handler_s",
        ("serving_request_duration_seconds_count", INFER_ENDPOINT): "handled",
        ("serving_inference_duration_seconds_sum", MODEL): "inference_s",
        ("serving_inference_duration_seconds_count", MODEL): "runs",
    }
    totals = dict.fromkeys(wanted.values(), 0.0)
    for family in text_string_to_metric_families(requests.get(f"http://{url}/metrics", timeout=10).text):
        for sample in family.samples:
            label = sample.labels.get("endpoint") or sample.labels.get("model")
            if (sample.name, label) in wanted:
                totals[wanted[sample.name, label]] += sample.value
    return totals


def worker_cpu_seconds(master: int) -> dict[int, float]:
    """User + system CPU seconds of each of the master's gunicorn workers."""
    table = process_table()
    return {pid: table[pid].cpu_seconds for pid in worker_pids(master) if pid in table}


def check_answer(url: str, model_file: Path, pixels: np.ndarray) -> None:
    session = ort.InferenceSession(str(model_file), session_options(1), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"pixels": (pixels / np.float32(255)).astype(np.float32)})[0]
    client = httpclient.InferenceServerClient(url)
    for datatype in ("FP32", "UINT8"):
        served = client.infer(MODEL, inputs_for(pixels, datatype)).as_numpy("probabilities")
        difference = np.abs(served - expected).max()
        if not difference <= 1e-5:
            raise SystemExit(f"{datatype}: the service's answer differs from onnxruntime's by {difference:.3g}")
    client.close()


def profile_top(call, repeat: int, lines: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeat):
        call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(lines)
    text = out.getvalue()
    return text[text.index("   ncalls"):].rstrip()


def profile_client(url: str, pixels: np.ndarray) -> str:
    client = httpclient.InferenceServerClient(url)
    try:
        return profile_top(lambda: client.infer(MODEL, inputs_for(pixels, "FP32")), 100, 10)
    finally:
        client.close()


def profile_handler(repository: Path, pixels: np.ndarray) -> str:
    """The V2 handler in-process (Flask test client, no HTTP server), FP32 binary, one thread."""
    from tritonclient.http._utils import _get_inference_request

    from service import create_app
    from service.config import ServiceConfig

    app = create_app(ServiceConfig(model_repository=repository, refresh_interval=0, intra_op_threads=1))
    body, header_length = _get_inference_request(inputs_for(pixels, "FP32"), "", None, 0, False, False, 0, None, None)
    test_client = app.test_client()

    def call():
        response = test_client.post(f"/v2/models/{MODEL}/infer", data=body,
                                    headers={"Inference-Header-Content-Length": str(header_length)})
        assert response.status_code == 200, response.get_data(as_text=True)

    return profile_top(call, 100, 12)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", ROOT / "models")))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per datatype (default 10)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--clients", type=int, default=2, help="client threads (default 2)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile sections")
    args = parser.parse_args(argv)

    repository = args.repository.resolve()
    model_file = newest_model_file(repository)
    pixels = mnist_like_batch(args.batch)
    raw_before = raw_onnxruntime(model_file, args.batch, 3.0)
    server = Server("service", "service:create_app()", ["--config", "gunicorn.conf.py"],
                    {"MODEL_REPOSITORY": str(repository), "WORKERS": str(args.workers), "WORKER_THREADS": "4",
                     "INTRA_OP_THREADS": "1", "LOG_LEVEL": "WARNING", "REFRESH_INTERVAL": "0"})
    port = free_port()
    url = f"127.0.0.1:{port}"
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-v2-") as log_dir, running(server, port, Path(log_dir)) as process:
        check_answer(url, model_file, pixels)
        for datatype in ("FP32", "UINT8"):
            closed_loop(url, pixels, datatype, args.clients, 1.0)  # warm-up: connections, allocators
            before, cpu_before = scrape(url), worker_cpu_seconds(process.pid)
            cell = closed_loop(url, pixels, datatype, args.clients, args.duration)
            after, cpu_after = scrape(url), worker_cpu_seconds(process.pid)
            cell["server"] = {key: after[key] - before[key] for key in after}
            cell["worker_cpu"] = [cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in sorted(cpu_after)]
            results[datatype] = cell
        client_profile = None if args.no_profile else profile_client(url, pixels)
    raw_after = raw_onnxruntime(model_file, args.batch, 3.0)
    raw = (raw_before + raw_after) / 2
    handler_profile = None if args.no_profile else profile_handler(repository, pixels)

    print(f"\n{MODEL} ({model_file.relative_to(repository)}), batch {args.batch}, {os.cpu_count()} CPUs; "
          f"gunicorn {args.workers} workers x 4 threads, 1 onnxruntime thread each; {args.clients} tritonclient.http "
          f"threads on the same machine; {args.duration:g} s per row\n")
    print(f"onnxruntime session.run alone, 1 thread, batch {args.batch}: {raw:,.0f} images/s "
          f"(before {raw_before:,.0f}, after {raw_after:,.0f}); {1000 * args.batch / raw:.2f} ms a batch\n")
    header = (f"{'binary':<7} {'kB':>5} {'req/s':>7} {'images/s':>9} {'x raw':>6} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'handler':>8} {'onnxrt':>7} {'server cpu':>10} {'workers':>8} {'client cpu':>10} {'errors':>6}")
    print(header)
    print("-" * len(header))
    for datatype, cell in results.items():
        done = max(cell["requests"], 1)
        images_per_second = cell["requests"] * args.batch / cell["elapsed"]
        server = cell["server"]
        handler_ms = 1000 * server["handler_s"] / max(server["handled"], 1)
        inference_ms = 1000 * server["inference_s"] / max(server["runs"], 1)
        kilobytes = pixels.size * (1 if datatype == "UINT8" else 4) / 1000
        worker_cpu = cell["worker_cpu"]
        split = "/".join(f"{100 * cpu / max(sum(worker_cpu), 1e-9):.0f}" for cpu in worker_cpu)
        print(f"{datatype:<7} {kilobytes:>5.0f} {cell['requests'] / cell['elapsed']:>7.1f} {images_per_second:>9,.0f} "
              f"{images_per_second / raw:>6.2f} {1000 * np.percentile(cell['latencies'], 50):>7.2f} "
              f"{1000 * np.percentile(cell['latencies'], 99):>7.2f} {handler_ms:>6.2f}ms {inference_ms:>5.2f}ms "
              f"{1000 * sum(worker_cpu) / done:>8.2f}ms {split:>8} {1000 * cell['client_cpu'] / done:>8.2f}ms "
              f"{cell['errors']:>6}")
    print("\nhandler: the service's wall time per request inside Flask, body read included"
          "\n(serving_request_duration_seconds); onnxrt: its session.run time (serving_inference_duration_seconds);"
          "\nserver cpu: CPU of all gunicorn workers per request, and the share of each worker (%);"
          "\nclient cpu: CPU of the client threads per request.  p50 - handler: gunicorn, sockets, the client"
          "\nand waiting for a CPU.")
    if client_profile:
        print(f"\ntritonclient.http, 100 FP32 infers from one thread (cProfile, by own time):\n{client_profile}")
    if handler_profile:
        print(f"\nthe V2 handler in-process, 100 FP32 requests (Flask test client, cProfile, by own time):\n"
              f"{handler_profile}")


if __name__ == "__main__":
    main()
