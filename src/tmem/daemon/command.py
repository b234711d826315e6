"""``tmem serve``: run the daemon in the foreground until SIGTERM or SIGINT.

Both stop it cleanly (connections closed, state saved, the socket removed);
it then exits with status 0 after SIGTERM (a service manager's stop) and
:data:`INTERRUPTED` (130) after SIGINT (Ctrl-C), as shells expect.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
from typing import Any

import click

from tmem.daemon import config as _config
from tmem.errors import TmemError

#: The exit status of a command stopped by Ctrl-C (SIGINT): 128 + 2.
INTERRUPTED = 128 + signal.SIGINT


@click.command()
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file."
)
@click.option("--socket", help="Unix socket path [default: $XDG_RUNTIME_DIR/tmem.sock].")
@click.option(
    "--capacity", help="Bytes the host may spend on pages (4096, 512M, 2G), or auto [256M]."
)
@click.option("--capacity-floor", help="With --capacity auto: never below this [16M].")
@click.option("--capacity-ceiling", help="With --capacity auto: never above this [half the RAM].")
@click.option(
    "--autosize",
    multiple=True,
    metavar="KEY=VALUE",
    help="With --capacity auto: a tunable of the sizing law (docs/autosize.md); repeatable.",
)
@click.option(
    "--compress", type=click.Choice(["lz4", "zstd", "none"]), help="Default compression [lz4]."
)
@click.option("--dedup", help="Deduplication: none, client, host or auto [auto].")
@click.option("--tcp", help="Also listen on HOST:PORT (needs --token-file).")
@click.option("--token-file", type=click.Path(dir_okay=False), help="Tokens for TCP peers.")
@click.option("--socket-mode", help="Permissions of the Unix socket [0600].")
@click.option("--admin-uids", help="Comma-separated user ids allowed to administer [own uid].")
@click.option("--max-frame", help="Largest frame body accepted [4M+64K].")
@click.option("--max-connections", help="Connections open at once, all peers together [1024].")
@click.option("--max-connections-per-peer", help="Connections of one uid, token or address [64].")
@click.option(
    "--transfer-budget",
    help="Buffers for large frames and replies, all connections together [32M].",
)
@click.option("--hello-timeout", help="Seconds a new connection has for its hello [10].")
@click.option(
    "--grant-timeout",
    help="Seconds a connection may hold a grant others wait for, reading no reply [10].",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="Save persistent pages here on a clean stop; restore them at start [off].",
)
@click.option("--metrics", help="Serve Prometheus metrics at HOST:PORT [off].")
@click.option(
    "--idle-timeout",
    help="Seconds before an idle connection without persistent pages closes; 0: never [300].",
)
@click.option("--max-pools", help="Pools one client may hold at once [256].")
@click.option("--fetch-workers", help="Threads loading pages from tiers for gets [4].")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--tier",
    multiple=True,
    help="A store below RAM: ssd:PATH:SIZE or redis://HOST:PORT,... (repeatable).",
)
@click.option(
    "--host-policy",
    type=click.Choice(["utility", "share"]),
    help="Whose ephemeral page goes when the host is full [utility].",
)
@click.option(
    "--host-reserve",
    help="With host-policy utility: fraction of the capacity kept as floors [0.5].",
)
@click.option(
    "--host-order",
    type=click.Choice(["adaptive", "lru"]),
    help="Where a client's new ephemeral page goes on its list [adaptive].",
)
def serve(config_file: str | None, **options: Any) -> None:
    """Run a tmem host for other processes (Unix socket) and machines (TCP)."""
    from tmem.daemon.server import Server  # the loop is only needed when serving

    options["tier"] = options["tier"] or None  # none given: the file's, if any

    def loader() -> _config.Config:
        return _config.load(config_file, **options)

    try:
        config = loader()
    except TmemError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(
        stream=sys.stderr,
        level=config.log_level.upper(),
        format="%(asctime)s tmem %(levelname)s %(message)s",
    )
    try:
        server = Server(config, loader=loader)
    except (TmemError, OSError) as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
    stopped_by: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        stopped_by.append(signum)
        server.stop()

    # What start-up made (modules, the host's page tables) lives as long as the daemon:
    # full collections leave it alone, so they stay short however full the host gets.
    gc.freeze()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    signal.signal(signal.SIGHUP, lambda *_: server.request_reload())
    server.wake_on_signals()
    server.serve_forever()
    if signal.SIGINT in stopped_by[:1]:
        sys.exit(INTERRUPTED)
