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

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from .crypto import KeyPair
from .errors import MedchainError
from .files import load_keystore, read_keystore_public

KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: the node socket used when neither --ipc nor MEDCHAIN_IPC names one
DEFAULT_IPC = Path("/run/medchaind/medchaind.ipc")


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

    @property
    def keydir(self) -> Path:
        return self.home / "keys"

    def client(self) -> Any:
        """A connected :class:`medchaind.client.Client` (use it as a context manager)."""
        from .client import Client

        if self.ipc is None:
            if not DEFAULT_IPC.exists():
                fail("no node socket given: use --ipc PATH or set MEDCHAIN_IPC")
            self.ipc = DEFAULT_IPC
        try:
            return Client(self.ipc)
        except OSError as exc:
            fail(str(exc))

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


WAIT = click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the tx is committed.")


def finish(result: dict[str, Any]) -> None:
    """Print a tx result; exit 2 if its receipt says the tx failed."""
    out(result)
    receipt = result.get("receipt")
    if receipt is not None and not receipt.get("ok"):
        sys.exit(2)


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
