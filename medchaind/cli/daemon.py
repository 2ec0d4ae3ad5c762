"""``medchaind``: the daemon and its operator commands.

Config precedence: flags > environment (``MEDCHAIND_<SECTION>_<KEY>``) > config.toml.
The datadir comes from ``--datadir``, else the default layout (:mod:`medchaind.clikit`):
``$MEDCHAIND_HOME``, else systemd's ``$STATE_DIRECTORY``, else ``~/.medchaind``.

Exit status: 0 success (``run``: stopped by SIGTERM after a clean shutdown); 1 an error
(``medchaind: error: ...`` on stderr); 2 a wrong option or argument; 130 stopped by
SIGINT (Ctrl-C); 128 + N when a second signal N cut a shutdown short.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import click
import trio

from .. import __version__
from ..clikit import (
    DEFAULT_DATADIR_TEXT,
    SYSTEM_IPC,
    datadir_socket,
    default_datadir,
    find_client_socket,
    version_text,
)
from ..errors import MedchainError
from ..logs import setup_logging
from ..node.config import load_config
from ..node.init import init_datadir
from ..types.tx import MAX_TX_BYTES
from .benchpresets import PRESET_HELP, PRESETS

DATADIR = click.option(
    "--datadir", type=click.Path(file_okay=False, path_type=Path), envvar="MEDCHAIND_HOME",
    default=lambda: str(default_datadir()), show_default=DEFAULT_DATADIR_TEXT,
    help="Node home directory (env MEDCHAIND_HOME).",
)

#: a TCP port (the first of a range: the commands check that the whole range fits)
PORT = click.IntRange(1, 65535)

#: ``run``'s exit status when SIGINT (Ctrl-C) stopped it, as shells report an interrupted command
EXIT_SIGINT = 128 + signal.SIGINT


def _fail(exc: BaseException) -> NoReturn:
    click.echo(f"medchaind: error: {exc}", err=True)
    sys.exit(1)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _user_error(exc: BaseException) -> BaseException | None:
    """The MedchainError/OSError to show if ``exc`` (maybe a trio ExceptionGroup) is only those."""
    leaves = _leaves(exc)
    if leaves and all(isinstance(e, (MedchainError, OSError)) for e in leaves):
        return leaves[0]
    return None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medchaind", message=version_text())
def main() -> None:
    """medchaind: permissioned proof-of-authority blockchain daemon for healthcare data."""


@main.command()
@DATADIR
@click.option("--chain-id", default="medchain-dev", show_default=True)
@click.option("--moniker", default="node0", show_default=True, help="Human-readable node name.")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Use this genesis.json instead of creating a single-authority one.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Encrypt the node key with the passphrase in this file (default: generate one).")
@click.option("--force", is_flag=True, help="Overwrite keys and config of an initialised datadir without a chain.")
def init(datadir: Path, chain_id: str, moniker: str, genesis_file: Path | None,
         passphrase_file: Path | None, force: bool) -> None:
    """Create a datadir: node key, genesis.json, config.toml."""
    from ..files import load_genesis

    try:
        genesis = load_genesis(genesis_file) if genesis_file else None
        passphrase = passphrase_file.read_text().rstrip("\n") if passphrase_file else None
        cfg, genesis, keys = init_datadir(datadir, chain_id=chain_id, moniker=moniker, genesis=genesis,
                                          passphrase=passphrase, passphrase_file=passphrase_file, force=force)
    except (MedchainError, OSError) as exc:
        _fail(exc)
    click.echo(json.dumps({
        "datadir": str(cfg.datadir), "chain_id": genesis.chain_id, "public_key": "0x" + keys.public_key.hex(),
        "is_authority": keys.public_key in genesis.powers(), "ipc": str(cfg.ipc_path),
    }, indent=2))


def _overrides(**kw: Any) -> dict[str, Any]:
    return {k.replace("__", "."): v for k, v in kw.items() if v is not None}


def _run(datadir: Path, overrides: dict[str, Any], announce_console: Any = None) -> None:
    """Run the node; exits 130 if SIGINT stopped it, returns (status 0) after SIGTERM.

    ``announce_console(url)``: called with the console's URL (and token) once it listens."""
    from ..node.node import Node, run_until_signal

    def reload() -> Any:
        return load_config(datadir, overrides=overrides, require_file=True)

    try:
        cfg = reload()
        setup_logging(cfg.log.level, cfg.log.format)
        node = Node.from_config(cfg)
        if cfg.console.listen:  # imported only when on: the web stack is not loaded otherwise
            from ..console.server import attach_console

            attach_console(node, announce_console)
        stopped_by = trio.run(run_until_signal, node, reload)
    except KeyboardInterrupt:  # Ctrl-C before the node's signal handling started
        sys.exit(EXIT_SIGINT)
    except BaseException as exc:
        shown = _user_error(exc)
        if shown is None:
            raise
        _fail(shown)
    if stopped_by == signal.SIGINT:
        sys.exit(EXIT_SIGINT)


