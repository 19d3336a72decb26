"""Subcommands of the ``nabla-jax`` command line, one module each."""
