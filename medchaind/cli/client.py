"""``medchain``: the command-line client for local medchaind nodes.

Talks to a node over its IPC socket (``--ipc`` or ``MEDCHAIN_IPC``); keeps client keys
in encrypted keystore files under ``--home`` (``MEDCHAIN_HOME``, default
``~/.medchain``). The passphrase comes from ``--passphrase-file``, ``MEDCHAIN_PASSPHRASE``
or a prompt. Output is JSON, for people and scripts alike. Transactions are signed
here, never by the node.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from .. import __version__
from ..crypto import KeyPair, load_keystore, read_keystore_public, save_keystore
from ..errors import MedchainError

KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Ctx:
    def __init__(self, ipc: Path | None, home: Path, passphrase_file: Path | None) -> None:
        self.ipc = ipc
        self.home = home
        self.passphrase_file = passphrase_file

    @property
    def keydir(self) -> Path:
        return self.home / "keys"

    def client(self) -> Any:
        from ..client import Client

        if self.ipc is None:
            default = Path("/run/medchaind/medchaind.ipc")
            if not default.exists():
                fail("no node socket given: use --ipc PATH or set MEDCHAIN_IPC")
            self.ipc = default
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


def fail(msg: str) -> NoReturn:
    click.echo(f"medchain: error: {msg}", err=True)
    sys.exit(1)


def out(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


pass_ctx = click.make_pass_decorator(Ctx)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from ..ipc import RPCError

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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medchain")
@click.option("--ipc", type=click.Path(path_type=Path), envvar="MEDCHAIN_IPC", help="Node IPC socket (env MEDCHAIN_IPC).")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="MEDCHAIN_HOME",
              default=lambda: str(Path.home() / ".medchain"), help="Client home with keys/ (env MEDCHAIN_HOME).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Keystore passphrase file (else env MEDCHAIN_PASSPHRASE, else a prompt).")
@click.pass_context
def main(ctx: click.Context, ipc: Path | None, home: Path, passphrase_file: Path | None) -> None:
    """medchain: client for a local medchaind node."""
    ctx.obj = Ctx(ipc, home, passphrase_file)


# ------------------------------------------------------------------ keys


@main.group(cls=_Group)
def keys() -> None:
    """Create and list client keys (Ed25519 signing + X25519 encryption)."""


@keys.command("new")
@click.argument("name")
@pass_ctx
def keys_new(c: Ctx, name: str) -> None:
    """Create key NAME in the keystore (encrypted, 0600)."""
    path = c.key_path(name)
    if path.exists():
        fail(f"key {name!r} already exists at {path}")
    c.keydir.mkdir(parents=True, exist_ok=True, mode=0o700)
    kp = KeyPair.generate()
    save_keystore(path, kp, c.passphrase(confirm=True), label=name)
    out({"name": name, "public_key": "0x" + kp.public_key.hex(),
         "encryption_public_key": "0x" + kp.encryption.public_key.hex(), "file": str(path)})


@keys.command("list")
@pass_ctx
def keys_list(c: Ctx) -> None:
    """List keys (no passphrase needed)."""
    rows = []
    for p in sorted(c.keydir.glob("*.json")) if c.keydir.exists() else []:
        try:
            pub = read_keystore_public(p)
        except MedchainError:
            continue
        rows.append({"name": p.stem, "public_key": "0x" + pub["public_key"],
                     "encryption_public_key": "0x" + pub["encryption_public_key"]})
    out(rows)


@keys.command("show")
@click.argument("name")
@pass_ctx
def keys_show(c: Ctx, name: str) -> None:
    """Show a key's public parts."""
    path = c.key_path(name)
    if not path.exists():
        fail(f"no key named {name!r}")
    pub = read_keystore_public(path)
    out({"name": name, "public_key": "0x" + pub["public_key"],
         "encryption_public_key": "0x" + pub["encryption_public_key"], "file": str(path)})


# ------------------------------------------------------------------ identity

WAIT = click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the tx is committed.")


def _finish(result: dict[str, Any]) -> None:
    out(result)
    receipt = result.get("receipt")
    if receipt is not None and not receipt.get("ok"):
        sys.exit(2)


