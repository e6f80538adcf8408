"""Hydra sweeper plugin for hibayes (see :mod:`hibayes.sweep.session`)."""

import warnings

# conf/hydra/launcher/*.yaml keep the launcher plugins' names (hydra/launcher=joblib), so
# Hydra checks them against the plugins' schemas and warns that this is deprecated.
# Hydra imports this package in the launching process and in every launcher worker
# (unpickling its plugin registry) before it composes a job's config.
warnings.filterwarnings(
    "ignore", message=r"\s*'hydra/launcher/\w+' is validated against"
)
