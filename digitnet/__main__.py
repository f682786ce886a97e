"""`python -m digitnet COMMAND`: the command line, `digitnet.cli.main`."""

import sys

try:
    from digitnet.cli import main

    main()
except KeyboardInterrupt:  # Ctrl-C before or after training (which answers it itself): no traceback
    print("digitnet: interrupted", file=sys.stderr)
    sys.exit(130)