@main.group(cls=_Group)
def identity() -> None:
    """Register and look up participants."""


@identity.command("register")
@click.option("--key", "key_ref", required=True, help="Key name or keystore file of the registrant.")
@click.option("--role", required=True, type=click.Choice(
    ["patient", "provider", "pharmacy", "manufacturer", "distributor", "payer", "sponsor", "regulator", "auditor"]))
@click.option("--label", help="Public organisation name (not for patients).")
@WAIT
@pass_ctx
def identity_register(c: Ctx, key_ref: str, role: str, label: str | None, wait: bool) -> None:
    """Register KEY as ROLE (organisations then need accreditation)."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        _finish(cl.register_identity(kp, role, label=label, wait=wait))


@identity.command("show")
@click.argument("who")
@pass_ctx
def identity_show(c: Ctx, who: str) -> None:
    """Show the identity of WHO (key name, keystore file or 0x public key)."""
    with c.client() as cl:
        out(cl.identity(c.public_key(who)))


@identity.command("list")
@click.option("--role")
@click.option("--limit", default=100, show_default=True)
@pass_ctx
def identity_list(c: Ctx, role: str | None, limit: int) -> None:
    """List registered identities."""
    with c.client() as cl:
        params: dict[str, Any] = {"limit": limit}
        if role:
            params["role"] = role
        out(cl.call("identity_list", params))


# ------------------------------------------------------------------ governance


@main.group(cls=_Group)
def governance() -> None:
    """Authority decisions (accreditation); each authority's tx is one vote."""


@governance.command("accredit")
@click.option("--key", "key_ref", required=True, help="The authority's key (name or keystore file, e.g. <datadir>/keys/node.json).")
@click.option("--role", required=True)
@click.argument("subject")
@WAIT
@pass_ctx
def governance_accredit(c: Ctx, key_ref: str, role: str, subject: str, wait: bool) -> None:
    """Vote to accredit SUBJECT (key name or 0x public key) in ROLE."""
    subj = c.public_key(subject)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        _finish(cl.accredit(kp.signing, subj, role, wait=wait))


@governance.command("revoke")
@click.option("--key", "key_ref", required=True, help="The authority's key.")
@click.option("--reason", required=True)
@click.argument("subject")
@WAIT
@pass_ctx
def governance_revoke(c: Ctx, key_ref: str, reason: str, subject: str, wait: bool) -> None:
    """Vote to revoke SUBJECT's accreditation."""
    subj = c.public_key(subject)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        _finish(cl.revoke(kp.signing, subj, reason, wait=wait))


@governance.command("add-authority")
@click.option("--key", "key_ref", required=True, help="The voting authority's key.")
@click.option("--name", required=True, help="Name of the new authority.")
@click.option("--power", default=1, show_default=True)
@click.argument("public_key")
@WAIT
@pass_ctx
def governance_add_authority(c: Ctx, key_ref: str, name: str, power: int, public_key: str, wait: bool) -> None:
    """Vote to add PUBLIC_KEY as an authority (effective two blocks after 2/3+ voted)."""
    pk = c.public_key(public_key)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        _finish(cl.send(kp.signing, "governance.add_authority", {"public_key": pk, "name": name, "power": power},
                        wait=wait))


@governance.command("remove-authority")
@click.option("--key", "key_ref", required=True, help="The voting authority's key.")
@click.option("--reason", required=True)
@click.argument("public_key")
@WAIT
@pass_ctx
def governance_remove_authority(c: Ctx, key_ref: str, reason: str, public_key: str, wait: bool) -> None:
    """Vote to remove authority PUBLIC_KEY."""
    pk = c.public_key(public_key)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        _finish(cl.send(kp.signing, "governance.remove_authority", {"public_key": pk, "reason": reason}, wait=wait))


@governance.command("rotate-authority")
@click.option("--key", "key_ref", required=True, help="The voting authority's key.")
@click.argument("old_key")
@click.argument("new_key")
@WAIT
@pass_ctx
def governance_rotate_authority(c: Ctx, key_ref: str, old_key: str, new_key: str, wait: bool) -> None:
    """Vote to replace authority OLD_KEY by NEW_KEY (key rotation)."""
    old, new = c.public_key(old_key), c.public_key(new_key)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        _finish(cl.send(kp.signing, "governance.rotate_authority", {"old_key": old, "new_key": new}, wait=wait))


