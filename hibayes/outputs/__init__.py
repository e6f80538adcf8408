"""Outputs: what a fit or a sweep writes to its directory (files, the HTML report).

Everything a run holds in MLflow is written here first, so results survive a
tracking store that is down. Nothing here fits, diagnoses or talks to a store.
"""
