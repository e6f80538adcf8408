"""Hydra sweeper plugin for hibayes (see :mod:`hibayes.sweep`)."""
