"""histoprog: H&E whole-slide images + clinical tables -> prognostic models.

The library behind the Snakemake workflow; every stage is also a CLI subcommand
(``python -m histoprog <stage> --help``).
"""

__version__ = "0.1.0"
