"""CLI subcommands, one module per workflow stage (see ``histoprog.cli``)."""
