"""``tmem list|set|freeze|thaw|capacity|auth|revoke|auths|reload``: operate a running daemon."""

from __future__ import annotations

import contextlib
import json
import uuid as _uuid
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console

import tmem
from tmem.control import snapshot
from tmem.control.connection import daemon_options, open_admin
from tmem.control.listing import render_auths, render_list
from tmem.control.migrate import migrate as move
from tmem.control.top import SORTS, run_top
from tmem.policy import policy_from_text
from tmem.remote import RemoteAdmin
from tmem.units import parse_size


@contextlib.contextmanager
def admin_session(options: dict[str, Any]) -> Iterator[RemoteAdmin]:
    """An admin connection for a command; tmem errors become a message and exit status 1."""
    admin = open_admin(options["socket"], options["tcp"], options["token"])
    try:
        yield admin
    except tmem.PermissionDenied as exc:
        raise click.ClickException(f"refused: {exc}") from None
    except tmem.TmemError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        with contextlib.suppress(tmem.TmemError):
            admin.close()


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for machines.")
@daemon_options
def list_(as_json: bool, **options: Any) -> None:
    """Clients, their pools and counters; host totals, capacity and ratios."""
    with admin_session(options) as admin:
        stats = admin.stats()
    if as_json:
        click.echo(json.dumps(stats, indent=2, sort_keys=True, default=str))
    else:
        render_list(Console(), stats)


@click.command("set")
@click.argument("client")
@click.argument("settings", nargs=-1, required=True, metavar="KEY=VALUE...")
@daemon_options
def set_(client: str, settings: tuple[str, ...], **options: Any) -> None:
    """Set CLIENT's weight=N, cap=SIZE|none, compress=lz4|zstd|none, frozen=yes|no.

    The host keeps these for the name across reconnects.
    """
    pairs = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="SETTINGS")
        pairs[key.strip()] = value.strip()
    try:
        values = policy_from_text(pairs)
    except tmem.InvalidArgument as exc:
        raise click.BadParameter(str(exc), param_hint="SETTINGS") from None
    with admin_session(options) as admin:
        admin.set_client(client, **values)
        connected = client in admin.stats()["clients"]
    shown = " ".join(f"{k}={v}" for k, v in values.items())
    click.echo(f"{client}: {shown}" + ("" if connected else " (applies when it connects)"))


def _frozen_command(name: str, frozen: bool, summary: str, done: str) -> click.Command:
    """``tmem freeze`` or ``tmem thaw``: set CLIENT's frozen state to ``frozen``."""

    @click.command(name, help=summary)
    @click.argument("client")
    @daemon_options
    def command(client: str, **options: Any) -> None:
        with admin_session(options) as admin:
            admin.set_client(client, frozen=frozen)
        click.echo(f"{client}: {done}")

    return command


freeze = _frozen_command(
    "freeze", True, "Refuse every put of CLIENT (gets and flushes go on) until thawed.", "frozen"
)
thaw = _frozen_command("thaw", False, "Let CLIENT's puts in again.", "thawed")


@click.command()
@click.argument("size")
@click.option("--force", is_flag=True, help="Allow more than the machine's memory.")
@daemon_options
def capacity(size: str, force: bool, **options: Any) -> None:
    """Change the bytes the host may spend on pages (4096, 512M, 2G)."""
    nbytes = check_capacity(size, force)
    with admin_session(options) as admin:
        admin.set_capacity(nbytes)
    click.echo(f"capacity: {nbytes} bytes")


def check_capacity(size: str, force: bool) -> int:
    """SIZE as bytes if it makes sense for this machine, else a usage error naming it."""
    try:
        nbytes = parse_size(size)
    except tmem.InvalidArgument as exc:
        raise click.BadParameter(str(exc), param_hint="SIZE") from None
    if nbytes <= 0:
        raise click.BadParameter("capacity must be more than 0", param_hint="SIZE")
    total = machine_memory()
    if nbytes > total and not force:
        raise click.BadParameter(
            f"{nbytes} bytes is more than this machine's memory ({total}); add --force",
            param_hint="SIZE",
        )
    return nbytes


