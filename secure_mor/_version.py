"""The package version, kept in one place for setuptools and ``secure-mor --version``."""

__version__ = "0.1.0"
