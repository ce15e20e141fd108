"""The witness (``adapters.witness``) over real HTTP, and signoff's cosigner talking to it.

A witness cosigns a growing log (consistency proofs checked) and refuses, with the C2SP
tlog-witness status codes, a rolled-back log, a fork, a bad proof, an unknown origin and a
checkpoint not signed by the log's key. The cosigner stores the verified cosignatures beside
the log (served at ``/v1/log/checkpoint``); a witness that is down, slow or answers garbage
holds up nothing but its own cosignature.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from adapters.main import build
from adapters.runtime import Runtime
from adapters.witness.service import State, Witness, WitnessConfig, create_app
from bot.cosigning import Cosigner
from bot.cosigning import Witness as WitnessClient
from bot.domain import ToolCall
from bot.evidence.checkpoint import sign_checkpoint
from bot.evidence.cosignature import (
    ED25519_NOTE,
    parse_verifier_key,
    verifier_key,
    verify_cosignatures,
)
from bot.evidence.keys import KeyRing
from bot.service import Submission
from bot.settings import load_settings
from tests.support import write_home

ORIGIN = "signoff.local/log"


@dataclass
class Env:
    runtime: Runtime
    witness: Witness
    server: TestServer
    client: TestClient[web.Request, None]

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def grow(self, n: int) -> None:
        agent = await self.runtime.store.get_agent("agent")
        assert agent is not None
        for i in range(n):
            await self.runtime.gate.submit(agent, Submission(ToolCall("crm.read", {"i": i})))

    async def post(self, body: str) -> tuple[int, str, str]:
        resp = await self.client.post("/add-checkpoint", data=body.encode())
        return resp.status, await resp.text(), resp.content_type

    def client_for(self) -> WitnessClient:
        return WitnessClient(
            self.witness.config.name, self.url, parse_verifier_key(self.witness.vkey)
        )


@pytest_asyncio.fixture
async def env(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[Env]:
    rt = await build(load_settings(write_home(tmp_path)), adapters=False)
    await rt.gate.register_agent("agent")
    log_key = parse_verifier_key(rt.keys.note_verifier_key(ORIGIN), ED25519_NOTE)
    config = WitnessConfig(
        "witness.test/w1", "127.0.0.1", 0, tmp_path / "w.key", tmp_path / "state.json",
        {ORIGIN: (log_key,)},
    )  # fmt: skip
    witness = Witness(config, nacl.signing.SigningKey.generate(), State(config.state_file))
    server = TestServer(create_app(witness), host="127.0.0.1")
    client: TestClient[web.Request, None] = await aiohttp_client(server)
    try:
        yield Env(rt, witness, server, client)
    finally:
        await rt.gate.drain()
        await rt.store.close()


def submission(old: int, proof: list[bytes], note: str) -> str:
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return f"old {old}\n{lines}\n{note}"


async def test_witness_cosigns_a_growing_log_and_refuses_a_rolled_back_one(env: Env) -> None:
    store = env.runtime.store
    await env.grow(3)
    first = await env.runtime.checkpoints.current()
    status, text, _ = await env.post(submission(0, [], first.note))
    assert status == 200, text
    key = parse_verifier_key(env.witness.vkey)
    verify_cosignatures(first.note + text, [key])

    await env.grow(4)
    second = await env.runtime.checkpoints.current()
    proof = await store.consistency_proof(first.size, second.size)
    status, text, _ = await env.post(submission(first.size, proof, second.note))
    assert status == 200, text
    assert env.witness.state.read()[ORIGIN] == (second.size, second.root)

    # A rolled-back log (the first checkpoint again) cannot get a cosignature.
    status, text, kind = await env.post(submission(second.size, [], first.note))
    assert status == 400  # old size larger than the checkpoint's
    status, text, kind = await env.post(submission(first.size, proof[:0], first.note))
    assert (status, text, kind) == (409, f"{second.size}\n", "text/x.tlog.size")
    # A fork: same size, another root, signed by the log's own key.
    forged = sign_checkpoint(ORIGIN, second.size, os.urandom(32), env.runtime.keys)
    status, text, kind = await env.post(submission(second.size, [], forged))
    assert (status, kind) == (409, "text/x.tlog.size")
    # A larger fork: the proof from the cosigned size does not reproduce it.
    bigger = sign_checkpoint(ORIGIN, second.size + 2, os.urandom(32), env.runtime.keys)
    await env.grow(2)
    good_proof = await store.consistency_proof(second.size, second.size + 2)
    status, _, _ = await env.post(submission(second.size, good_proof, bigger))
    assert status == 422
    assert env.witness.state.read()[ORIGIN] == (second.size, second.root)  # unchanged


async def test_witness_refuses_unknown_origins_foreign_keys_and_garbage(env: Env) -> None:
    await env.grow(1)
    cp = await env.runtime.checkpoints.current()
    other = KeyRing.create(env.runtime.settings.path("other-keys"))
    assert (await env.post(submission(0, [], sign_checkpoint("other.log", 1, cp.root, other))))[
        0
    ] == 404
    assert (await env.post(submission(0, [], sign_checkpoint(ORIGIN, 1, cp.root, other))))[0] == 403
    for body in ("", "old x\n\n" + cp.note, "old 0\nnot-base64!\n\n" + cp.note, "hello"):
        assert (await env.post(body))[0] == 400, body
    assert (await env.post(submission(0, [b"\0" * 32], cp.note)))[0] == 422
    assert env.witness.state.read() == {}


async def test_cosigner_gathers_cosignatures_and_the_api_serves_them(
    env: Env, aiohttp_client: AiohttpClient
) -> None:
    cosigner = Cosigner(env.runtime.store, [env.client_for()], quorum=1, timeout=5)
    env.runtime.checkpoints.on_checkpoint.append(cosigner.notify)
    api = await aiohttp_client(env.runtime.app)
    await env.grow(2)
    first = await env.runtime.checkpoints.current()
    assert await cosigner.cosign(first) == 1
    await env.grow(3)
    second = await env.runtime.checkpoints.current()
    assert await cosigner.cosign(second) == 1  # with a consistency proof from size 2
    await cosigner.close()
    served = await (await api.get("/v1/log/checkpoint")).text()
    assert served.startswith(second.note)
    verify_cosignatures(served, [parse_verifier_key(env.witness.vkey)])
    assert env.witness.state.read()[ORIGIN][0] == second.size


async def test_cosigner_learns_the_witness_size_from_a_409(env: Env) -> None:
    await env.grow(2)
    first = await env.runtime.checkpoints.current()
    before = Cosigner(env.runtime.store, [env.client_for()], quorum=1)
    assert await before.cosign(first) == 1
    await before.close()
    await env.grow(2)
    second = await env.runtime.checkpoints.current()
    fresh = Cosigner(env.runtime.store, [env.client_for()], quorum=1)  # a restarted server
    assert await fresh.cosign(second) == 1
    await fresh.close()


async def bad_witness(aiohttp_server: Any, handler: Any) -> str:
    app = web.Application()
    app.router.add_post("/add-checkpoint", handler)
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


async def test_down_slow_and_garbage_witnesses_cost_only_their_cosignature(
    env: Env, aiohttp_server: Any, aiohttp_client: AiohttpClient
) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="")

    async def garbage(request: web.Request) -> web.Response:
        key = verifier_key("witness.test/garbage", bytes(32)).key_id
        blob = base64.b64encode(key + bytes(72)).decode()
        return web.Response(text=f"\u2014 witness.test/garbage {blob}\n")

    def client(name: str, url: str) -> WitnessClient:
        vkey = verifier_key(name, bytes(nacl.signing.SigningKey.generate().verify_key))
        if name == "witness.test/garbage":
            vkey = verifier_key(name, bytes(32))
        return WitnessClient(name, url, vkey)

    witnesses = [
        env.client_for(),
        client("witness.test/slow", await bad_witness(aiohttp_server, slow)),
        client("witness.test/garbage", await bad_witness(aiohttp_server, garbage)),
        client("witness.test/down", "http://127.0.0.1:9"),
    ]
    cosigner = Cosigner(env.runtime.store, witnesses, quorum=1, timeout=0.5, retry=60)
    env.runtime.checkpoints.on_checkpoint.append(cosigner.notify)
    task = asyncio.create_task(cosigner.run())
    api = await aiohttp_client(env.runtime.app)
    _, token = await env.runtime.gate.register_agent("http-agent")
    try:
        # Agents' requests and checkpoints go on while the slow witness holds its answer.
        for i in range(3):
            resp = await api.post(
                "/v1/requests",
                json={"tool": "crm.read", "arguments": {"i": i}},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert resp.status == 201
            assert (await api.get("/v1/log/checkpoint")).status == 200
        assert not release.is_set()
        for _ in range(200):
            if cosigner.witnessed_size >= 3:
                break
            await asyncio.sleep(0.05)
        assert cosigner.witnessed_size >= 3
        latest = await env.runtime.store.latest_checkpoint()
        assert latest is not None
        note = latest.note
        names = {line.split(" ")[1] for line in note.split("\n\n", 1)[1].splitlines()}
        assert names == {ORIGIN, "witness.test/w1"}
    finally:
        release.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_second_process_behind_the_witness_is_superseded_not_alarmed(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Workers sharing one store each cosign: one that offers an older checkpoint of the same
    log after another worker got a newer one cosigned gets nothing, and raises no alarm."""
    await env.grow(2)
    older = await env.runtime.checkpoints.current()
    await env.grow(2)
    newer = await env.runtime.checkpoints.current()
    ahead = Cosigner(env.runtime.store, [env.client_for()], quorum=1)
    assert await ahead.cosign(newer) == 1
    behind = Cosigner(env.runtime.store, [env.client_for()], quorum=1)
    assert await behind.cosign(older) == 0
    assert not [r for r in caplog.records if r.name == "bot.cosigning" and r.levelname == "WARNING"]
    for cosigner in (ahead, behind):
        await cosigner.close()
