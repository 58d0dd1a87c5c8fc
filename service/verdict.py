"""The verdict on one picture: a confident answer, an uncertain one, or "this is not a digit".

Driven only by the model's manifest (its ``verdict`` section: the method and thresholds, chosen
in training), so the service holds no model-specific rule.  Protocol-free: it takes the
probabilities of one picture and returns the fields added to that picture's result.
"""

from __future__ import annotations

import numpy as np

from service.manifest import Verdict

DIGIT = "digit"
UNCERTAIN = "uncertain"
NOT_A_DIGIT = "not_a_digit"


def fields(probabilities: np.ndarray, labels: list[str], policy: Verdict | None) -> dict[str, str]:
    """The verdict fields of one image result: none for a model whose manifest has no policy."""
    return {} if policy is None else judge(probabilities, labels, policy)


def judge(probabilities: np.ndarray, labels: list[str], policy: Verdict) -> dict[str, str]:
    """``{"verdict": ..., "reason": ...}`` for one picture's calibrated probabilities."""
    order = np.argsort(-probabilities, kind="stable")
    best, runner_up = labels[order[0]], labels[order[1]]
    p_best, p_runner_up = float(probabilities[order[0]]), float(probabilities[order[1]])
    if p_best >= policy.digit_at_least:
        verdict = DIGIT
        reason = (
            f"It is {_a(best)}: probability {p_best:.2f}, at least the {policy.digit_at_least:.2f} "
            "a confident answer needs."
        )
    elif p_best >= policy.not_a_digit_below:
        verdict = UNCERTAIN
        reason = (
            f"Not sure: it looks most like {_a(best)} ({p_best:.2f}), next {_a(runner_up)} ({p_runner_up:.2f}); "
            f"a confident answer needs {policy.digit_at_least:.2f}."
        )
    else:
        verdict = NOT_A_DIGIT
        reason = (
            f"It does not look like any digit: the likeliest, {best}, has probability only {p_best:.2f} "
            f"(a digit reaches {policy.not_a_digit_below:.2f})."
        )
    return {"verdict": verdict, "reason": reason}


def _a(label: str) -> str:
    """The label with its article: "a 7", "an 8"."""
    return f"an {label}" if label.startswith(("8", "11", "18", "a", "e", "i", "o", "u")) else f"a {label}"
