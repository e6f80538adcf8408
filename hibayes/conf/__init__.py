"""The commands' Hydra configs (``config.yaml``, ``compare.yaml`` and their groups).

A package, not a plain folder: an installed console script's ``hydra.main`` finds
them as ``pkg://hibayes.conf``, and Hydra accepts a package source only when it has
an ``__init__.py``.
"""