def machine_memory() -> int:
    """Bytes of physical memory of this machine."""
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _uuid_arg(text: str) -> _uuid.UUID:
    try:
        return _uuid.UUID(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a UUID", param_hint="UUID") from None


@click.command()
@click.argument("client")
@click.argument("uuid")
@daemon_options
def auth(client: str, uuid: str, **options: Any) -> None:
    """Allow CLIENT to create or join the shared pool UUID."""
    pool = _uuid_arg(uuid)
    with admin_session(options) as admin:
        admin.authorize_shared(client, pool)
    click.echo(f"{client}: may use shared pool {pool}")


@click.command()
@click.argument("client")
@click.argument("uuid")
@daemon_options
def revoke(client: str, uuid: str, **options: Any) -> None:
    """Withdraw CLIENT's right to the shared pool UUID (it leaves the pool now)."""
    pool = _uuid_arg(uuid)
    with admin_session(options) as admin:
        admin.revoke_shared(client, pool)
    click.echo(f"{client}: no longer in shared pool {pool}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for machines.")
@daemon_options
def auths(as_json: bool, **options: Any) -> None:
    """List the shared-pool grants: which client names may use which uuid."""
    with admin_session(options) as admin:
        grants = admin.stats().get("grants", {})
    if as_json:
        click.echo(json.dumps(grants, indent=2, sort_keys=True))
    else:
        render_auths(Console(), grants)


@click.command()
@daemon_options
def reload(**options: Any) -> None:
    """Make the daemon read its configuration file again (as SIGHUP does)."""
    with admin_session(options) as admin:
        done = admin.reload()
    click.echo(f"reloaded: policies for {', '.join(done['clients']) or 'no client'}; "
               f"capacity {done['capacity']}")  # fmt: skip
    if done["restart_needed"]:
        click.echo(f"needs a restart to change: {', '.join(done['restart_needed'])}")


@click.command()
@click.argument("client")
@click.argument("file", type=click.Path(dir_okay=False))
@daemon_options
def save(client: str, file: str, **options: Any) -> None:
    """Write CLIENT's persistent pools (every page, as stored) to FILE."""
    with admin_session(options) as admin:
        report = snapshot.save(admin, client, file)
    click.echo(report.describe("saved"))


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--as", "as_name", help="Restore under this client name instead.")
@daemon_options
def restore(file: str, as_name: str | None, **options: Any) -> None:
    """Bring the client saved in FILE into the daemon; it finds its pages when it connects."""
    with admin_session(options) as admin:
        report = snapshot.restore(admin, file, as_name)
    click.echo(report.describe("restored"))


@click.command()
@click.argument("client")
@click.option("--to", "to", required=True, help="The new daemon: unix:PATH or tcp://HOST:PORT.")
@click.option("--to-token", envvar="TMEM_TO_TOKEN", help="Admin token of the new daemon.")
@daemon_options
def migrate(client: str, to: str, to_token: str | None, **options: Any) -> None:
    """Move CLIENT's persistent pages to another daemon while it runs; it follows them."""
    with admin_session(options) as source:
        target = _admin_at(to, to_token)
        try:
            report = move(source, target, client, to)
        finally:
            target.close()
    click.echo(report.describe())


def _admin_at(address: str, token: str | None) -> RemoteAdmin:
    try:
        return tmem.admin(address, token=token, timeout=30)
    except tmem.TmemError as exc:
        raise click.ClickException(f"--to {address}: {exc}") from None


@click.command()
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="Seconds between refreshes.")  # fmt: skip
@click.option("--sort", type=click.Choice(sorted(SORTS)), default="m", show_default=True,
              help="Sort by m(emory) s(hare) h(it ratio) p(uts/s) g(ets/s) n(ame).")  # fmt: skip
@click.option("--iterations", type=int, help="Stop after this many refreshes.")
@daemon_options
def top(interval: float, sort: str, iterations: int | None, **options: Any) -> None:
    """A live view of the clients: memory, share, hit ratio, puts/s, gets/s; q quits."""
    if interval <= 0 or (iterations is not None and iterations < 1):
        raise click.BadParameter("must be positive", param_hint="--interval/--iterations")
    with admin_session(options) as admin:
        run_top(admin, Console(), interval, sort, iterations)


COMMANDS = [
    list_, set_, freeze, thaw, capacity, auth, revoke, auths, reload, save, restore, migrate, top,
]
