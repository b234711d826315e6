"""Which daemon a command talks to: ``--socket``, ``--tcp``, ``$TMEM_ADDRESS``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

import tmem
from tmem.remote import RemoteAdmin

ENV_ADDRESS = "TMEM_ADDRESS"
ENV_TOKEN = "TMEM_TOKEN"


def address_of(socket: str | None, tcp: str | None) -> str | None:
    """The daemon address for the options given (None: ``$TMEM_ADDRESS`` or the default)."""
    if socket and tcp:
        raise click.UsageError("give --socket or --tcp, not both")
    if socket:
        return "unix:" + socket
    if tcp:
        return "tcp://" + tcp.removeprefix("tcp://")
    return os.environ.get(ENV_ADDRESS) or None


def daemon_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--socket``, ``--tcp`` and ``--token`` to a command."""
    command = click.option(
        "--token", envvar=ENV_TOKEN, help="Admin token for --tcp [$TMEM_TOKEN]."
    )(command)
    command = click.option("--tcp", help="The daemon's HOST:PORT.")(command)
    command = click.option(
        "--socket", help="The daemon's Unix socket [$TMEM_ADDRESS, else the default socket]."
    )(command)
    return command


def open_admin(socket: str | None, tcp: str | None, token: str | None) -> RemoteAdmin:
    """An administrative connection, or a ClickException saying why not."""
    address = address_of(socket, tcp)
    try:
        return tmem.admin(address, token=token, timeout=30)
    except tmem.PermissionDenied as exc:
        raise click.ClickException(
            f"refused: {exc} (an administrative identity is needed)"
        ) from None
    except tmem.TmemError as exc:
        where = address or "the default socket"
        raise click.ClickException(f"cannot reach the daemon at {where}: {exc}") from None
