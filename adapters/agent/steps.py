"""The agent SDK's sans-I/O core: every operation is written once, as a generator of *steps*.

An operation (submit a call, wait for its decision, verify and run a grant, ...) never does
I/O itself. It yields what it needs done -- ``Invoke`` a function (an HTTP exchange, the
key fetch, the tool), or ``Sleep`` -- and gets the result (or the exception) sent back. A
*shell* performs the steps: ``drive`` runs them synchronously (plain calls,
``time.sleep``), ``adrive`` on an event loop (awaits each result, ``asyncio.sleep``).
``blocking`` and ``awaiting`` turn an operation into the synchronous or the asynchronous
function of the same signature; ``Operation`` does it for methods, once, in the base that
a ``Blocking`` and an ``Awaiting`` shell share. So ``Signoff``/``AsyncSignoff``,
``Approvals``/``AsyncApprovals``, the grant verifiers and the framework helpers share every
decision and differ only in how they wait (the shape of python-hyper/h11: protocol logic
apart from the transport).

An ``Invoke`` on the asynchronous shell awaits what the function returns, so an operation
invokes the shell's own functions (``client.get`` is a coroutine function on the async
shell, a plain one on the sync shell); one operation serves both.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Invoke:
    """Call ``fn(*args, **kwargs)`` (and, on the async shell, await its result)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before going on."""

    seconds: float


Step = Invoke | Sleep
Steps = Generator[Step, Any, T]
"""An operation: yields steps, receives each result, returns its value."""


def invoke(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Invoke:
    return Invoke(fn, args, kwargs)


class _Run:
    """One operation being driven: what to send it next (a result or an exception raised
    inside it, so failures take the same paths on both shells) and its final value."""

    __slots__ = ("error", "result", "steps", "value")

    def __init__(self, steps: Steps[Any]) -> None:
        self.steps = steps
        self.value: Any = None
        self.error: BaseException | None = None
        self.result: Any = None

    def next(self, sleep: Callable[[float], Any]) -> Invoke | None:
        """The next step (a ``Sleep`` as a call of the shell's ``sleep``), or None once the
        operation returned (its value in ``result``)."""
        try:
            if self.error is None:
                step = self.steps.send(self.value)
            else:
                step = self.steps.throw(self.error)
        except StopIteration as done:
            self.result = done.value
            return None
        self.value, self.error = None, None
        return invoke(sleep, step.seconds) if isinstance(step, Sleep) else step

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        # Whatever the step raised (cancellation too) is raised inside the operation next,
        # which handles it or lets it out of ``next``: its finally blocks always run.
        self.error = exc
        return True


def drive(steps: Steps[T]) -> T:
    """Run ``steps`` synchronously (plain calls, ``time.sleep``)."""
    run = _Run(steps)
    while (step := run.next(time.sleep)) is not None:
        with run:
            run.value = step.fn(*step.args, **step.kwargs)
    return run.result  # type: ignore[no-any-return]


async def adrive(steps: Steps[T]) -> T:
    """Run ``steps`` on the running event loop (each result awaited, ``asyncio.sleep``)."""
    run = _Run(steps)
    while (step := run.next(asyncio.sleep)) is not None:
        with run:
            run.value = await step.fn(*step.args, **step.kwargs)
    return run.result  # type: ignore[no-any-return]


def blocking(operation: Callable[P, Steps[T]], name: str | None = None) -> Callable[P, T]:
    """The synchronous function (or method) running ``operation`` (named ``name``)."""

    @functools.wraps(operation)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return drive(operation(*args, **kwargs))

    return _named(run, name)


def awaiting(
    operation: Callable[P, Steps[T]], name: str | None = None
) -> Callable[P, Coroutine[Any, Any, T]]:
    """The coroutine function (or method) running ``operation`` (named ``name``)."""

    @functools.wraps(operation)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return await adrive(operation(*args, **kwargs))

    return _named(run, name)


def _named(function: F, name: str | None) -> F:
    if name is not None:
        function.__name__ = name
        function.__qualname__ = name
    return function


class Blocking:
    """Marks a synchronous shell: its ``Operation`` attributes are plain methods."""


class Awaiting:
    """Marks an asynchronous shell: its ``Operation`` attributes are coroutine methods."""


class Operation(Generic[S, P, T]):
    """A method written once as an operation: on a ``Blocking`` class it is the
    synchronous method running it, on an ``Awaiting`` class the coroutine method. So the
    method table of a pair of shells lives once, in their shared base."""

    def __init__(self, operation: Callable[Concatenate[S, P], Steps[T]]) -> None:
        self._blocking = blocking(operation)
        self._awaiting = awaiting(operation)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Callable[Concatenate[S, P], Any]: ...
    @overload
    def __get__(
        self, obj: Awaiting, owner: type[Any] | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, obj: Blocking, owner: type[Any] | None = None) -> Callable[P, T]: ...
    def __get__(self, obj: object, owner: type[Any] | None = None) -> Any:
        kind = owner if owner is not None else type(obj)
        method = self._awaiting if issubclass(kind, Awaiting) else self._blocking
        return method.__get__(obj, owner)


__all__ = [
    "Awaiting",
    "Blocking",
    "Invoke",
    "Operation",
    "Sleep",
    "Step",
    "Steps",
    "adrive",
    "awaiting",
    "blocking",
    "drive",
    "invoke",
]
