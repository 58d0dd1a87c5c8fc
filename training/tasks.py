"""One task per seed model: its network, data, loss, optimiser, the bar it must reach, its served signature.

``TASKS`` maps the stable model names (they become URL paths in the service) to their tasks.
``Task.train`` returns a ``Trained``: the module to export plus everything the manifest records.
Where a task departs from its seed notebook, the reason is in ``departures`` (copied into the
manifest) and in a comment at the spot.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from service.manifest import Bar, ImageSpec, TensorSpec, Verdict
from training import calibration, data, evaluate, networks, nondigits, plots
from training.fit import Convergence, HeldOut, fit

Hyperparameters = dict[str, float | int | str | bool]


@dataclass(frozen=True)
class Settings:
    """What a run may change about training (the task owns everything else)."""

    data_dir: Path = Path("data")
    download: bool = False
    epochs: int | None = None  # None: each task's own number
    seed: int = 0
    device: str = "cpu"
    train_limit: int | None = None  # use only the first N MNIST training images
    test_limit: int | None = None  # evaluate on the first N MNIST test images (and N of each other set) only


@dataclass
class Trained:
    module: nn.Module  # the graph to serve: served inputs in, served outputs out (CPU, eval mode)
    example: torch.Tensor  # a batch of served inputs for the export's parity check
    losses: list[float]  # training loss per epoch
    metrics: dict[str, float]
    description: str
    data: str
    epochs: int
    hyperparameters: Hyperparameters
    figures: dict[str, Figure] = field(default_factory=dict)  # file name -> figure, besides the loss curve
    verdict: Verdict | None = None  # how the service judges each picture (image models only)
    # Loss per epoch on examples kept out of training (fit.HeldOut); empty when a task has none.
    held_out_losses: list[float] = field(default_factory=list)


class Task(ABC):
    name: str
    seed_notebook: str
    departures: tuple[str, ...]
    bar: Bar
    input: TensorSpec
    output: TensorSpec

    def train(self, settings: Settings) -> Trained:
        torch.manual_seed(settings.seed)  # per task, so a model does not depend on which others ran
        return self._train(settings)

    def preflight(self, settings: Settings) -> None:
        """Raise (e.g. DatasetNotFound) if something this task needs is missing; run before any training."""

    @abstractmethod
    def _train(self, settings: Settings) -> Trained: ...


# ---------------------------------------------------------------------------------------------
# mnist_mlp (seed 000)


NONDIGIT = -1  # the label of a synthetic non-digit in a training batch
SET_TITLES = {
    "official_raw": "MNIST test",
    "official_as_sent": "MNIST test, as people send it",
    "uci": "UCI digits (other writers)",
    "fonts": "handwriting fonts (other writers)",
}


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to soft targets (``data.SoftTargetBatches``), averaged over the batch."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _logits(classifier: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([classifier(chunk) for chunk in images.split(2000)])


def _probabilities(served: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([served(chunk) for chunk in images.split(2000)])


@dataclass
class MnistTask(Task):
    epochs: int = 40
    batch_size: int = 128
    max_learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    augmentation: data.HandwritingDistortions | None = data.HandwritingDistortions()
    # The last training images, never trained on: the temperature and the thresholds are chosen on them.
    held_out: int = 5000
    # Synthetic non-digits per training digit (outlier exposure), and the weight of their loss.
    nondigit_share: float = 0.25
    outlier_weight: float = 0.5
    # Share of training digits blended with another digit, and trained towards both.
    blend_share: float = 0.1
    # Share of held-out digits, drawn as people send them, that the "digit" verdict must keep ...
    digit_acceptance: float = 0.983
    # ... and the share of them that may be called not_a_digit (the rest of the refused are "uncertain").
    digit_rejection: float = 0.002
    bar: Bar = Bar(metric="test_accuracy", op=">=", threshold=0.99)

    name = "mnist_mlp"
    seed_notebook = "000_3b48c658da637a7e.txt"
    departures = (
        "Trained on logits with cross-entropy; the softmax is appended only for export, so the served "
        "graph still returns probabilities (a Softmax inside the trained stack would feed probabilities "
        "to the loss).",
        "Takes raw pixels in [0, 1] (not 0..255) and normalises them inside the graph with the MNIST "
        f"training-set mean {data.MNIST_MEAN} and std {data.MNIST_STD}.",
        "The seed defines the network but never trains it: AdamW with a one-cycle learning-rate "
        "schedule on shuffled mini-batches, with distortions of how other people write and scan "
        "(affine and elastic maps, stroke thickness, low resolution and blur, ink level).",
        "Outlier exposure: synthetic non-digits (letters, symbols, polygons, strokes, scribbles, hatching, "
        "crosses, ticks, noise, textures, arrows, simple drawings) are trained towards the uniform "
        "distribution, so that a picture of no digit gets no confident digit.",
        "A tenth of the training digits are blended with another digit and trained towards both "
        "(mixup), so that a picture of two digits at once gets an uncertain answer.",
        "The last training images are held out: a temperature fitted on them is folded into the last "
        "layer (calibrated probabilities), and the verdict thresholds are chosen on them.",
    )
    input = TensorSpec(
        name="pixels",
        dtype="float32",
        shape=[-1, 1, 28, 28],
        description="Grayscale 28x28 images, raw pixel values in [0, 1], light digit on a dark background",
        image=ImageSpec(preprocessing="mnist", height=28, width=28, channels=1),
    )
    output = TensorSpec(
        name="probabilities",
        dtype="float32",
        shape=[-1, 10],
        description="Calibrated probability of each digit (softmax over the ten classes)",
        labels=[str(digit) for digit in range(10)],
    )

    def preflight(self, settings: Settings) -> None:
        for train in (True, False):
            data.load_mnist(settings.data_dir, train=train, download=settings.download, limit=1)

    def _train(self, settings: Settings) -> Trained:
        everything = data.load_mnist(settings.data_dir, train=True, download=settings.download, limit=settings.train_limit)
        test_set = data.load_mnist(settings.data_dir, train=False, download=settings.download, limit=settings.test_limit)
        held = min(self.held_out, len(everything) // 10)
        train_set = data.ImageSet(everything.images[:-held], everything.labels[:-held])
        held_set = data.ImageSet(everything.images[-held:], everything.labels[-held:])
        spec = self.input.image
        nondigit_count = round(len(train_set) * self.nondigit_share)
        arrays, inked = evaluate.prepared(evaluate.nondigit_training(nondigit_count, seed=settings.seed), spec)
        nondigits_train = torch.from_numpy(arrays[inked]).unsqueeze(1)
        inputs = torch.cat([train_set.images, nondigits_train])
        targets = torch.cat([train_set.labels, torch.full((len(nondigits_train),), NONDIGIT, dtype=torch.long)])

        classifier = nn.Sequential(networks.Normalize(data.MNIST_MEAN, data.MNIST_STD), networks.MnistMLP())
        classifier.to(settings.device)
        batches = data.SoftTargetBatches(
            inputs.to(settings.device),
            targets.to(settings.device),
            self.batch_size,
            classes=len(self.output.labels),
            outlier_weight=self.outlier_weight,
            blend_share=self.blend_share,
            transform=self.augmentation,
        )
        epochs = settings.epochs or self.epochs
        optimiser = torch.optim.AdamW(classifier.parameters(), lr=self.max_learning_rate, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=self.max_learning_rate, total_steps=epochs * len(batches)
        )
        # The loss plot's second curve: the held-out digits as they are (no distortion, no non-digits).
        held_out = HeldOut(
            held_set.images.to(settings.device),
            F.one_hot(held_set.labels, len(self.output.labels)).float().to(settings.device),
        )
        losses = fit(
            classifier, batches, soft_cross_entropy, optimiser, epochs, scheduler, description=self.name, held_out=held_out
        )
        classifier = classifier.cpu().eval()

        # Calibration on held-out digits only (never the test set).
        held_logits = _logits(classifier, held_set.images)
        temperature = calibration.fit_temperature(held_logits, held_set.labels)
        last = classifier[1].stack[-1]
        classifier[1].stack[-1] = calibration.fold_temperature(last, temperature)
        served = nn.Sequential(classifier, nn.Softmax(dim=1)).eval()

        probabilities = _probabilities(served, test_set.images)
        predictions = probabilities.argmax(dim=1)
        wrong = (predictions != test_set.labels).nonzero().squeeze(1)
        accuracy = 1 - len(wrong) / len(test_set)
        test_loss = F.nll_loss(probabilities.clamp_min(1e-12).log(), test_set.labels).item()

        policy, chosen = self._verdict_policy(served, held_set, temperature, settings)
        answers = {
            "official_raw": evaluate.Answers.of(test_set.labels.numpy(), probabilities.numpy(), policy),
            **evaluate.answer_in_process(served, self._evaluation_sets(test_set, settings), spec, policy),
        }
        metrics = {
            "test_accuracy": accuracy,
            "test_loss": test_loss,
            "train_loss": losses[-1],
            "test_images": float(len(test_set)),
            "misclassified": float(len(wrong)),
            "temperature": temperature,
            "heldout_nll_uncalibrated": calibration.nll(held_logits, held_set.labels),
            "heldout_nll": calibration.nll(held_logits, held_set.labels, temperature),
            "test_ece": calibration.expected_calibration_error(probabilities.numpy(), test_set.labels.numpy()),
            **chosen,
        }
        for name, set_answers in answers.items():
            metrics |= evaluate.figures(name, set_answers)
        subset = " (the first images of each set only)" if settings.train_limit or settings.test_limit else ""
        return Trained(
            module=served,
            example=test_set.images[:64],
            losses=losses,
            metrics=metrics,
            description=(
                "Handwritten digit classifier: seed 000's MLP (784-512-256-10, ReLU) on MNIST, "
                f"{accuracy:.2%} accuracy on {len(test_set):,} official test images, calibrated "
                "probabilities and a verdict (digit, uncertain, not a digit) on every picture."
            ),
            data=(
                f"MNIST via torchvision.datasets.MNIST: {len(train_set):,} official training images and "
                f"{len(nondigits_train):,} synthetic non-digits ({', '.join(nondigits.TRAINING_KINDS)}) for "
                f"training, the last {len(held_set):,} training images held out for calibration and thresholds, "
                f"{len(test_set):,} official test images for evaluation{subset}"
            ),
            epochs=epochs,
            hyperparameters={
                "batch_size": self.batch_size,
                "optimiser": "AdamW",
                "max_learning_rate": self.max_learning_rate,
                "schedule": "OneCycleLR",
                "weight_decay": self.weight_decay,
                "augmentation": str(self.augmentation),
                "outlier_weight": self.outlier_weight,
                "blend_share": self.blend_share,
                "nondigits": len(nondigits_train),
                "held_out": len(held_set),
            },
            figures={
                **self._figures(test_set, probabilities, wrong),
                **self._calibration_figures(answers, policy),
            },
            verdict=policy,
            held_out_losses=held_out.losses,
        )

    def _verdict_policy(
        self, served: nn.Module, held_set: data.ImageSet, temperature: float, settings: Settings
    ) -> tuple[Verdict, dict[str, float]]:
        """Thresholds from held-out digits drawn as people send them (never the test set)."""
        digits = (held_set.images[:, 0] * 255).round().byte().numpy()
        as_sent = evaluate.sent_like_people("heldout_as_sent", digits, held_set.labels.numpy(), seed=settings.seed + 1)
        arrays, _ = evaluate.prepared(as_sent, self.input.image)
        best = evaluate.probabilities_of(served, arrays).max(axis=1).astype(np.float64)
        # Rounded down to 3 decimals, so the shares kept are at least the ones asked for.
        digit_at_least = math.floor(np.quantile(best, 1 - self.digit_acceptance) * 1000) / 1000
        not_a_digit_below = min(digit_at_least, math.floor(np.quantile(best, self.digit_rejection) * 1000) / 1000)
        policy = Verdict(
            method="max_probability",
            digit_at_least=digit_at_least,
            not_a_digit_below=not_a_digit_below,
            temperature=temperature,
            chosen_on=(
                f"the last {len(held_set):,} MNIST training images (never trained on): the temperature on them "
                f"as they are; the thresholds on them drawn as people send them, so that {self.digit_acceptance:.1%} "
                f"get 'digit' and at most {self.digit_rejection:.1%} 'not_a_digit'"
            ),
        )
        return policy, {"heldout_as_sent_digit_verdicts": float((best >= digit_at_least).mean())}

    def _evaluation_sets(self, test_set: data.ImageSet, settings: Settings) -> list[evaluate.PictureSet]:
        """The sets the manifest's figures are measured on (the first --test-limit pictures of each)."""
        digits = (test_set.images[:, 0] * 255).round().byte().numpy()
        sets = [
            evaluate.sent_like_people("official_as_sent", digits, test_set.labels.numpy(), seed=2024),
            evaluate.uci_digits(),
            evaluate.font_digits(),
            evaluate.nondigit_evaluation(),
            evaluate.blends(digits, test_set.labels.numpy()),
        ]
        return [pictures.head(settings.test_limit) for pictures in sets if len(pictures)]

    def _calibration_figures(self, answers: dict[str, evaluate.Answers], policy: Verdict) -> dict[str, Figure]:
        digit_sets = {
            SET_TITLES[name]: (set_answers.probabilities, set_answers.labels)
            for name, set_answers in answers.items()
            if name in SET_TITLES
        }
        return {
            "reliability.png": calibration.reliability_diagram(digit_sets, f"{self.name}: reliability (calibrated)"),
            "accuracy_coverage.png": calibration.accuracy_coverage(
                digit_sets, policy.digit_at_least, f"{self.name}: accuracy against coverage"
            ),
        }

    def _figures(self, test_set: data.ImageSet, probabilities: torch.Tensor, wrong: torch.Tensor) -> dict[str, Figure]:
        labels = self.output.labels
        predictions = probabilities.argmax(dim=1)
        counts = torch.bincount(test_set.labels * 10 + predictions, minlength=100).reshape(10, 10).numpy()
        # The mistakes the model was surest of are the most telling ones.
        confidence = probabilities[wrong, predictions[wrong]]
        shown = wrong[confidence.argsort(descending=True)][:32]
        captions = [
            f"{test_set.labels[i].item()} as {predictions[i].item()} ({probabilities[i, predictions[i]].item():.0%})"
            for i in shown
        ]
        return {
            "confusion_matrix.png": plots.confusion_matrix(counts, labels, f"{self.name}: test-set confusion matrix"),
            "misclassified.png": plots.image_grid(
                test_set.images[shown, 0].numpy(), captions, f"{self.name}: most confident mistakes (true as predicted)"
            ),
        }


