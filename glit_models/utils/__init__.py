"""Utilities at the bottom of the package: errors, atomic writes, the run lock, the run clock, distributed helpers,
the CLI entry.

Nothing here imports the rest of the package.
"""
