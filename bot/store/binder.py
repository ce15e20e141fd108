"""``Binder``: a compiled statement's parameters from a dict of values, shared by the raw
statements on SQLite (``bot.store.raw``) and on PostgreSQL (``bot.store.pgraw``)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

#: a column type's bind processor, or ``None`` when the value goes to the driver as it is
Processor = Callable[[Any], Any] | None


class Binder:
    """A statement's parameters from a dict of values, in the compiled order: each value
    (or the one fixed in the statement where the dict has none) through its bind
    processor. The values are read in one C call and only the columns with a processor
    are touched again: a request row has ~35 columns, a dozen of them with a processor."""

    def __init__(
        self, names: list[str], processors: Sequence[Processor], fixed: dict[str, Any]
    ) -> None:
        self._fixed = fixed
        self._get: Callable[[dict[str, Any]], Sequence[Any]]
        if len(names) == 1:
            only = names[0]
            self._get = lambda values: (values[only],)
        else:
            self._get = operator.itemgetter(*names) if names else (lambda _: ())
        self._process = [(i, p) for i, p in enumerate(processors) if p is not None]

    def __call__(self, values: dict[str, Any]) -> list[Any]:
        if self._fixed:
            values = self._fixed | values
        out = list(self._get(values))
        for i, process in self._process:
            out[i] = process(out[i])
        return out