RUN_OPTIONS = [
    click.option("--ipc-path", "ipc__path", help="IPC socket path (default <datadir>/medchaind.ipc)."),
    click.option("--ipc-group", "ipc__group", help="Make the socket 0660 for this group."),
    click.option("--log-level", "log__level", type=click.Choice(["debug", "info", "warning", "error"])),
    click.option("--log-format", "log__format", type=click.Choice(["text", "json"])),
    click.option("--create-empty-blocks/--no-create-empty-blocks", "consensus__create_empty_blocks", default=None),
    click.option("--metrics-listen", "metrics__listen",
                 help="Serve Prometheus metrics on host:port (e.g. 127.0.0.1:9464)."),
    click.option("--console-listen", "console__listen",
                 help="Serve the read-only web console on host:port (e.g. 127.0.0.1:9470; 0 = any free port)."),
    click.option("--snapshot-sync/--no-snapshot-sync", "sync__snapshot_sync", default=None,
                 help="With an empty chain, start from a verified state snapshot of the peers "
                      "(falls back to block sync from genesis when none is usable)."),
]


def _run_options(fn: Any) -> Any:
    for opt in reversed(RUN_OPTIONS):
        fn = opt(fn)
    return fn


@main.command()
@DATADIR
@_run_options
def run(datadir: Path, **kw: Any) -> None:
    """Run the node until SIGINT/SIGTERM (SIGHUP reloads the run-time settings).

    Exit status: 0 after SIGTERM and a clean shutdown, 130 after SIGINT (Ctrl-C), 1 on
    an error (a bad config, a locked datadir, a port in use, ...).
    """
    _run(datadir.absolute(), _overrides(**kw))


@main.command()
@click.option("--validators", "-n", "n_validators", type=click.IntRange(1, 64), required=True,
              help="Number of authorities.")
