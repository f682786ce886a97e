"""Train the report's dense network with each optimizer and several seeds; tabulate and plot the results.

    python scripts/compare_optimizers.py --data_dir "$DIGITNET_DATA_DIR" --out cmp

Writes OUT/results.csv, OUT/summary.md and OUT/curves.png (digitnet.study.compare); --help lists the flags.
"""

import sys

try:
    from digitnet.study.compare import main
except ModuleNotFoundError as err:  # the study extra is missing
    sys.exit(f"compare_optimizers: error: {err}")

if __name__ == "__main__":
    main()
