"""The comparison's statistics: a mean with its confidence interval, and which pairs of samples differ."""

from __future__ import annotations

import itertools
import math
import statistics
import warnings

import pandas as pd
from scipy import stats


def mean_std(values: pd.Series, scale: float = 1, digits: int = 2) -> str:
    """'98.21 ± 0.10': the mean and the sample standard deviation (0 for one value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{values.mean() * scale:.{digits}f} ± {std * scale:.{digits}f}"


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two ends of its confidence interval (Student's t, n - 1 degrees of freedom)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    # Not stats.t.interval, which gives nan for seeds that agree exactly: test_compare_optimizers.py::
    # test_the_interval_of_samples_without_spread_is_their_value
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def pairwise_tests(samples: dict[str, list[float]], alpha: float = 0.05) -> list[dict]:
    """Welch's t-test for every pair of samples, Holm's correction for the number of pairs; most significant first.
    Each dict: a (the higher mean), b, diff (mean a - mean b), p, p_holm (adjusted) and different (p_holm < alpha)."""
    tests = []
    for (a, xa), (b, xb) in itertools.combinations(samples.items(), 2):
        if statistics.fmean(xa) < statistics.fmean(xb):
            (a, xa), (b, xb) = (b, xb), (a, xa)
        with warnings.catch_warnings():  # samples without spread: scipy warns, and p is nan
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_ind(xa, xb, equal_var=False).pvalue)
        tests.append({"a": a, "b": b, "diff": statistics.fmean(xa) - statistics.fmean(xb),
                      "p": 1.0 if math.isnan(p) else p})  # fmt: skip
    tests.sort(key=lambda t: t["p"])
    # Holm by hand, SciPy has none: tests/test_compare_optimizers.py::test_holm_adjusts_p_values_step_down
    scaled = (min(1.0, (len(tests) - k + 1) * t["p"]) for k, t in enumerate(tests, 1))  # the k-th smallest p
    for test, p_holm in zip(tests, itertools.accumulate(scaled, max)):  # never below the one before it
        test["p_holm"], test["different"] = p_holm, p_holm < alpha
    return tests


def seeds_needed(samples: dict[str, list[float]], alpha: float = 0.05) -> dict[tuple[str, str], int]:
    """For each pair found different: the fewest seeds (the first n of every sample) from which on the
    corrected test calls it different at every n up to all of them."""
    n_max = min(len(x) for x in samples.values())
    needed = {}
    for n in range(n_max, 1, -1):
        tests = pairwise_tests({k: list(x)[:n] for k, x in samples.items()}, alpha)
        for pair in {(t["a"], t["b"]) for t in tests if t["different"]}:
            if n == n_max or needed.get(pair) == n + 1:  # different at every count from n up
                needed[pair] = n
    return needed
