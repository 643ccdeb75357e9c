"""``python -m sim.cli``: the ``capsim`` command."""
from sim.cli.app import main

main()