@governance.command("scheduled")
@pass_ctx
def governance_scheduled(c: Ctx) -> None:
    """Authority-set changes decided and waiting for their height."""
    with c.client() as cl:
        out(cl.call("governance_scheduled"))


@governance.command("evidence")
@pass_ctx
def governance_evidence(c: Ctx) -> None:
    """Equivocation evidence on record."""
    with c.client() as cl:
        out(cl.call("governance_evidence"))


@main.command()
@pass_ctx
def consensus(c: Ctx) -> None:
    """Consensus status: height, round, step, authorities, who voted."""
    with c.client() as cl:
        out(cl.call("consensus_status"))


@main.command()
@pass_ctx
def peers(c: Ctx) -> None:
    """Connected peers."""
    with c.client() as cl:
        out(cl.call("node_peers"))


@governance.command("authorities")
@pass_ctx
def governance_authorities(c: Ctx) -> None:
    """List the current authorities."""
    with c.client() as cl:
        out(cl.call("governance_authorities"))


@governance.command("pending")
@pass_ctx
def governance_pending(c: Ctx) -> None:
    """List actions with votes but no supermajority yet."""
    with c.client() as cl:
        out(cl.call("governance_pending"))


# ------------------------------------------------------------------ chain


# ------------------------------------------------------------------ records and consent


def _hash_arg(text: str, what: str) -> bytes:
    try:
        b = bytes.fromhex(text[2:] if text.startswith("0x") else text)
    except ValueError:
        fail(f"{what} must be 0x-hex")
    if len(b) != 32:
        fail(f"{what} must be 32 bytes")
    return b


@main.group(cls=_Group)
def records() -> None:
    """Encrypted FHIR records: add, read (audited), list, break-glass, erase."""


