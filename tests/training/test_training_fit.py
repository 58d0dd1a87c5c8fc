"""The training loop's record of a run: held-out loss per epoch, stopping once converged, the loss plot."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training import plots
from training.fit import Convergence, HeldOut, fit


def _line_fit(epochs: int, held_out: HeldOut | None = None, convergence: Convergence | None = None):
    torch.manual_seed(0)
    inputs = torch.linspace(-1, 1, 32).unsqueeze(1)
    model = nn.Linear(1, 1)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    return fit(model, [(inputs, 3 * inputs + 1)], F.mse_loss, optimiser, epochs, held_out=held_out,
               convergence=convergence)


def test_the_held_out_loss_is_measured_after_every_epoch():
    unseen = torch.tensor([[0.25], [2.0]])
    held_out = HeldOut(unseen, 3 * unseen + 1)
    losses = _line_fit(40, held_out)
    assert len(held_out.losses) == len(losses) == 40
    assert held_out.losses[-1] < held_out.losses[0] / 10


def test_training_stops_once_the_loss_has_stopped_falling():
    losses = _line_fit(5000, convergence=Convergence())
    assert len(losses) < 5000
    assert losses[-1] < 1e-9


def test_the_loss_plot_shows_both_losses_and_a_long_run_on_a_log_axis():
    short = plots.loss_curve([1.0, 0.5, 0.2], [1.1, 0.7, 0.4], "t").axes[0]
    assert [line.get_label() for line in short.get_lines()] == ["training", "held-out"]
    assert short.get_xscale() == "linear"
    long = plots.loss_curve([1 / step for step in range(1, 2001)], [], "t").axes[0]
    assert (long.get_xscale(), long.get_yscale()) == ("log", "log")
    assert long.get_legend().get_title().get_text() == "no examples held out"