# ---------------------------------------------------------------------------------------------
# The small regression seeds: all their data is one batch, trained full-batch on MSE, and one
# epoch is one gradient step, as in the notebooks.  ``epochs`` is a budget: training stops once
# the loss has stopped falling (fit.Convergence).


@dataclass
class RegressionTask(Task):
    name: str
    seed_notebook: str
    summary: str
    departures: tuple[str, ...]
    input: TensorSpec
    output: TensorSpec
    load: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    data_description: str
    build: Callable[[], nn.Module]
    optimiser: str  # "SGD" or "Adam"
    learning_rate: float
    epochs: int
    bar: Bar
    momentum: float = 0.0

    def _train(self, settings: Settings) -> Trained:
        inputs, targets = self.load()
        model = self.build().to(settings.device)
        epochs = settings.epochs or self.epochs
        if self.optimiser == "SGD":
            optimiser = torch.optim.SGD(model.parameters(), lr=self.learning_rate, momentum=self.momentum)
        else:
            optimiser = torch.optim.Adam(model.parameters(), lr=self.learning_rate)
        full_batch = [(inputs.to(settings.device), targets.to(settings.device))]
        # These seeds have no examples to hold out: all of their data is the one training batch.
        losses = fit(model, full_batch, F.mse_loss, optimiser, epochs, description=self.name, convergence=Convergence())

        served = self.served_module(model).cpu().eval()
        metrics = self.metrics(served, inputs, targets)
        # Parity inputs: the training rows and 60 more around them, so the check is not only on 1-5 rows.
        scales = torch.empty(60, inputs.shape[1]).uniform_(0.5, 1.5)
        example = torch.cat([inputs, inputs[torch.randint(len(inputs), (60,))] * scales])
        hyperparameters: Hyperparameters = {
            "optimiser": self.optimiser,
            "learning_rate": self.learning_rate,
            "max_epochs": epochs,  # stopped sooner once converged: see training.epochs
        }
        if self.optimiser == "SGD":
            hyperparameters["momentum"] = self.momentum
        return Trained(
            module=served,
            example=example,
            losses=losses,
            metrics=metrics,
            description=self.describe(metrics),
            data=self.data_description,
            epochs=len(losses),
            hyperparameters=hyperparameters,
            figures=self.figures(served, inputs, targets),
        )

    def served_module(self, model: nn.Module) -> nn.Module:
        return model

    def metrics(self, served: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            return {"mse": F.mse_loss(served(inputs), targets).item()}

    def describe(self, metrics: dict[str, float]) -> str:
        return self.summary

    def figures(self, served: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, Figure]:
        return {}


class LinearSystemTask(RegressionTask):
    """Seed 000: solve A x = b by gradient descent; x is served as the weight of Linear(4, 1)."""

    def metrics(self, served: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        solution = served.weight.detach().squeeze(0)
        exact = torch.linalg.solve(inputs.double(), targets.double()).squeeze(1)
        unknowns = dict(zip("wxyz", solution.tolist(), strict=True))
        return {
            **super().metrics(served, inputs, targets),
            "max_abs_error": (solution.double() - exact).abs().max().item(),
            **{f"solution_{name}": value for name, value in unknowns.items()},
        }

    def describe(self, metrics: dict[str, float]) -> str:
        solution = ", ".join(f"{name} = {metrics[f'solution_{name}']:.4f}" for name in "wxyz")
        return f"{self.summary} Learned solution: {solution}."


class SalesRegressionTask(RegressionTask):
    """Seed 001: y = W x + b on five rows; trained on standardised inputs, served on raw ones."""

    def served_module(self, model: nn.Module) -> nn.Module:
        standardize, linear = model
        return networks.fold_normalize(standardize, linear)

    def metrics(self, served: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        # The least-squares optimum with a bias column, in float64: the best any y = W x + b can do.
        design = np.hstack([inputs.double().numpy(), np.ones((len(inputs), 1))])
        coefficients, *_ = np.linalg.lstsq(design, targets.double().numpy(), rcond=None)
        optimal_mse = float(np.mean((design @ coefficients - targets.double().numpy()) ** 2))
        mse = super().metrics(served, inputs, targets)["mse"]
        return {"mse": mse, "optimal_mse": optimal_mse, "mse_over_optimum": mse / optimal_mse}


def _standardized_sales_model() -> nn.Module:
    inputs, _ = data.iphone_sales()
    # Seed departure: the seed's lr (1e-5, then 1e-7) on raw inputs (income ~ 80, tax ~ 0.05) cannot
    # converge: the loss surface is ~10^6 times steeper along income than along tax.  Standardising
    # makes it round; fold_normalize puts the scaling back into the served weights.
    return nn.Sequential(
        networks.Normalize(inputs.mean(dim=0), inputs.std(dim=0)), networks.gaussian_linear(3, 1, bias=True)
    )


class CubicTask(RegressionTask):
    """Seed 004: the 20-vector linspace(-1, 1, 20) mapped to x^3 - x by a 20-10-20 network."""

    def figures(self, served: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, Figure]:
        with torch.no_grad():
            fitted = served(inputs)
        return {
            "fit.png": plots.fitted_curve(
                inputs[0].numpy(), targets[0].numpy(), fitted[0].numpy(), f"{self.name}: x^3 - x and the network's fit"
            )
        }


def _vector(name: str, width: int, description: str) -> TensorSpec:
    return TensorSpec(name=name, dtype="float32", shape=[-1, width], description=description)


TASKS: dict[str, Task] = {
    task.name: task
    for task in [
        MnistTask(),
        LinearSystemTask(
            name="linear_system",
            seed_notebook="000_3b48c658da637a7e.txt",
            summary=(
                "The solution x = (w, x, y, z) of the seed's four linear equations A x = b, found by gradient "
                "descent and served as a bias-free Linear(4, 1): a row of A in, that row times x out."
            ),
            departures=(
                "Served as Linear(4, 1) without bias whose weight is the learned x (the seed keeps a bare "
                "tensor); the loss is the same MSE of A x against b.",
            ),
            input=_vector("coefficients", 4, "Coefficients (w, x, y, z) of one linear equation, e.g. a row of A"),
            output=_vector("value", 1, "The equation's left-hand side at the learned solution: the row times x"),
            load=data.linear_system,
            data_description="Seed 000's system A x = b: four equations in four unknowns",
            build=lambda: networks.gaussian_linear(4, 1, bias=False),  # x = torch.randn([4])
            optimiser="SGD",
            learning_rate=0.01,
            momentum=0.9,
            epochs=1000,
            bar=Bar(metric="max_abs_error", op="<", threshold=1e-3),
        ),
        SalesRegressionTask(
            name="sales_regression",
            seed_notebook="001_2a1b1651d533f20e.txt",
            summary=(
                "Linear regression y = W x + b predicting iPhone sales (thousands) from a country's average "
                "income, iPhone price and tax (all in thousands)."
            ),
            departures=(
                "Inputs are standardised for training and the scaling is folded back into the exported "
                "weights, so the served model takes raw inputs; the seed's learning rate on raw inputs "
                "never reaches the least-squares optimum.",
                "SGD with momentum 0.9 and learning rate 0.1 instead of hand-written steps of 1e-5 and 1e-7.",
                "Targets shaped [5, 1] like the predictions: the seed's [5] targets broadcast to a 5x5 "
                "difference, so its loss compared every prediction with every target.",
            ),
            input=_vector("features", 3, "Average income, iPhone price and tax of a country, each in thousands"),
            output=_vector("sales", 1, "Predicted iPhone sales in thousands"),
            load=data.iphone_sales,
            data_description="Seed 001's five countries: (income, price, tax) in K -> iPhones sold in K",
            build=_standardized_sales_model,
            optimiser="SGD",
            learning_rate=0.1,
            momentum=0.9,
            epochs=2000,
            bar=Bar(metric="mse_over_optimum", op="<=", threshold=1.01),
        ),
        RegressionTask(
            name="sigmoid_mlp",
            seed_notebook="002_e6f9279499c52a6a.txt",
            summary="Seed 002's 4-5-7-3 network with sigmoid activations, fitted to map ones(4) to ones(3).",
            departures=("Trained for many SGD steps until the loss is below 1e-3; the seed takes one step.",),
            input=_vector("x", 4, "A 4-vector; the training example is ones(4)"),
            output=_vector("y", 3, "The network's 3-vector output; trained to give ones(3) for ones(4)"),
            load=data.ones_to_ones,
            data_description="Seed 002's single example: ones(4) -> ones(3)",
            build=networks.SigmoidMLP,
            optimiser="SGD",
            learning_rate=0.3,
            epochs=1000,
            bar=Bar(metric="mse", op="<", threshold=1e-3),
        ),
        RegressionTask(
            name="linear_projection",
            seed_notebook="003_de57b1e83d64812d.txt",
            summary="Seed 003's linear projection y = W x (W is 4x3, no bias), fitted to map [1, 2, 4] to [1, 2, 3, 4].",
            departures=("Repeated gradient steps until the loss is below 1e-6; the seed takes one.",),
            input=_vector("x", 3, "A 3-vector; the training example is [1, 2, 4]"),
            output=_vector("y", 4, "W x; trained to give [1, 2, 3, 4] for [1, 2, 4]"),
            load=data.projection_example,
            data_description="Seed 003's single example: [1, 2, 4] -> [1, 2, 3, 4]",
            build=lambda: networks.gaussian_linear(3, 4, bias=False),  # W = torch.randn((4, 3))
            optimiser="SGD",
            learning_rate=0.03,
            epochs=300,
            bar=Bar(metric="mse", op="<", threshold=1e-6),
        ),
        RegressionTask(
            name="relu_2layer",
            seed_notebook="003_de57b1e83d64812d.txt",
            summary="Seed 003's 2-layer network W2 relu(W1 x) without biases, fitted to map [1, 2, 4] to [1, 2, 3, 4].",
            departures=(
                "W2 is updated by its gradient like W1: the seed re-randomises W2 right after its update (a bug).",
                "Repeated gradient steps until the loss is below 1e-4; the seed takes one.",
            ),
            input=_vector("x", 3, "A 3-vector; the training example is [1, 2, 4]"),
            output=_vector("y", 4, "W2 relu(W1 x); trained to give [1, 2, 3, 4] for [1, 2, 4]"),
            load=data.projection_example,
            data_description="Seed 003's single example: [1, 2, 4] -> [1, 2, 3, 4]",
            build=networks.ReLUTwoLayer,
            optimiser="SGD",
            learning_rate=0.03,
            epochs=1000,
            bar=Bar(metric="mse", op="<", threshold=1e-4),
        ),
        CubicTask(
            name="cubic_approximator",
            seed_notebook="004_e67d29d0d5c1a862.txt",
            summary=(
                "Seed 004's network (20-10 without bias, sigmoid, 10-20) mapping the 20 points "
                "linspace(-1, 1, 20) to x^3 - x at those points, the whole vector at once."
            ),
            departures=("Adam for 2000 steps instead of 100, which stop well above an MSE of 1e-4.",),
            input=_vector("x", 20, "20 values; the training example is linspace(-1, 1, 20)"),
            output=_vector("y", 20, "The network's 20 outputs; trained to give x^3 - x for linspace(-1, 1, 20)"),
            load=data.cubic_curve,
            data_description="Seed 004's single example: x = linspace(-1, 1, 20) -> x^3 - x",
            build=networks.CubicNet,
            optimiser="Adam",
            learning_rate=0.01,
            epochs=2000,
            bar=Bar(metric="mse", op="<", threshold=1e-4),
        ),
    ]
}
