"""Console passwords and form tokens: the checks raise on a mismatch (never answer a bool a
caller could forget to read), for wrong, over-long and malformed input alike."""

from __future__ import annotations

import pytest

from adapters.console.passwords import (
    MAX_LENGTH,
    hash_password,
    verify_password,
    verify_password_async,
)
from adapters.console.sessions import check_token
from bot.errors import Forbidden, NotAuthorized

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(PASSWORD)


def test_the_right_password_passes_and_anything_else_raises(stored: str) -> None:
    verify_password(stored, PASSWORD)
    for wrong in ("correct horse batterY", "", PASSWORD + "x", "x" * (MAX_LENGTH + 1)):
        with pytest.raises(NotAuthorized):
            verify_password(stored, wrong)
    with pytest.raises(NotAuthorized):
        verify_password("not-an-argon2-hash", PASSWORD)


async def test_an_unknown_user_is_refused_even_with_the_dummy_hashs_password(
    stored: str,
) -> None:
    await verify_password_async(stored, PASSWORD)
    with pytest.raises(NotAuthorized):
        await verify_password_async(stored, "wrong password")
    with pytest.raises(NotAuthorized):
        await verify_password_async(None, "signoff-no-such-user-" + "x" * 16)


def test_form_tokens_match_only_when_equal_and_present() -> None:
    check_token("t0k3n", "t0k3n")
    for expected, given in (("t0k3n", "t0k3N"), ("t0k3n", None), ("t0k3n", ""), ("", "")):
        with pytest.raises(Forbidden):
            check_token(expected, given)
