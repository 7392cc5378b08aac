"""`starter.py keys ...`: the internal API's keys (db/api_keys.py).

    python starter.py keys create --name lender-backend --scope loans:place --scope loans:read
    python starter.py keys list
    python starter.py keys rotate KEY_ID
    python starter.py keys revoke KEY_ID

`create` and `rotate` print the key once, on stdout, alone on its line (so a
script can capture it); nothing can show it again, since only its hash is
kept. `list` shows ids, names, scopes and dates, never a secret.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from db.api_keys import SCOPES, KeyInfo, NoSuchKey, UnknownScope, create_key, list_keys, revoke_key, rotate_key

keys_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="API keys for the internal API (Authorization: Bearer <key>); a key is printed once.",
)


def _sessions():
    from db.migrate import upgrade_to_head
    from db.session import make_engine, make_session_factory
    from runtime.settings import get_settings

    url = get_settings().database_url
    upgrade_to_head(url)
    return make_session_factory(make_engine(url))


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else "-"


def _describe(info: KeyInfo) -> str:
    return f"{info.key_id}\t{info.name}\t{' '.join(sorted(info.scopes))}"


@keys_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="who holds the key, e.g. lender-backend"),
    scope: Optional[list[str]] = typer.Option(
        None, "--scope", help="a scope; repeat for each: " + ", ".join(sorted(SCOPES))
    ),
) -> None:
    """Make a key with these scopes and print it (once)."""
    try:
        info, key = create_key(_sessions(), name, tuple(scope or ()))
    except (UnknownScope, ValueError) as error:
        _fail(f"--{error}", 2)
    typer.echo(f"created {_describe(info)}", err=True)
    typer.echo("the key is shown once; keep it in a secret store:", err=True)
    typer.echo(key)


@keys_app.command("list")
def list_() -> None:
    """The keys: id, name, scopes, created, last used, revoked (never a secret)."""
    rows = list_keys(_sessions())
    typer.echo("key_id\tname\tscopes\tcreated_at\tlast_used_at\trevoked_at")
    for info in rows:
        typer.echo(f"{_describe(info)}\t{_when(info.created_at)}\t{_when(info.last_used_at)}\t{_when(info.revoked_at)}")


@keys_app.command("rotate")
def rotate(key_id: str) -> None:
    """A new key with the same name and scopes; the old one is revoked at once."""
    try:
        info, key = rotate_key(_sessions(), key_id)
    except NoSuchKey:
        _fail(f"KEY_ID: no live key {key_id}", 1)
    typer.echo(f"rotated {key_id} (now revoked) -> {_describe(info)}", err=True)
    typer.echo("the key is shown once; keep it in a secret store:", err=True)
    typer.echo(key)


@keys_app.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key: every request with it is refused from now on."""
    try:
        info = revoke_key(_sessions(), key_id)
    except NoSuchKey:
        _fail(f"KEY_ID: no key {key_id}", 1)
    typer.echo(f"revoked {info.key_id}\t{info.name}\t{_when(info.revoked_at)}")


if __name__ == "__main__":  # python -m gateway.keys_cli
    sys.exit(keys_app())
