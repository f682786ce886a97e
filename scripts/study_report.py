"""Write the record of complete tuning studies again (configs, tuning.md, plots) from their storage, without training.

    python scripts/study_report.py --data_dir "$DIGITNET_DATA_DIR" --out study --configs_dir configs/optimizers \
        --report_dir docs/optimizers

It takes scripts/tune_optimizers.py's arguments (the worker that completes the last trial writes the same
files; digitnet.study.record).
"""

import sys

try:
    from digitnet.study.tune import report
except ModuleNotFoundError as err:  # the study extra is missing
    sys.exit(f"study_report: error: {err}")

if __name__ == "__main__":
    report()
