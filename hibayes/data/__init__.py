"""Data layer: read evaluation tables and turn them into model features.

``load_table`` reads a file, ``make_features`` validates and encodes a table into
a :class:`FeatureSet`, and ``example_path`` finds the shipped example datasets.
Every bad input raises :class:`DataError` naming file, column, row and value.
"""

from .catalog import EXAMPLES, EXAMPLES_DIR, example_path
from .errors import DataError
from .features import FeatureSet, features_from_config, make_features
from .io import FORMATS, file_digest, load_table, table_digest
from .outcomes import OUTCOMES, resolve_outcome

__all__ = [
    "EXAMPLES",
    "EXAMPLES_DIR",
    "FORMATS",
    "OUTCOMES",
    "DataError",
    "FeatureSet",
    "example_path",
    "features_from_config",
    "file_digest",
    "load_table",
    "make_features",
    "resolve_outcome",
    "table_digest",
]
