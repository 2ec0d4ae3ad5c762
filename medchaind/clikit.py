"""What every ``medchain`` command needs: the kit shared by the client CLI and the modules.

``medchain`` (:mod:`medchaind.cli.client`) holds the node and chain commands; each
application module brings its own ``medchain <module> ...`` group in ``<package>.cli``
(DESIGN.md §2). Both sides build their commands from this module, which sits below
``cli/`` and below the modules' CLIs: a module's ``cli.py`` imports
``medchaind.clikit``, never ``medchaind.cli``.

The contract a command relies on:

* the context object is a :class:`Ctx` (``@pass_ctx``): the node socket, the client home
  with its keystore, the passphrase source; it loads keys and resolves "key name,
  keystore file or 0x public key" arguments;
* output is JSON on stdout (:func:`out`); a tx command ends with :func:`finish`, which
  exits 2 when the tx was committed but failed;
* a user error ends with :func:`fail` (``medchain: error: ...`` on stderr, exit 1); node
  refusals, typed errors and a lost connection raised inside a command become the same
  kind of message through :class:`Group`, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import click

from .crypto import KeyPair
from .errors import MedchainError
from .files import load_keystore, read_keystore_public

KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# ------------------------------------------------------------------ the default layout
#
# Where a node lives, and where its socket is, when nobody says. ``medchaind`` and
# ``medchain`` both follow it (issue 13: ``run`` once required ``--datadir`` and
# ``medchain`` looked for a socket no default node had), like geth's ``~/.ethereum`` or
# bitcoind's ``~/.bitcoin``:
#
# * datadir: ``--datadir``, else ``$MEDCHAIND_HOME``, else ``$STATE_DIRECTORY`` (set by
#   systemd for a unit with ``StateDirectory=medchaind``: ``/var/lib/medchaind``), else
#   ``~/.medchaind``;
# * the socket of a node: ``ipc.path`` of its config (``--ipc-path``,
#   ``MEDCHAIND_IPC_PATH``), else ``<datadir>/medchaind.ipc``;
# * the socket a client uses without ``--ipc``: ``$MEDCHAIN_IPC``, else the socket of the
#   default datadir if it exists, else ``/run/medchaind/medchaind.ipc`` (the systemd
#   unit's, outside the 0700 datadir so that group members can reach it).
#
# Plain functions of the environment: nothing here opens a socket or creates a directory.

#: the socket's name inside a datadir
IPC_NAME = "medchaind.ipc"
#: the systemd unit's datadir (StateDirectory=medchaind) and socket (RuntimeDirectory=medchaind)
SYSTEM_DATADIR = Path("/var/lib/medchaind")
SYSTEM_IPC = Path("/run/medchaind") / IPC_NAME
#: how the documentation and ``--help`` name the default datadir
DEFAULT_DATADIR_TEXT = "$MEDCHAIND_HOME, else ~/.medchaind; under the systemd unit /var/lib/medchaind"


def default_datadir(env: Mapping[str, str] | None = None) -> Path:
    """``$MEDCHAIND_HOME``, else systemd's ``$STATE_DIRECTORY``, else ``~/.medchaind`` (absolute)."""
    env = os.environ if env is None else env
    if env.get("MEDCHAIND_HOME"):
        return Path(env["MEDCHAIND_HOME"]).expanduser().absolute()
    state = env.get("STATE_DIRECTORY", "")
    if state:
        # systemd may list several (StateDirectory=a b): the first is the unit's own
        return Path(state.split(":")[0]).absolute()
    return Path(env.get("HOME") or Path.home()).expanduser().absolute() / ".medchaind"


def datadir_socket(datadir: Path, env: Mapping[str, str] | None = None) -> Path:
    """The socket a node on ``datadir`` serves: ``MEDCHAIND_IPC_PATH``, else ``[ipc] path``
    of its ``config.toml``, else ``<datadir>/medchaind.ipc``; relative paths are relative to
    the datadir (as :attr:`medchaind.node.config.Config.ipc_path` takes them).

    A config that cannot be read counts as absent: this only says where to look.
    """
    env = os.environ if env is None else env
    setting = env.get("MEDCHAIND_IPC_PATH", "")
    if not setting:
        try:
            doc = tomllib.loads((datadir / "config.toml").read_text())
            value = doc.get("ipc", {}).get("path", "")
            setting = value if isinstance(value, str) else ""
        except (OSError, tomllib.TOMLDecodeError, AttributeError):
            setting = ""
    if setting:
        p = Path(setting)
        return p if p.is_absolute() else datadir / p
    return datadir / IPC_NAME