@records.command("add")
@click.option("--key", "key_ref", required=True, help="The author's key (provider or the patient).")
@click.option("--patient", required=True, help="The patient (key name or 0x public key).")
@click.option("--share-with", multiple=True, help="Also seal the data key to these identities.")
@click.option("--purpose", help="Purpose of use, for consents limited to purposes (e.g. TREAT).")
@click.argument("resource_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@pass_ctx
def records_add(c: Ctx, key_ref: str, patient: str, share_with: tuple[str, ...], purpose: str | None,
                resource_file: Path) -> None:
    """Validate RESOURCE_FILE (FHIR R4B JSON), encrypt it here and submit it."""
    pk = c.public_key(patient)
    others = [c.public_key(x) for x in share_with]
    kp = c.load_key(key_ref)
    with c.client() as cl:
        _finish(cl.add_record(kp, pk, resource_file.read_bytes(), share_with=others, purpose=purpose))


@records.command("read")
@click.option("--key", "key_ref", required=True, help="The reader's key.")
@click.option("--purpose", default="TREAT", show_default=True)
@click.option("--wait-key", "wait_key", type=click.FloatRange(0, 3600), default=60.0, show_default=True,
              help="Seconds to wait for the author's custodian when this reader has no envelope yet.")
@click.argument("record_id")
@pass_ctx
def records_read(c: Ctx, key_ref: str, purpose: str, wait_key: float, record_id: str) -> None:
    """Fetch, decrypt and verify a record (reading someone else's record is audited on chain).

    A permitted reader without an envelope (after break-glass, or under a consent for a
    whole role) leaves a key request on chain and waits up to --wait-key seconds for the
    author's custodian (`medchain records custodian`) to seal the data key to it.
    """
    rid = _hash_arg(record_id, "record id")
    kp = c.load_key(key_ref)
    with c.client() as cl:
        out(cl.read_record(kp, rid, purpose=purpose, wait_key_s=wait_key))


AS_OPTION = click.option(
    "--as", "as_", type=click.Choice(["author", "patient"]), default="author", show_default=True,
    help="Requests on the records this key wrote (author), or on this patient's records (patient).",
)


@records.command("requests")
@AS_OPTION
@click.argument("who")
@pass_ctx
def records_requests(c: Ctx, as_: str, who: str) -> None:
    """Open key requests on the records WHO wrote (or, with --as patient, of patient WHO)."""
    with c.client() as cl:
        out(cl.key_requests(c.public_key(who), as_=as_))


@records.command("custodian")
@click.option("--key", "key_ref", required=True, help="The author's key (or, with --as patient, the patient's).")
@AS_OPTION
@click.option("--once", is_flag=True, help="Answer the open requests and exit (for cron or tests).")
@pass_ctx
def records_custodian(c: Ctx, key_ref: str, as_: str, once: bool) -> None:
    """Release data keys to permitted readers of the records this key wrote.

    Runs until stopped (SIGINT/SIGTERM), waking at every block: for each open key request
    whose reader is still permitted (break-glass window, or consent), it opens this key's
    envelope and submits records.add_envelopes for the reader. Prints one JSON line per
    answer: record id, readers, tx hash, ok -- never key material.
    """
    import signal

    kp = c.load_key(key_ref)

    def emit(answer: dict[str, Any]) -> None:
        click.echo(json.dumps(answer))

    with c.client() as cl:
        if once:
            for answer in cl.answer_key_requests(kp, as_=as_):
                emit(answer)
            return
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        click.echo(json.dumps({"custodian": "0x" + kp.public_key.hex(), "status": "serving"}), err=True)
        try:
            cl.serve_key_requests(kp, on_answer=emit, as_=as_)
        except KeyboardInterrupt:
            pass


@records.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many (newest first).")
@click.argument("patient")
@pass_ctx
def records_list(c: Ctx, limit: int, offset: int, patient: str) -> None:
    """A patient's records (metadata only), newest first."""
    with c.client() as cl:
        out(cl.call("records_list", {"patient": "0x" + c.public_key(patient).hex(), "limit": limit, "offset": offset}))


@records.command("break-glass")
@click.option("--key", "key_ref", required=True, help="The accredited provider's key.")
@click.option("--reason", required=True, help="The declared emergency (a code or short phrase, no PHI).")
@click.argument("record_id")
@WAIT
@pass_ctx
def records_break_glass(c: Ctx, key_ref: str, reason: str, record_id: str, wait: bool) -> None:
    """Emergency access without consent: always audited, flagged and pushed to the patient."""
    rid = _hash_arg(record_id, "record id")
    kp = c.load_key(key_ref)
    with c.client() as cl:
        _finish(cl.break_glass(kp, rid, reason, wait=wait))


@records.command("erase")
@click.option("--key", "key_ref", required=True, help="The patient's key.")
@click.argument("record_id")
@WAIT
@pass_ctx
def records_erase(c: Ctx, key_ref: str, record_id: str, wait: bool) -> None:
    """Erase a record: every node deletes its ciphertext and envelopes."""
    rid = _hash_arg(record_id, "record id")
    kp = c.load_key(key_ref)
    with c.client() as cl:
        _finish(cl.erase_record(kp, rid, wait=wait))


@main.group(cls=_Group)
def consent() -> None:
    """A patient's consents (FHIR Consent semantics: permit/deny, actor, scope, purpose, period)."""


@consent.command("grant")
@click.option("--key", "key_ref", required=True, help="The patient's key.")
@click.option("--actor", help="The grantee (key name or 0x public key).")
@click.option("--actor-role", help="Or every accredited holder of this role (e.g. pharmacy).")
@click.option("--actions", default="read", show_default=True, help="Comma-separated: read,write.")
@click.option("--deny", is_flag=True, help="A deny rule (deny wins over permit).")
@click.option("--types", "resource_types", default="", help="Comma-separated FHIR resource types (default all).")
@click.option("--purposes", default="", help="Comma-separated purpose-of-use codes (default any).")
@click.option("--start-ms", type=int, help="Valid from this block time (ms since epoch).")
@click.option("--end-ms", type=int, help="Valid until this block time (ms since epoch).")
@WAIT
@pass_ctx
def consent_grant(c: Ctx, key_ref: str, actor: str | None, actor_role: str | None, actions: str, deny: bool,
                  resource_types: str, purposes: str, start_ms: int | None, end_ms: int | None, wait: bool) -> None:
    """Grant (or deny) access; a permit for a person also shares the existing records with them."""
    if (actor is None) == (actor_role is None):
        fail("give exactly one of --actor and --actor-role")
    who = c.public_key(actor) if actor else None
    kp = c.load_key(key_ref)

    def split(x: str) -> list[str]:
        return [v.strip() for v in x.split(",") if v.strip()]

    with c.client() as cl:
        _finish(cl.grant(kp, actor=who, actor_role=actor_role, actions=split(actions),
                         decision="deny" if deny else "permit", resource_types=split(resource_types),
                         purposes=split(purposes), start_ms=start_ms, end_ms=end_ms, wait=wait))


@consent.command("revoke")
@click.option("--key", "key_ref", required=True, help="The patient's key.")
@click.argument("grant_id")
@WAIT
@pass_ctx
def consent_revoke(c: Ctx, key_ref: str, grant_id: str, wait: bool) -> None:
    """Revoke a grant: no access from the next block on."""
    gid = _hash_arg(grant_id, "grant id")
    kp = c.load_key(key_ref)
    with c.client() as cl:
        _finish(cl.revoke_consent(kp, gid, wait=wait))


@consent.command("list")
@click.argument("patient")
@pass_ctx
def consent_list(c: Ctx, patient: str) -> None:
    """A patient's grants, revoked ones included."""
    with c.client() as cl:
        out(cl.call("consent_list", {"patient": "0x" + c.public_key(patient).hex()}))


@main.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=1000, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many (oldest first).")
@click.argument("patient")
@pass_ctx
def audit(c: Ctx, limit: int, offset: int, patient: str) -> None:
    """Who accessed a patient's records, when and why (break-glass flagged), oldest first."""
    with c.client() as cl:
        out(cl.call("audit_log", {"patient": "0x" + c.public_key(patient).hex(), "limit": limit, "offset": offset}))


@main.command()
@pass_ctx
def info(c: Ctx) -> None:
    """Node information."""
    with c.client() as cl:
        out(cl.node_info())


@main.command()
@pass_ctx
def head(c: Ctx) -> None:
    """The latest committed header."""
    with c.client() as cl:
        out(cl.head())


@main.command()
@click.argument("ref")
@click.option("--full", is_flag=True, help="Include full transactions.")
@pass_ctx
def block(c: Ctx, ref: str, full: bool) -> None:
    """A block by height or 0x hash, with its commit."""
    with c.client() as cl:
        if ref.startswith("0x"):
            out(cl.block(hash=ref, full=full))
        elif ref.isdigit():
            out(cl.block(height=int(ref), full=full))
        else:
            fail("give a height or a 0x block hash")


@main.command()
@click.argument("tx_hash")
@pass_ctx
def tx(c: Ctx, tx_hash: str) -> None:
    """A transaction with its status, receipt and inclusion proof."""
    with c.client() as cl:
        out(cl.tx(tx_hash))


@main.command()
@click.argument("topic", type=click.Choice(["heads", "tx", "patient"]), default="heads")
@click.option("--sender", help="tx topic: only this sender (key name or 0x public key).")
@click.option("--hash", "tx_hash", help="tx topic: only this tx.")
@click.option("--patient", "patient_ref", help="patient topic: this patient's record, consent and access events.")
@click.option("--count", type=int, help="Stop after this many events.")
@pass_ctx
def watch(c: Ctx, topic: str, sender: str | None, tx_hash: str | None, patient_ref: str | None,
          count: int | None) -> None:
    """Stream new heads or tx status changes, one JSON object per line."""
    filters: dict[str, Any] = {}
    if sender:
        filters["sender"] = "0x" + c.public_key(sender).hex()
    if tx_hash:
        filters["hash"] = tx_hash
    if topic == "patient":
        if not patient_ref:
            fail("the patient topic needs --patient")
        filters["patient"] = "0x" + c.public_key(patient_ref).hex()
    with c.client() as cl:
        n = 0
        try:
            name = {"heads": "newHeads", "tx": "tx", "patient": "patient"}[topic]
            for event in cl.watch(name, **filters):
                click.echo(json.dumps(event), nl=True)
                sys.stdout.flush()
                n += 1
                if count is not None and n >= count:
                    break
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
