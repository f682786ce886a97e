"""Tune each optimizer with the same Optuna budget, then write its best trial as a config.

    python scripts/tune_optimizers.py --data_dir "$DIGITNET_DATA_DIR" --out study

One worker of the study (digitnet.study.tune); run the same command in more terminals, or on more machines
against one --storage, to split the budget. --help lists the flags; docs/study.md says how to run and watch it.
"""

import sys

try:
    from digitnet.study.tune import main
except ModuleNotFoundError as err:  # the study extra is missing
    sys.exit(f"tune_optimizers: error: {err}")

if __name__ == "__main__":
    main()