@click.option("--observers", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Non-voting nodes that follow the chain.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for node0..nodeN-1 (must be empty or absent).")
@click.option("--chain-id", default="medchain-testnet", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="IPv4 or IPv6 address the nodes listen on and dial.")
@click.option("--base-port", type=PORT, default=26656, show_default=True, help="node i listens on base-port + i.")
@click.option("--create-empty-blocks", is_flag=True)
def testnet(n_validators: int, observers: int, output: Path, chain_id: str, host: str, base_port: int,
            create_empty_blocks: bool) -> None:
    """Write N ready datadirs sharing one genesis (like `cometbft testnet`)."""
    from ..node.init import init_testnet

    try:
        nodes = init_testnet(output, n_validators, chain_id=chain_id, host=host, base_port=base_port,
                             observers=observers, create_empty_blocks=create_empty_blocks)
    except (MedchainError, OSError) as exc:
        _fail(exc)
    click.echo(json.dumps([
        {"datadir": str(cfg.datadir), "public_key": "0x" + k.public_key.hex(), "listen": cfg.p2p.listen,
         "authority": i < n_validators}
        for i, (cfg, k) in enumerate(nodes)
    ], indent=2))


@main.command()
@click.option("--datadir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the dev chain here (default: a temporary directory removed on exit).")
@click.option("--validators", "-n", "n_validators", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With N > 1, run a local N-authority network, one process per node.")
@click.option("--base-port", type=PORT, default=26656, show_default=True, help="With --validators > 1: first P2P port.")
@click.option("--console/--no-console", "console", default=True, show_default=True,
              help="Serve the web console (on 127.0.0.1, a free port, unless --console-listen or "
                   "MEDCHAIND_CONSOLE_LISTEN says otherwise; empty = off) and print its URL.")
@_run_options
def dev(datadir: Path | None, n_validators: int, base_port: int, console: bool, **kw: Any) -> None:
    """A throwaway chain, ready in one command (one authority, or N with --validators)."""
    if not console:
        kw["console__listen"] = ""
    if n_validators > 1:
        from .devnet import run_devnet

        try:
            status = run_devnet(n_validators, datadir, base_port, _overrides(**kw))
        except (MedchainError, OSError) as exc:
            _fail(exc)
        sys.exit(status)
    tmp = None
    if datadir is None:
        tmp = Path(tempfile.mkdtemp(prefix="medchain-dev-"))
        datadir = tmp
    datadir = datadir.absolute()
    try:
        if not (datadir / "config.toml").exists():
            init_datadir(datadir, chain_id="medchain-dev", moniker="dev")
        cfg = load_config(datadir, overrides=_overrides(**kw))
        if console and not cfg.console.listen and "MEDCHAIND_CONSOLE_LISTEN" not in os.environ:
            kw["console__listen"] = "127.0.0.1:0"  # on in dev: a free port, printed once it listens
        click.echo(dev_banner(cfg, temporary=tmp is not None), err=True)

        def announce(url: str) -> None:
            click.echo(f"web console: {url}", err=True)

        _run(datadir, _overrides(**kw), announce)
    except MedchainError as exc:
        _fail(exc)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def dev_banner(cfg: Any, *, temporary: bool) -> str:
    """What ``dev`` prints: absolute paths, and commands that work as shown."""
    ipc = cfg.ipc_path.absolute()
    # no export needed when `medchain` finds this socket by itself (the default datadir)
    found = find_client_socket({k: v for k, v in os.environ.items() if k != "MEDCHAIN_IPC"})
    export = "" if found is not None and found.absolute() == ipc else f"  export MEDCHAIN_IPC={ipc}\n"
    return (
        f"medchaind dev chain\n"
        f"  datadir : {cfg.datadir.absolute()}{' (temporary: removed on exit)' if temporary else ''}\n"
        f"  ipc     : {ipc}\n"
        f"  authority key: {cfg.resolve(cfg.key.path).absolute()} "
        f"(passphrase in {cfg.resolve(cfg.key.passphrase_file).absolute()})\n"
        f"try, in another terminal:\n"
        f"{export}"
        f"  medchain head\n"
        f"  medchain rpc node_info\n"
    )


SOCKET_OPTIONS = [
    click.option("--datadir", type=click.Path(file_okay=False, path_type=Path), envvar="MEDCHAIND_HOME",
                 help="The node's datadir, to find its socket (env MEDCHAIND_HOME)."),
    click.option("--ipc", "ipc_path", type=click.Path(path_type=Path), envvar="MEDCHAIN_IPC",
                 help="IPC socket path (env MEDCHAIN_IPC). Default: the socket of --datadir, else "
                      f"of the default datadir, else {SYSTEM_IPC}."),
]


def _socket_options(fn: Any) -> Any:
    for opt in reversed(SOCKET_OPTIONS):
        fn = opt(fn)
    return fn


def _socket_of(datadir: Path | None, ipc_path: Path | None) -> Path:
    """The node socket of ``status`` and ``backup``: an explicit ``--ipc`` or ``--datadir``
    first, then ``MEDCHAIN_IPC`` and ``MEDCHAIND_HOME``, then the default layout (the
    default datadir's socket, else the systemd unit's), as ``medchain`` finds it."""
    ctx = click.get_current_context()
    explicit = click.core.ParameterSource.COMMANDLINE

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) == explicit

    if ipc_path is not None and (given("ipc_path") or not given("datadir")):
        return ipc_path
    if datadir is not None:
        return datadir_socket(datadir)
    found = find_client_socket()
    return found if found is not None else datadir_socket(default_datadir())


@main.command()
@_socket_options
@click.option("--wait-sync", is_flag=True,
              help="First wait (with progress on stderr) until the node answers, has peers when it needs them, "
                   "and has caught up with the heights its peers report.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, min_open=True), default=3600.0, show_default=True,
              help="With --wait-sync: give up (exit 1) after this many seconds.")
def status(datadir: Path | None, ipc_path: Path | None, wait_sync: bool, timeout_s: float) -> None:
    """Print node_info from a running node; exit 1 if it does not answer (a health check)."""
    from ..ipc import Client

    ipc_path = _socket_of(datadir, ipc_path)
    if wait_sync:
        from .progress import wait_synced

        try:
            wait_synced(ipc_path, timeout_s)
        except (OSError, MedchainError) as exc:
            _fail(exc)
    try:
        with Client(ipc_path, timeout=5) as c:
            info = c.call("node_info")
    except (OSError, MedchainError) as exc:
        _fail(MedchainError(f"node at {ipc_path} is not answering: {exc}"))
    click.echo(json.dumps(info, indent=2))


@main.command()
@_socket_options
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="New (or empty) directory to write the backup to; absolute or relative to here.")
def backup(datadir: Path | None, ipc_path: Path | None, out: Path) -> None:
    """Back up a running node without stopping it (a consistent copy of its database).

    The result is a datadir: restore it with `medchaind run --datadir OUT` and the node's
    passphrase, after the original node has stopped for good. Prints the manifest.
    """
    from ..ipc import Client

    sock = _socket_of(datadir, ipc_path)
    try:
        with Client(sock, timeout=3600) as c:
            manifest = c.call("admin_backup", {"path": str(out.resolve())})
    except (OSError, MedchainError) as exc:
        _fail(exc)
    click.echo(json.dumps(manifest, indent=2))


