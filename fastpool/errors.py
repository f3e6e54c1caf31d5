"""The exceptions fastpool raises.

Every argument problem is a :class:`PoolingError` (a ``ValueError``); a wrong
type is a :class:`PoolingTypeError`, which is both a ``PoolingError`` and a
``TypeError``, so callers can catch either the library's type or Python's.
"""

from __future__ import annotations


class PoolingError(ValueError):
    """An argument breaks a rule of the operation; the message names both."""


class PoolingTypeError(PoolingError, TypeError):
    """An argument has a type or dtype the operation does not accept."""


def describe_call(op: str, shape) -> str:
    return f"{op}(input of shape {tuple(shape)})"
