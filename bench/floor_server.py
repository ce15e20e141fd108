"""A lower bound for ``workers_cpu.py``: the work the evidence contract (SPEC §7) makes every
auto-tier request do, written straight through in one handler, with nothing of signoff's
own design around it: no policy, no store layer, no metrics, no idempotency, no rate
limits, no Merkle interior nodes, no checks beyond the two fields it reads.

Per request: parse the JSON body; the two digests (SHA-256 of the canonical arguments and
of the canonical call); a grant (a JWT signed with Ed25519); an attestation (an in-toto
statement of the size signoff's is, its DSSE pre-authentication encoding signed with
Ed25519, the envelope's canonical bytes and its RFC 6962 leaf hash); the request row and
the log entry written to SQLite (WAL, ``synchronous=NORMAL``, one transaction per turn of
the event loop, as signoff commits); the JSON answer. The cyclic collector is set as
signoff sets it.

``python bench/floor_server.py PORT DATABASE``; stops on SIGTERM. Not signoff: a
reference point that shows how much of signoff's CPU per request the contract itself
costs in Python on this machine.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import sqlite3
import sys
import time
import uuid
from datetime import UTC, datetime

import nacl.signing
import orjson
from aiohttp import web

KEY = nacl.signing.SigningKey.generate()
KID = "ed25519-floor"
PAYLOAD_TYPE = b"application/vnd.in-toto+json"
SORTED = orjson.OPT_SORT_KEYS
POLICY = "sha256:" + "0" * 64
SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, agent_id TEXT, tool TEXT,
  arguments TEXT, status TEXT, created_at TEXT, arguments_sha256 TEXT, call_sha256 TEXT,
  grant_token TEXT, log_index INTEGER);
CREATE TABLE IF NOT EXISTS log_entries (idx INTEGER PRIMARY KEY, request_id TEXT,
  envelope BLOB, leaf_hash BLOB);
"""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Floor:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.size = self.db.execute("SELECT count(*) FROM log_entries").fetchone()[0]
        self.rows: list[tuple[object, ...]] = []
        self.entries: list[tuple[object, ...]] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.scheduled = False

    def commit(self) -> None:
        self.scheduled = False
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?)", self.rows)
        self.db.executemany("INSERT INTO log_entries VALUES (?,?,?,?)", self.entries)
        self.db.execute("COMMIT")
        self.rows, self.entries = [], []
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.set_result(None)

    async def answer(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        tool, arguments = body["tool"], body["arguments"]
        agent = "demo-agent"
        now = time.time()
        created = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
        request_id = str(uuid.uuid4())
        args_sha = hashlib.sha256(orjson.dumps(arguments, option=SORTED)).hexdigest()
        call = {"request_id": request_id, "agent": agent, "tool": tool, "arguments": arguments}
        call_sha = hashlib.sha256(orjson.dumps(call, option=SORTED)).hexdigest()
        header = {"alg": "EdDSA", "typ": "JWT", "kid": KID}
        claims = {
            "iss": "http://127.0.0.1",
            "sub": agent,
            "jti": request_id,
            "iat": int(now),
            "exp": int(now) + 300,
            "tool": tool,
            "args_sha256": args_sha,
            "call_sha256": call_sha,
            "policy": POLICY,
        }
        signing_input = (
            f"{b64url(orjson.dumps(header, option=SORTED))}."
            f"{b64url(orjson.dumps(claims, option=SORTED))}"
        )
        grant = f"{signing_input}.{b64url(KEY.sign(signing_input.encode()).signature)}"
        statement = {  # signoff's statement of an auto-tier decision, key for key
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": f"signoff-request:{request_id}", "digest": {"sha256": call_sha}}],
            "predicateType": "https://signoff.dev/attestation/decision/v1",
            "predicate": {
                "agent": {"artifact_digest": None, "claimed_artifact_digest": None, "id": agent},
                "approvals": {"required": 0, "votes": []},
                "approver": None,
                "context_sha256": None,
                "decision": "auto_allowed",
                "detail": None,
                "edit": None,
                "final": True,
                "justification": body.get("justification", ""),
                "policy": {"digest": POLICY, "rule": "reads", "signer": None, "version": "1"},
                "previous_log_index": None,
                "reason": None,
                "request": {
                    "arguments_sha256": args_sha,
                    "call_sha256": call_sha,
                    "created_at": created,
                    "deadline": None,
                    "id": request_id,
                    "tier": "auto",
                    "tool": tool,
                },
                "stage": "decision",
                "status": "approved",
                "timestamps": {"at": created, "decided_at": created},
            },
        }
        payload = orjson.dumps(statement, option=SORTED)
        pae = b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE, len(payload), payload)
        signature = KEY.sign(pae).signature
        envelope = orjson.dumps(
            {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": PAYLOAD_TYPE.decode(),
                "signatures": [{"keyid": KID, "sig": base64.b64encode(signature).decode()}],
            },
            option=SORTED,
        )
        leaf = hashlib.sha256(b"\x00" + envelope).digest()
        index = self.size
        self.size += 1
        args_json = orjson.dumps(arguments).decode()
        self.rows.append(
            (
                request_id,
                agent,
                tool,
                args_json,
                "approved",
                created,
                args_sha,
                call_sha,
                grant,
                index,
            )
        )
        self.entries.append((index, request_id, envelope, leaf))
        done = asyncio.get_running_loop().create_future()
        self.waiters.append(done)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.commit)
        await done
        reply = {
            "id": request_id,
            "status": "approved",
            "tier": "auto",
            "tool": tool,
            "arguments_sha256": args_sha,
            "call_sha256": call_sha,
            "agent": {"id": agent, "artifact_digest": None},
            "created_at": created,
            "decided_at": created,
            "grant": grant,
        }
        return web.Response(body=orjson.dumps(reply), status=201, content_type="application/json")


async def ready(_: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


def main() -> None:
    floor = Floor(sys.argv[2])
    app = web.Application()
    app.router.add_post("/v1/requests", floor.answer)
    app.router.add_get("/readyz", ready)
    # the collector tuned as ``signoff serve`` tunes it (adapters/serving.py settle_heap)
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
