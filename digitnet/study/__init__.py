"""The optimizer study: which optimizer trains the report's network best, asked as the optimizer benchmarks ask it.

Every optimizer gets the same tuning budget over a search space that covers all of its hyperparameters, the
model and training stay the report's, and the tuned settings are rerun over several seeds and compared with a
corrected significance test.

    spaces.py     the search spaces, the fixed model and training, trial params -> optimizer arguments
    runs.py       one study run through the package's CLI: its logger, its quiet terminal
    storage.py    the Optuna storage the workers share: a journal file, SQLite or PostgreSQL
    heartbeat.py  a running trial's heartbeat, and rerunning the trials of workers that died
    tune.py       the tuning: the seeded sampler, the exact budget, the worker loop
    record.py     a finished tuning's configs, tuning.md and plots
    compare.py    the rerun of configs over several seeds: one run each, results.csv
    stats.py      means with confidence intervals, Welch's t-test with Holm's correction
    summary.py    the comparison's summary.md, curves.png and README block

The programs are scripts/tune_optimizers.py, scripts/study_report.py and scripts/compare_optimizers.py, thin
parsers over `tune.main`, `tune.report` and `compare.main`. They are not `python -m digitnet` subcommands on
purpose: the study is a research workflow of long runs in several worker processes (or machines) sharing a
database, which the checkout's configs/ and docs/ record; the CLI stays the tool for training and using models.

It needs the `study` extra (Optuna, SciPy; psycopg for PostgreSQL): pip install -e '.[study]'.
`import digitnet` never imports this subpackage, so digitnet works without them.
"""

from __future__ import annotations

from importlib.util import find_spec

for _module in ("optuna", "scipy"):
    if find_spec(_module) is None:  # checked without importing: Optuna takes a while to import
        raise ModuleNotFoundError(f"digitnet.study needs {_module}, which is not installed; pip install -e '.[study]'",
                                  name=_module)  # fmt: skip
