"""``closed_while_idle``: the check a pooled PostgreSQL connection passes before it is used
(a socket pair stands in for the connection's)."""

from __future__ import annotations

import socket

from bot.store.engine import closed_while_idle


def test_a_quiet_socket_is_not_closed_and_one_the_peer_spoke_on_or_ended_is() -> None:
    ours, server = socket.socketpair()
    with ours, server:
        assert not closed_while_idle(ours.fileno())
        server.sendall(b"E")  # the FATAL error a restart sends first
        assert closed_while_idle(ours.fileno())
    ours, server = socket.socketpair()
    with ours:
        server.close()  # the socket's end alone (a backend that died)
        assert closed_while_idle(ours.fileno())
