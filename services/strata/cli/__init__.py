"""The `strata` command-line interface."""
