"""A closed-loop HTTP load generator: N client threads, each with its own keep-alive
connection, each sending the same request again as soon as the previous answer arrives.

Bounded both ways: a cell stops after ``duration`` seconds or ``max_requests`` requests,
whichever comes first.  Bodies are encoded once, up front, so the client's work per request is
sending bytes and reading the reply, not building it.
"""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CellResult:
    requests: int
    errors: int
    seconds: float
    latencies: np.ndarray  # seconds, successful requests only

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    def latency_ms(self, percentile: float) -> float:
        return float(np.percentile(self.latencies, percentile) * 1000) if self.latencies.size else float("nan")


def post(port: int, path: str, content_type: str, body: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """One request on a fresh connection (for warm-up and checking answers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def run_cell(
    port: int,
    path: str,
    content_type: str,
    body: bytes,
    concurrency: int,
    duration: float,
    max_requests: int,
) -> CellResult:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    deadline = time.perf_counter() + duration
    budget = threading.Semaphore(max_requests)

    def client() -> tuple[list[float], int]:
        latencies, errors = [], 0
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while time.perf_counter() < deadline and budget.acquire(blocking=False):
                started = time.perf_counter()
                try:
                    connection.request("POST", path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    connection.close()  # reconnects on the next request
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
        finally:
            connection.close()
        return latencies, errors

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(lambda _: client(), range(concurrency)))
    seconds = time.perf_counter() - started
    latencies = np.array([value for values, _ in outcomes for value in values])
    return CellResult(
        requests=latencies.size,
        errors=sum(errors for _, errors in outcomes),
        seconds=seconds,
        latencies=latencies,
    )
