"""`python -m digitnet COMMAND`: the command line, `digitnet.cli.main`."""

from digitnet.cli import main

main()
