"""``tmem mount``: the cleancache file system as a command."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid as _uuid
from typing import Any

import click

import tmem
from tmem.errors import TmemError
from tmem.units import parse_size


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except TmemError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _uuid_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return _uuid.UUID(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a UUID", ctx, param) from None


@click.command("mount")
@click.argument("source", type=click.Path(file_okay=False))
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option(
    "--cache-size",
    default="64M",
    show_default=True,
    callback=_size,
    help="Private page cache of the mount (bytes: 4096, 512K, 64M).",
)
@click.option(
    "--host", "address", help="Daemon address (unix:PATH or tcp://HOST:PORT) [default socket]."
)
@click.option("--name", help="Client name at the host [mount:SOURCE].")
@click.option("--token-file", type=click.Path(dir_okay=False), help="File holding the TCP token.")
@click.option(
    "--embedded",
    default=None,
    callback=_size,
    help="Use a host of this capacity inside the mount process instead of a daemon.",
)
@click.option("--no-tmem", is_flag=True, help="Private cache and source only (a baseline).")
@click.option("--read-only", is_flag=True, help="Refuse every change (EROFS).")
@click.option(
    "--kernel-cache",
    is_flag=True,
    help="Let the kernel cache file pages (MAP_SHARED mmap works; see docs/mount.md).",
)
@click.option("--shared-uuid", callback=_uuid_option, help="Join this authorized shared pool.")
@click.option("--page-size", default=4096, show_default=True, type=int, help="Pool page size.")
@click.option("--single-thread", is_flag=True, help="Serve one request at a time.")
@click.option("--debug", is_flag=True, help="libfuse's debug output.")
def mount_command(
    source: str,
    mountpoint: str,
    cache_size: int,
    address: str | None,
    name: str | None,
    token_file: str | None,
    embedded: int | None,
    no_tmem: bool,
    read_only: bool,
    kernel_cache: bool,
    shared_uuid: _uuid.UUID | None,
    page_size: int,
    single_thread: bool,
    debug: bool,
) -> None:
    """Mount SOURCE at MOUNTPOINT; every read goes through cleancache and the tmem host.

    Runs in the foreground until `fusermount3 -u MOUNTPOINT`, SIGTERM or SIGINT.
    """
    from tmem.frontends.mount import check_mount_point, mount

    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s tmem %(levelname)s %(message)s"
    )
    if sum((address is not None, embedded is not None, no_tmem)) > 1:
        raise click.UsageError("choose at most one of --host, --embedded and --no-tmem")
    try:
        check_mount_point(source, mountpoint)
    except TmemError as exc:
        raise click.ClickException(str(exc)) from None
    client: Any = None
    try:
        if embedded is not None:
            client = tmem.Host(embedded).connect(name or "mount")
        elif not no_tmem:
            token = None
            if token_file is not None:
                with open(token_file) as f:
                    token = f.read().strip()
            client = tmem.connect(
                address, name=name or "mount:" + os.path.realpath(source), token=token, timeout=10
            )
    except (TmemError, OSError) as exc:
        raise click.ClickException(f"--host: cannot reach the tmem host: {exc}") from None
    try:
        mount(
            source,
            mountpoint,
            client,
            cache_size=cache_size,
            page_size=page_size,
            read_only=read_only,
            kernel_cache=kernel_cache,
            shared_uuid=shared_uuid,
            threads=not single_thread,
            debug=debug,
        )
    except TmemError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if client is not None and hasattr(client, "close"):
            with contextlib.suppress(TmemError):
                client.close()