def client_socket_candidates(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where a client looks for a node, in order (without ``--ipc`` and ``MEDCHAIN_IPC``)."""
    env = os.environ if env is None else env
    own = datadir_socket(default_datadir(env), env)
    return [own] if own == SYSTEM_IPC else [own, SYSTEM_IPC]


def find_client_socket(env: Mapping[str, str] | None = None) -> Path | None:
    """``$MEDCHAIN_IPC``, else the first candidate that exists; None if there is none."""
    env = os.environ if env is None else env
    if env.get("MEDCHAIN_IPC"):
        return Path(env["MEDCHAIN_IPC"])
    for p in client_socket_candidates(env):
        if p.exists():
            return p
    return None


def no_socket_message(env: Mapping[str, str] | None = None) -> str:
    """What to tell a user when :func:`find_client_socket` found nothing."""
    looked = " and ".join(str(p) for p in client_socket_candidates(env))
    return (
        f"no node socket: looked for {looked}. Start a node (`medchaind init` once, then "
        f"`medchaind run`), or name its socket with --ipc PATH or MEDCHAIN_IPC"
    )

#: the systemd unit's socket, the last place a client looks
DEFAULT_IPC = SYSTEM_IPC


def fail(msg: str) -> NoReturn:
    """Print ``medchain: error: <msg>`` on stderr and exit 1."""
    click.echo(f"medchain: error: {msg}", err=True)
    sys.exit(1)


def out(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout."""
    click.echo(json.dumps(obj, indent=2))


class Ctx:
    """The ``medchain`` invocation: where the node is, where the keys are, how to unlock them."""

    def __init__(self, ipc: Path | None, home: Path, passphrase_file: Path | None) -> None:
        self.ipc = ipc
        self.home = home
        self.passphrase_file = passphrase_file
        #: set by ``--wait/--no-wait`` and ``--timeout`` on the commands that send a tx
        self.wait = True
        self.timeout_s: float | None = None

    @property
    def keydir(self) -> Path:
        return self.home / "keys"

    def client(self) -> Any:
        """A connected :class:`medchaind.client.Client` (use it as a context manager)."""
        from .client import Client

        if self.ipc is None:
            # --ipc, else MEDCHAIN_IPC (click), else the default layout: the socket of the
            # default datadir, else the systemd unit's
            found = find_client_socket()
            if found is None:
                fail(no_socket_message())
            self.ipc = found
        try:
            cl = Client(self.ipc)
        except OSError as exc:
            fail(str(exc))
        if self.timeout_s is not None:
            cl.tx_wait_ms = int(self.timeout_s * 1000)
        if sys.stderr.isatty():
            cl.on_wait = _spinner
        return cl

    def passphrase(self, *, confirm: bool = False) -> str:
        if self.passphrase_file is not None:
            return self.passphrase_file.read_text().rstrip("\n")
        env = os.environ.get("MEDCHAIN_PASSPHRASE")
        if env is not None:
            return env
        if not sys.stdin.isatty():
            fail("no passphrase: use --passphrase-file or set MEDCHAIN_PASSPHRASE")
        return str(click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm))

    def key_path(self, ref: str) -> Path:
        """The keystore file of a key name, or ``ref`` itself if it is an existing .json file."""
        p = Path(ref)
        if p.suffix == ".json" and p.exists():
            return p
        if not KEY_NAME_RE.match(ref):
            fail(f"{ref!r} is neither a key name nor a keystore .json file")
        return self.keydir / f"{ref}.json"

    def load_key(self, ref: str) -> KeyPair:
        path = self.key_path(ref)
        if not path.exists():
            fail(f"no key named {ref!r} (looked for {path}); create it with `medchain keys new {ref}`")
        return load_keystore(path, self.passphrase())

    def public_key(self, ref: str) -> bytes:
        """A 0x-hex public key, or the public key of a named key / keystore file."""
        if ref.startswith("0x"):
            try:
                pk = bytes.fromhex(ref[2:])
            except ValueError:
                fail(f"{ref!r} is not valid hex")
            if len(pk) != 32:
                fail("a public key is 32 bytes (64 hex digits)")
            return pk
        path = self.key_path(ref)
        if not path.exists():
            fail(f"no key named {ref!r} (looked for {path})")
        return bytes.fromhex(read_keystore_public(path)["public_key"])


