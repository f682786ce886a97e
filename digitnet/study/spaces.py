"""The four optimizers' search spaces (why these ranges: docs/optimizers.md), and the settings every trial shares."""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution


def log_uniform(low: float, high: float) -> FloatDistribution:
    return FloatDistribution(low, high, log=True)


@dataclass(frozen=True)
class SearchSpace:
    """A torch.optim class and the distribution of each of its hyperparameters (a name '1-x' samples 1 - x)."""

    class_path: str
    params: dict[str, BaseDistribution]
    keras_defaults: dict[str, object] = field(default_factory=dict)  # the report's one-shot baseline

    def suggest(self, trial: optuna.Trial) -> dict[str, object]:
        """The trial's value of every hyperparameter (a rerun trial's own, else the sampler's). Asked after the
        budget check, not by study.ask(fixed_distributions): a trial over the budget keeps no params for TPE."""
        return {name: trial.suggest_categorical(name, d.choices) if isinstance(d, CategoricalDistribution)
                else trial.suggest_float(name, d.low, d.high, log=d.log)
                for name, d in self.params.items()}  # fmt: skip


def distribution_text(dist: BaseDistribution) -> str:
    """'log-uniform [0.0001, 1]', or 'one of True, False'."""
    if isinstance(dist, CategoricalDistribution):
        return f"one of {', '.join(map(str, dist.choices))}"
    return f"{'log-' if dist.log else ''}uniform [{dist.low:g}, {dist.high:g}]"


ADAM_PARAMS = {"lr": log_uniform(1e-5, 1e-1), "1-beta1": log_uniform(1e-3, 1.0), "1-beta2": log_uniform(1e-4, 1e-1),
               "eps": log_uniform(1e-10, 1.0)}  # fmt: skip
ADAM_KERAS = {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-7}
SEARCH_SPACES: dict[str, SearchSpace] = {
    "SGD": SearchSpace(
        "torch.optim.SGD",
        {"lr": log_uniform(1e-4, 1.0), "1-momentum": log_uniform(1e-3, 0.9),
         "nesterov": CategoricalDistribution([True, False])},
        {"lr": 0.01, "momentum": 0.0},
    ),
    "Adam": SearchSpace("torch.optim.Adam", ADAM_PARAMS, ADAM_KERAS),
    "NAdam": SearchSpace("torch.optim.NAdam", ADAM_PARAMS, ADAM_KERAS),
    "Adadelta": SearchSpace(
        "torch.optim.Adadelta",
        {"lr": log_uniform(1e-3, 10.0), "1-rho": log_uniform(1e-3, 0.5), "eps": log_uniform(1e-10, 1e-1)},
        {"lr": 0.001, "rho": 0.95, "eps": 1e-7},
    ),
}  # fmt: skip
# The report's model and training, the same for every trial (and written into every config).
FIXED = {"model.net.dropout": 0.2, "model.cosine_decay": True, "data.batch_size": 128}
TRAIN_SEED = 100  # every trial's seed_everything; the 10-seed comparison uses seeds 0-9


def init_args(params: dict[str, object], digits: int | None = None) -> dict[str, object]:
    """A trial's params as the optimizer's arguments: {'1-beta1': 0.1, ...} -> {'betas': [0.9, ...], ...}.
    `digits` rounds each float to that many significant digits (of 1 - x for the '1-x' ones)."""
    args = {}
    for name, value in params.items():
        if isinstance(value, float) and digits:
            value = float(f"{value:.{digits}g}")
        if name.startswith("1-"):
            name, value = name[2:], float(f"{1 - value:.12g}")
        args[name] = value
    if "beta1" in args:
        args["betas"] = [args.pop("beta1"), args.pop("beta2")]
    return args
