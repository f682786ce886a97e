"""The optimizer study (docs/study.md): tune four optimizers with one budget, rerun each over seeds, compare them."""

from importlib.util import find_spec

if find_spec("optuna") is None:  # checked without importing: Optuna takes a while to import
    raise ModuleNotFoundError("digitnet.study needs optuna, which is not installed; pip install -e '.[study]'",
                              name="optuna")  # fmt: skip