pass_ctx = click.make_pass_decorator(Ctx)


class Group(click.Group):
    """A click group whose commands' errors end as ``medchain: error: ...``, exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from .ipc import RPCError

        try:
            return super().invoke(ctx)
        except RPCError as exc:
            code = exc.data.get("code") if isinstance(exc.data, dict) else None
            detail = f" ({code})" if code and not exc.message.startswith(str(code)) else ""
            fail(f"node refused: {exc.message}{detail}")
        except MedchainError as exc:
            fail(str(exc))
        except (ConnectionError, BrokenPipeError) as exc:
            fail(f"lost the connection to the node: {exc}")


DEFAULT_TIMEOUT_S = 30.0


def _record_wait(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    c = ctx.find_object(Ctx)
    if c is not None:
        setattr(c, "wait" if param.name == "wait" else "timeout_s", value)
    return value


def WAIT(f: Any) -> Any:  # noqa: N802  (a decorator used like a constant: @WAIT)
    """``--wait/--no-wait`` (passed to the command as ``wait``) and ``--timeout SECONDS``.

    A command that waits and sees its tx still pending when the timeout ends exits 3
    with a message (:func:`finish`), never 0.
    """
    f = click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 3600), default=DEFAULT_TIMEOUT_S,
                     show_default=True, expose_value=False, callback=_record_wait, is_eager=False,
                     help="Seconds to wait for the tx to commit.")(f)
    return click.option("--wait/--no-wait", default=True, show_default=True, callback=_record_wait,
                        help="Wait until the tx is committed.")(f)


@contextlib.contextmanager
def _spinner(call: Any) -> Iterator[None]:
    """A spinner on stderr while the node holds a long poll (terminals only)."""
    from rich.console import Console

    what = {"tx_wait": "waiting for the tx to commit", "chain_waitHeight": "waiting for the next block"}
    label = what.get(call.method, f"waiting for {call.method}")
    with Console(stderr=True).status(f"{label} (up to {call.wait_s:.0f} s)"):
        yield


def finish(result: dict[str, Any]) -> None:
    """Print a tx result; exit 2 if its receipt says the tx failed, 3 if a wait timed out.

    Exit codes of tx commands: 0 committed and ok (or submitted, with ``--no-wait``),
    1 refused or another error, 2 committed but failed, 3 still pending when the wait
    ended (it may commit later: ``medchain tx HASH`` tells).
    """
    out(result)
    receipt = result.get("receipt")
    if receipt is not None and not receipt.get("ok"):
        sys.exit(2)
    ctx = click.get_current_context(silent=True)
    c = ctx.find_object(Ctx) if ctx is not None else None
    if receipt is None and result.get("status") != "committed" and (c is None or c.wait):
        timeout = c.timeout_s if c is not None and c.timeout_s is not None else DEFAULT_TIMEOUT_S
        click.echo(
            f"medchain: error: tx {result.get('hash')} not committed after {timeout:g} s "
            f"(status {result.get('status')}; a chain without quorum makes no blocks). It may still "
            f"commit: check with `medchain tx {result.get('hash')}`, or wait longer with --timeout.",
            err=True,
        )
        sys.exit(3)


def hash_arg(text: str, what: str) -> bytes:
    """A 32-byte id given as hex (0x optional), or fail naming ``what``."""
    try:
        b = bytes.fromhex(text[2:] if text.startswith("0x") else text)
    except ValueError:
        fail(f"{what} must be 0x-hex")
    if len(b) != 32:
        fail(f"{what} must be 32 bytes")
    return b


def public_key_hex(c: Ctx, ref: str) -> str:
    """``Ctx.public_key`` as the 0x-hex a JSON-RPC parameter takes."""
    return "0x" + c.public_key(ref).hex()


def version_text() -> str:
    """``--version`` of both CLIs: release, wire protocol versions and the git commit."""
    import subprocess

    from . import __version__
    from .app.app import PROTOCOL_VERSION
    from .types.tx import TX_VERSION

    commit = "unknown"
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                    text=True, timeout=5, check=True).stdout.strip() or commit
        except (OSError, subprocess.SubprocessError):
            pass
    return f"%(prog)s {__version__} (protocol {PROTOCOL_VERSION}: tx/v{TX_VERSION}, state trie; commit {commit})"
