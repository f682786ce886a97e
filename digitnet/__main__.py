"""`python -m digitnet COMMAND` and the `digitnet` command: the command line, `digitnet.cli.main`."""

import os
import sys


def run() -> None:
    """`digitnet.cli.main`, imported here so that Ctrl-C while torch and Lightning load ends as quietly as later."""
    try:
        from digitnet.cli import main

        main()
    except KeyboardInterrupt:  # before or after training (which answers Ctrl-C itself): no traceback
        if os.environ.get("LOCAL_RANK", "0") == "0":  # once, not by every DDP process Ctrl-C reaches
            print("digitnet: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
