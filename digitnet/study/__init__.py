"""The optimizer study: tune four optimizers with the same budget, rerun each over seeds, compare them.

Modules and programs: docs/study.md. Needs the `study` extra (pip install -e '.[study]'); `import digitnet` skips it.
"""

from __future__ import annotations

from importlib.util import find_spec

for _module in ("optuna", "scipy"):
    if find_spec(_module) is None:  # checked without importing: Optuna takes a while to import
        raise ModuleNotFoundError(f"digitnet.study needs {_module}, which is not installed; pip install -e '.[study]'",
                                  name=_module)  # fmt: skip