@main.command()
@DATADIR
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (must not exist).")
@click.option("--from", "first", type=click.IntRange(1), default=1, show_default=True, help="First height.")
@click.option("--to", "last", type=click.IntRange(1), help="Last height (default: the head).")
def export(datadir: Path, out: Path, first: int, last: int | None) -> None:
    """Write the chain's blocks and commits to a portable file (the node must be stopped;
    or export from a `medchaind backup` copy while it runs)."""
    from ..node.chainfile import export_chain

    try:
        result = export_chain(datadir, out, first=first, last=last)
    except (MedchainError, OSError) as exc:
        _fail(exc)
    click.echo(json.dumps(result, indent=2))


@main.command("import")
@DATADIR
@click.argument("src", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def import_cmd(datadir: Path, src: Path) -> None:
    """Verify and commit the blocks of an export that follow this (stopped) node's head.

    Every block is checked as block sync checks it: 2/3+ of the authority set of its
    height signed it, and it re-executes to the hashes in its header. Initialise the
    datadir first with the chain's genesis (`medchaind init --genesis genesis.json`).
    """
    from ..node.chainfile import import_chain

    def progress(h: int) -> None:
        if h % 1000 == 0:
            click.echo(f"imported height={h}", err=True)

    try:
        result = import_chain(datadir, src, progress=progress)
    except (MedchainError, OSError) as exc:
        _fail(exc)
    click.echo(json.dumps(result, indent=2))


class _Sizes(click.ParamType):  # type: ignore[type-arg]
    """``4`` or ``4,7,10``: authority counts of a bench run or sweep (each 1..32)."""

    name = "N[,N...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            sizes = tuple(int(x) for x in str(value).split(",") if x.strip())
        except ValueError:
            self.fail(f"{value!r}: give a number of authorities or a comma-separated list (e.g. 4,7)", param, ctx)
        if not sizes or not all(1 <= n <= 32 for n in sizes):
            self.fail(f"{value!r}: each number of authorities must be 1..32", param, ctx)
        return sizes


def _presets_epilog() -> str:
    return "\b\nPresets (--preset NAME; options given explicitly win):\n" + "\n".join(
        f"  {name:15s} {text}" for name, text in PRESET_HELP.items())


@main.command(epilog=_presets_epilog())
@click.option("--validators", "-n", type=_Sizes(), default="4", show_default=True,
              help="Authorities, one process each; a list (4,7) runs one bench per size and prints a row each.")
@click.option("--preset", type=click.Choice(list(PRESETS)), help="A named run (listed below).")
@click.option("--soak", is_flag=True, help="Soak mode: commit --txs in segments of --sample-every and sample each "
              "node's RSS, database size and query latency after each segment (CSV + table).")
@click.option("--sample-every", type=click.IntRange(1), default=100_000, show_default=True,
              help="Soak: committed txs between samples.")
@click.option("--soak-records", type=click.IntRange(0, 100_000), default=1000, show_default=True,
              help="Soak: records of the patient whose records_list is timed.")
@click.option("--soak-reads", type=click.IntRange(0, 1000), default=20, show_default=True,
              help="Soak: audited reads (audit_log entries) of that patient.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the rows here: soak samples (default ./bench-soak.csv), sweep or run summaries.")
@click.option("--txs", type=click.IntRange(1, 10_000_000), default=20_000, show_default=True,
              help="Transactions to submit.")
@click.option("--tx-size", type=click.IntRange(1, MAX_TX_BYTES), default=1024, show_default=True,
              help="Approximate encoded tx size in bytes (anchor txs).")
@click.option("--tx-type", type=click.Choice(["anchor", "identity", "records", "supply", "claims"]),
              default="anchor", show_default=True,
              help="records: records.add of an encrypted FHIR Observation, ciphertext as blob "
              "sidecar; supply: supply.capture of an EPCIS commissioning event; claims: claims.submit of a "
              "generated de-identified claim, its encrypted document as blob sidecar.")
@click.option("--connections", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Client connections submitting in parallel.")
@click.option("--base-port", type=PORT, default=27656, show_default=True, help="First P2P port of the bench network.")
@click.option("--datadir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the bench network, kept afterwards with each node's node.log (default: temporary).")
@click.option("--rate", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Offered load in tx/s across all connections (0 = as fast as possible).")
@click.option("--node-log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True)
@click.option("--submit", type=click.Choice(["cbor", "json"]), default="cbor", show_default=True,
              help="cbor: each batch of 200 txs as one tx_submitBatch call (base64 CBOR); json: a JSON-RPC batch "
              "of tx_submit calls with hex params (the per-tx path, for comparison).")
def bench(validators: tuple[int, ...], txs: int, tx_size: int, tx_type: str, connections: int, base_port: int,
          datadir: Path | None, node_log_level: str, rate: float, preset: str | None, soak: bool,
          sample_every: int, soak_records: int, soak_reads: int, csv_path: Path | None, submit: str) -> None:
    """Start a local network, drive it through IPC, report tx/s, latency, CPU, RSS.

    One size: the run's figures as JSON. Several (--validators 4,7): one run per size and
    a summary row each. --soak: a table row per sample and node, and the summary as JSON.
    """
    from .benchpresets import resolve_preset

    ctx = click.get_current_context()
    explicit = {k for k in ctx.params if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    try:
        opts = resolve_preset(preset, {"validators": validators, "txs": txs, "tx_size": tx_size, "rate": rate,
                                       "tx_type": tx_type, "soak": soak, "sample_every": sample_every}, explicit)
    except MedchainError as exc:
        _fail(exc)
    validators, txs, tx_size, rate = opts["validators"], opts["txs"], opts["tx_size"], opts["rate"]
    tx_type, soak, sample_every = opts["tx_type"], opts["soak"], opts["sample_every"]
    if soak or len(validators) > 1:
        from .benchmodes import bench_mode

        try:
            bench_mode(validators, soak=soak, csv_path=csv_path, echo=click.echo, n_txs=txs, tx_size=tx_size,
                       connections=connections, tx_type=tx_type, datadir=datadir, base_port=base_port,
                       node_log_level=node_log_level, rate=rate, sample_every=sample_every,
                       records=soak_records, reads=soak_reads, submit=submit)
        except (MedchainError, OSError) as exc:
            _fail(exc)
        return
    from .bench import run_bench

    try:
        result = run_bench(validators=validators[0], n_txs=txs, tx_size=tx_size, connections=connections,
                           tx_type=tx_type, datadir=datadir, base_port=base_port, node_log_level=node_log_level,
                           rate=rate, submit=submit)
    except (MedchainError, OSError) as exc:
        _fail(exc)
    if csv_path is not None:
        from .benchmodes import SWEEP_FIELDS, summary_row, write_rows

        write_rows(csv_path, SWEEP_FIELDS, [summary_row(result)])
    click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()


@main.command("peer-id")
@click.argument("public_keys", nargs=-1, required=True)
def peer_id(public_keys: tuple[str, ...]) -> None:
    """The libp2p peer id of each authority PUBLIC_KEY (0x-hex Ed25519), for p2p.bootstrap."""
    from ..net.libp2p_net import peer_id_from_public_key

    for k in public_keys:
        try:
            raw = bytes.fromhex(k.removeprefix("0x"))
        except ValueError:
            _fail(MedchainError(f"{k!r} is not hex"))
        if len(raw) != 32:
            _fail(MedchainError(f"{k!r}: an Ed25519 public key is 32 bytes (64 hex digits)"))
        click.echo(f"{k}\t{peer_id_from_public_key(raw)}")
