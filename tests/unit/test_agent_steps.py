"""The agent SDK's sans-I/O core: operations written once as steps, run by a synchronous
and an asynchronous shell with the same decisions (long-poll budget, retries, failures)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from adapters.agent import AsyncApprovals, AsyncSignoff, Signoff
from adapters.agent.errors import ApiError, Unavailable
from adapters.agent.protocol import POLL_SLICE, RETRY_DELAYS, Exchange, LongPoll, read_answer
from adapters.agent.protocol import wait as wait_steps
from adapters.agent.steps import Invoke, Sleep, Steps, adrive, drive, invoke

PENDING = {
    "id": "r1",
    "status": "pending",
    "tier": "confirm",
    "tool": "t",
    "arguments_sha256": "a" * 64,
    "call_sha256": "c" * 64,
    "agent": {"id": "ag"},
}


def test_long_poll_slices_the_budget_and_backs_off_only_while_time_is_left() -> None:
    poll = LongPoll(end=100.0)
    assert poll.slice(0.0) == POLL_SLICE
    assert poll.slice(90.0) == 10.0
    assert poll.slice(101.0) == 0.0
    delays = [poll.backoff(0.0) for _ in range(len(RETRY_DELAYS) + 2)]
    assert delays == [*RETRY_DELAYS, RETRY_DELAYS[-1], RETRY_DELAYS[-1]]
    assert poll.backoff(99.9) == pytest.approx(0.1)  # never sleeps past the budget
    assert poll.backoff(100.0) is None  # time is up: the failure is raised


def test_an_answer_resets_the_backoff_and_ends_the_wait_when_final_or_out_of_time() -> None:
    from adapters.agent.state import RequestState

    pending = RequestState.from_json(PENDING)
    final = RequestState.from_json({**PENDING, "status": "denied"})
    poll = LongPoll(end=100.0)
    poll.backoff(0.0)
    poll.backoff(0.0)
    assert not poll.settled(pending, 1.0)
    assert poll.backoff(1.0) == RETRY_DELAYS[0]
    assert poll.settled(final, 1.0)
    assert poll.settled(pending, 100.0)


def test_error_answers_fail_closed() -> None:
    with pytest.raises(Unavailable):
        read_answer(503, b"{}", None)
    with pytest.raises(ApiError) as refused:
        read_answer(429, b'{"detail": "slow down"}', "7")
    assert refused.value.retry_after == 7
    assert read_answer(200, b'{"ok": true}', None) == {"ok": True}


class ScriptedClient(Signoff):
    """A client whose HTTP exchanges are answered from a script, to drive the core alone."""

    def __init__(self, answers: list[Any]) -> None:
        super().__init__("http://signoff.invalid", "token")
        self.answers = answers
        self.sent: list[Exchange] = []

    def _send(self, exchange: Exchange) -> Any:
        self.sent.append(exchange)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_wait_retries_a_failed_poll_after_the_backoff_step_then_returns_the_decision() -> None:
    # Stepped by hand: the core does no I/O, it says what to send and when to back off.
    steps = wait_steps(ScriptedClient([]), "r1", timeout=30)
    first = next(steps)
    assert isinstance(first, Invoke)
    assert first.args[0].path == "/v1/requests/r1?wait=30"
    second = steps.throw(Unavailable("boom"))  # what a shell does with a failed exchange
    assert second == Sleep(RETRY_DELAYS[0])
    third = steps.send(None)
    assert isinstance(third, Invoke)
    with pytest.raises(StopIteration) as done:
        steps.send({**PENDING, "status": "denied"})
    assert done.value.value.status == "denied"
    # The synchronous shell takes the same path over its transport.
    client = ScriptedClient([Unavailable("boom"), {**PENDING, "status": "approved"}])
    assert client.wait("r1", timeout=30).status == "approved"
    first_poll, second_poll = client.sent
    assert first_poll.path == "/v1/requests/r1?wait=30"
    assert second_poll.path.startswith(
        "/v1/requests/r1?wait=29."
    )  # what is left after the back-off


def failing_twice() -> Steps[list[str]]:
    seen: list[str] = []
    for _ in range(2):
        try:
            yield invoke(fail)
        except ValueError as exc:
            seen.append(str(exc))
    seen.append((yield invoke(lambda: "ok")))
    return seen


def fail() -> None:
    raise ValueError("no")


def test_both_shells_hand_a_step_failure_to_the_operation() -> None:
    assert drive(failing_twice()) == ["no", "no", "ok"]

    async def as_coroutine(fn: Callable[[], Any]) -> Any:
        return fn()

    def on_loop() -> Steps[list[str]]:
        seen: list[str] = []
        try:
            yield invoke(as_coroutine, fail)
        except ValueError as exc:
            seen.append(str(exc))
        seen.append((yield invoke(as_coroutine, lambda: "ok")))
        yield Sleep(0)
        return seen

    assert asyncio.run(adrive(on_loop())) == ["no", "ok"]


def test_one_method_table_serves_both_shells_with_the_same_signatures() -> None:
    for name in ("submit", "find", "get", "wait", "request", "cancel", "report", "jwks"):
        sync, async_ = getattr(Signoff, name), getattr(AsyncSignoff, name)
        assert inspect.signature(sync) == inspect.signature(async_), name
        assert inspect.iscoroutinefunction(async_) and not inspect.iscoroutinefunction(sync)
    assert inspect.iscoroutinefunction(AsyncApprovals.call)
    params = inspect.signature(Signoff("http://x.invalid", "t").submit).parameters
    assert list(params)[:2] == ["tool", "arguments"]
