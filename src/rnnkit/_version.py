"""The package version, importable without importing the package (run files record it)."""

__version__ = "0.1.0"
