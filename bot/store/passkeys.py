"""Security keys (WebAuthn credentials) registered by console users, for rules with
``step_up: webauthn`` (SPEC §5). Shares the ``SqlStore``'s engine like ``bot.store.users``;
migration ``0007_webauthn`` creates the table.

Only public material is stored: the credential id, its COSE public key and signature counter.

Errors: database failures raise ``StoreError``; ``add_passkey`` raises ``Conflict`` for a
credential id already registered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, exc, insert, select, update
from sqlmodel import Field

from bot.accounts import Passkey
from bot.domain import utc
from bot.errors import Conflict
from bot.store.sql import SqlStore
from bot.store.tables import TIMESTAMP, Base, _table


class PasskeyRow(Base, table=True):
    __tablename__ = "webauthn_credentials"

    credential_id: str = Field(primary_key=True)  # base64url
    user_name: str = Field(
        foreign_key="console_users.name", nullable=False, ondelete="CASCADE", index=True
    )
    public_key: str = Field(nullable=False)  # base64url COSE key
    sign_count: int = Field(default=0, nullable=False)
    label: str = Field(default="", nullable=False)
    created_at: datetime = Field(sa_type=TIMESTAMP, nullable=False)


PASSKEYS = _table(PasskeyRow)


def _to_passkey(row: Any) -> Passkey:
    return Passkey(
        row.credential_id,
        row.user_name,
        row.public_key,
        int(row.sign_count),
        row.label,
        utc(row.created_at),
    )


class PasskeyStore:
    """Console users' security keys on a ``SqlStore``'s database."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def add_passkey(self, key: Passkey) -> None:
        """Raises ``Conflict`` when the credential id is already registered."""
        values = {
            "credential_id": key.credential_id,
            "user_name": key.user,
            "public_key": key.public_key,
            "sign_count": key.sign_count,
            "label": key.label,
            "created_at": utc(key.created_at),
        }

        def add(conn: Connection) -> None:
            try:
                conn.execute(insert(PASSKEYS), values)
            except exc.IntegrityError as error:
                raise Conflict("this security key is already registered") from error

        await self._store.write(add)

    async def passkeys_of(self, user: str) -> list[Passkey]:
        query = select(PASSKEYS).where(PASSKEYS.c.user_name == user)
        rows = await self._store.read(lambda conn: conn.execute(query).all())
        return [_to_passkey(row) for row in rows]

    async def passkey(self, credential_id: str) -> Passkey | None:
        query = select(PASSKEYS).where(PASSKEYS.c.credential_id == credential_id)
        row = await self._store.read(lambda conn: conn.execute(query).first())
        return None if row is None else _to_passkey(row)

    async def set_sign_count(self, credential_id: str, count: int) -> None:
        statement = (
            update(PASSKEYS)
            .where(PASSKEYS.c.credential_id == credential_id)
            .values(sign_count=count)
        )

        def change(conn: Connection) -> None:
            conn.execute(statement)

        await self._store.write(change)
