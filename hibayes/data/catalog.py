"""Locate the example datasets shipped in ``hibayes/data/examples/``.

The CSVs are simulated by ``scripts/make_example_data.py`` from known parameters,
recorded in ``examples/true_values.json``; this module only finds the files.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DataError

__all__ = ["EXAMPLES", "EXAMPLES_DIR", "example_path"]

#: Folder holding the shipped example files.
EXAMPLES_DIR: Path = Path(__file__).resolve().parent / "examples"

#: Names of the shipped example tables (file stems of the CSVs).
EXAMPLES: tuple[str, ...] = (
    "binary_evals",
    "grader_scores",
    "llm_evals",
    "llm_evals_counts",
    "nested_evals",
)


def example_path(name: str) -> Path:
    """Return the path of a shipped example CSV, by name (``.csv`` optional).

    :param name: one of :data:`EXAMPLES`, e.g. ``"llm_evals"``.
    :return: absolute path of the CSV file.
    :rtype: pathlib.Path
    :raises DataError: the name is not a shipped example.
    """
    stem = name.removesuffix(".csv")
    if stem not in EXAMPLES:
        raise DataError(
            f"unknown example {name!r}; available: {list(EXAMPLES)}", source=name
        )
    return EXAMPLES_DIR / f"{stem}.csv"
