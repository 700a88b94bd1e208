"""Implementation of the ``jaxmm`` command line (one module per subcommand).

The entry point and the argument parser are in :mod:`jaxmm.cli`; each ``run_*`` function here
takes the parsed arguments and returns the process exit code.
"""
