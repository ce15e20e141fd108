"""Hot reload: a broken policy never replaces a working one; a broken start refuses to start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import pytest

from bot.errors import PolicyError
from bot.policy.holder import PolicyHolder
from bot.policy.model import Policy

GOOD = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {{version: "{version}"}}
defaults: {{unknown_tool: block}}
rules:
  - {{name: r, tool: t, tier: auto}}
"""


def write(path: Path, text: str, tick: int) -> None:
    """Write and give the file a distinct mtime (no waiting for the clock)."""
    path.write_text(text)
    os.utime(path, ns=(tick * 1_000_000_000, tick * 1_000_000_000))


def test_start_refuses_a_broken_policy(tmp_path: Path) -> None:
    write(tmp_path / "p.yaml", "apiVersion: nope\nkind: ToolPolicy\n", 1)
    with pytest.raises(PolicyError) as caught:
        PolicyHolder([tmp_path])
    assert caught.value.details[0].startswith(f"{tmp_path / 'p.yaml'}:1: apiVersion")


def test_reload_keeps_the_old_policy_when_the_new_one_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "p.yaml"
    write(path, GOOD.format(version="1"), 1)
    seen: list[Policy] = []
    holder = PolicyHolder([tmp_path], on_change=seen.append)
    first = holder.current
    write(path, GOOD.format(version="1") + "  - {name: r, tool: u, tier: auto}\n", 2)
    with caplog.at_level(logging.WARNING, logger="bot.policy.holder"):
        assert holder.reload() is False
    assert holder.current is first
    assert holder.last_error is not None
    assert "duplicate rule name 'r'" in caplog.text and "keeping " + first.digest in caplog.text
    assert seen == []

    write(path, GOOD.format(version="2"), 3)
    assert holder.reload() is True
    assert holder.current.version == "2" and holder.current.digest != first.digest
    assert holder.last_error is None
    assert seen == [holder.current]
    assert holder.reload() is False  # same content, nothing new


def test_poll_notices_changed_added_and_removed_files(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    write(path, GOOD.format(version="1"), 1)
    holder = PolicyHolder([tmp_path])
    assert holder.poll() is False
    write(path, GOOD.format(version="2"), 2)
    assert holder.poll() is True and holder.current.version == "2"
    extra = tmp_path / "more.yml"
    write(extra, "apiVersion: signoff/v1\nkind: ToolPolicy\nmetadata: {version: x}\n", 3)
    assert holder.poll() is True and holder.current.version == "x+2"  # sorted: more.yml first
    extra.unlink()
    assert holder.poll() is True and holder.current.version == "2"
    (tmp_path / "notes.txt").write_text("not a policy")
    assert holder.poll() is False


async def test_watch_reloads_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    write(path, GOOD.format(version="1"), 1)
    changed = asyncio.Event()
    holder = PolicyHolder([path], on_change=lambda _policy: changed.set())
    task = asyncio.create_task(holder.watch(interval=0.01))
    try:
        write(path, GOOD.format(version="2"), 2)
        await asyncio.wait_for(changed.wait(), timeout=10)
        assert holder.current.version == "2"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
