"""The ``capsim`` command line: the app (:mod:`sim.cli.app`), one module per command group, and
the helpers they share (:mod:`sim.cli.common`). Nothing outside this package imports it."""
