"""``closed_while_idle``: the check a pooled PostgreSQL connection passes before it is used
(a socket pair stands in for the connection's); ``safe_text``: a store error's one line,
without the database password."""

from __future__ import annotations

import socket

from bot.store.engine import closed_while_idle, safe_text


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


def test_error_text_hides_the_password_as_typed_or_quoted_and_keeps_the_rest_readable() -> None:
    url = "postgresql://signoff:hunter2@db:5432/signoff"
    assert safe_text("cannot connect to\n postgresql://signoff:hunter2@db/x: refused", url) == (
        "cannot connect to postgresql://signoff:***@db/x: refused"
    )
    quoted = "postgresql://signoff:p%40ss%20w@db/signoff"  # the password is "p@ss w"
    assert safe_text("dsn user=signoff password=p@ss w and p%40ss%20w", quoted) == (
        "dsn user=signoff password=*** and ***"
    )
    # a one-letter password no longer blanks every "p" of the message, and still hides itself
    short = "postgresql://signoff:p@db/signoff"
    message = 'connection to server at "db", port 5432 failed: password p was refused'
    assert safe_text(message, short) == (
        'connection to server at "db", port 5432 failed: password *** was refused'
    )
    assert safe_text("no password here", "sqlite:///signoff.db") == "no password here"
