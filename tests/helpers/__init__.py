"""Shared test helpers: MLflow stores and servers, the browser, posterior checks."""
