"""The optimizer study (docs/study.md): tune four optimizers with one budget, rerun each over seeds, compare them."""

from __future__ import annotations

from importlib.util import find_spec

for _module in ("optuna", "scipy"):
    if find_spec(_module) is None:  # checked without importing: Optuna takes a while to import
        raise ModuleNotFoundError(f"digitnet.study needs {_module}, which is not installed; pip install -e '.[study]'",
                                  name=_module)  # fmt: skip
