"""Process machinery every layer may use: threads, signals, exit, secrets, commands.

Nothing here knows about models, fits or MLflow; it imports no other hibayes
package except :mod:`hibayes.errors`.
"""
