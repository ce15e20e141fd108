"""``signoff witness``: a transparency-log witness any third party can run (SPEC §3, §7).

It speaks the C2SP tlog-witness protocol (``POST /add-checkpoint``), keeps its own Ed25519
key and, per log origin, the latest checkpoint it cosigned, and answers with C2SP
tlog-cosignature (``cosignature/v1``) signature lines. ``service`` owns the protocol and the
state; ``cli`` the ``witness init`` / ``witness serve`` commands. Imports ``bot.evidence``
only; nothing in ``bot`` imports it.
"""
