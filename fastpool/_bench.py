"""Entry point of ``fastpool bench`` (see :mod:`fastpool.bench`)."""

from .bench import main  # noqa: F401
