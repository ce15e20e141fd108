"""``signoff witness init DIR`` and ``signoff witness serve --config F`` (SPEC §3).

``init`` writes ``witness.yaml`` and a fresh Ed25519 key (``witness.key``, 0600), never
overwriting either, and prints the witness's verifier key (what a signoff operator puts in
``log.witnesses[].key``). The logs it witnesses come from ``--log-key`` (note verifier keys
``origin+hash+key``, as ``signoff witness log-key`` prints them) or, when a signoff
configuration is at hand, from that server's key ring and ``log.origin``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

import nacl.signing
from aiohttp import web

from adapters.witness.service import State, Witness, config_text, create_app, load_config, load_key
from bot.errors import ConfigError
from bot.evidence.cosignature import ED25519_NOTE, parse_verifier_key
from bot.settings import config_path, load_settings

log = logging.getLogger(__name__)


def _signoff_log_keys(args: argparse.Namespace) -> dict[str, list[str]]:
    """The note verifier keys of a local signoff server's key ring, by origin."""
    from adapters.main import load_keys

    path = config_path(getattr(args, "signoff_config", None))
    if not path.exists():
        return {}
    settings = load_settings(path)
    keys = load_keys(settings)
    origin = settings.log.origin
    return {origin: [keys.note_verifier_key(origin, kid) for kid, _ in keys.items()]}


def cmd_log_key(args: argparse.Namespace) -> int:
    """Print the note verifier keys of this signoff server's log (for a witness operator)."""
    found = _signoff_log_keys(argparse.Namespace(signoff_config=getattr(args, "config", None)))
    if not found:
        raise ConfigError("no signoff configuration found (give --config signoff.yaml)")
    for keys in found.values():
        for key in keys:
            print(key)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    home = Path(args.dir)
    home.mkdir(parents=True, exist_ok=True)
    logs: dict[str, list[str]] = {}
    for text in args.log_key or []:
        key = parse_verifier_key(text, ED25519_NOTE)
        logs.setdefault(key.name, []).append(key.text())
    if not logs:
        logs = _signoff_log_keys(argparse.Namespace(signoff_config=getattr(args, "config", None)))
    key_path = home / "witness.key"
    if not key_path.exists():
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(bytes(nacl.signing.SigningKey.generate()).hex() + "\n")
        print(f"wrote {key_path}")
    config = home / "witness.yaml"
    if not config.exists():
        config.write_text(config_text(args.name, args.port, logs), encoding="utf-8")
        print(f"wrote {config}")
    else:
        print(f"kept {config}")
    witness = Witness(load_config(config), load_key(key_path), State(home / "state.json"))
    print(f"witness key: {witness.vkey}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    path = Path(getattr(args, "config", None) or "witness.yaml")
    config = load_config(path)
    witness = Witness(config, load_key(config.key_file), State(config.state_file))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        runner = web.AppRunner(create_app(witness), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, config.host, config.port).start()
        log.info("witness %s listening on http://%s:%d", config.name, config.host, config.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
    return 0


def register(sub: Any, add: Any, common: argparse.ArgumentParser) -> None:
    witness = sub.add_parser("witness", help="run a log witness (C2SP tlog-witness)")
    wsub = witness.add_subparsers(dest="witness_command", required=True, metavar="ACTION")
    sp = add("init", cmd_init, "write witness.yaml and a fresh witness key into DIR", wsub)
    sp.add_argument("dir")
    sp.add_argument("--name", default="signoff.witness/w1", help="the witness's key name")
    sp.add_argument("--port", type=int, default=8090)
    sp.add_argument(
        "--log-key",
        action="append",
        help="a log's note verifier key (origin+hash+key); repeatable. Default: the keys of "
        "the signoff server named by --config",
    )
    add("serve", cmd_serve, "serve add-checkpoint (--config: the witness.yaml)", wsub)
    add("log-key", cmd_log_key, "print this signoff server's log verifier keys", wsub)


__all__ = ["register"]
