"""``medchain records ...`` and ``medchain audit``: encrypted FHIR records and who read them.

Records are encrypted, decrypted and verified here, in the client: the node only ever
sees ciphertext and sealed data keys.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ...clikit import WAIT, Ctx, Group, finish, hash_arg, out, pass_ctx, public_key_hex


@click.group("records", cls=Group)
def commands() -> None:
    """Encrypted FHIR records: add, read (audited), list, break-glass, erase."""


@commands.command("add")
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
        finish(cl.add_record(kp, pk, resource_file.read_bytes(), share_with=others, purpose=purpose))


@commands.command("read")
@click.option("--key", "key_ref", required=True, help="The reader's key.")
@click.option("--purpose", default="TREAT", show_default=True)
@click.option("--wait-key", "wait_key", type=click.FloatRange(0, 3600), default=60.0, show_default=True,
              help="Seconds to wait for the author's custodian when this reader has no envelope yet.")
@click.argument("record_id")
@pass_ctx
def records_read(c: Ctx, key_ref: str, purpose: str, wait_key: float, record_id: str) -> None:
    """Fetch, decrypt and verify a record (reading someone else's record is audited on chain).

    Every request is signed with the reader's key; a reader other than the patient or
    the author commits records.access first, and the node releases nothing before that.
    A permitted reader without an envelope (after break-glass, under a consent for a
    whole role, or a patient's strict release) leaves a key request on chain and waits up
    to --wait-key seconds for the author's custodian (`medchain records custodian`) to
    seal the data key to it.
    """
    rid = hash_arg(record_id, "record id")
    kp = c.load_key(key_ref)
    with c.client() as cl:
        out(cl.read_record(kp, rid, purpose=purpose, wait_key_s=wait_key))


AS_OPTION = click.option(
    "--as", "as_", type=click.Choice(["author", "patient"]), default="author", show_default=True,
    help="Requests on the records this key wrote (author), or on this patient's records (patient).",
)


@commands.command("requests")
@AS_OPTION
@click.argument("who")
@pass_ctx
def records_requests(c: Ctx, as_: str, who: str) -> None:
    """Open key requests on the records WHO wrote (or, with --as patient, of patient WHO)."""
    with c.client() as cl:
        out(cl.key_requests(c.public_key(who), as_=as_))


@commands.command("custodian")
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


@commands.command("set-policy")
@click.option("--key", "key_ref", required=True, help="The patient's key.")
@click.option("--strict/--no-strict", required=True,
              help="Strict: data keys reach other readers only after their audited access (via key requests).")
@WAIT
@pass_ctx
def records_set_policy(c: Ctx, key_ref: str, strict: bool, wait: bool) -> None:
    """Choose how this patient's data keys reach readers other than the author.

    --strict: no envelope for others when a record is added, no re-wrap when access is
    granted; a reader gets the key through a key request after its records.access (or
    break-glass) has committed, so even an organisation reading its own node's disk
    cannot open a record before its read is on chain. Readers then wait for a custodian
    (the author's, or `medchain records custodian --key <patient> --as patient`).
    Envelopes already given stay.
    """
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.set_record_policy(kp, strict, wait=wait))


@commands.command("policy")
@click.argument("patient")
@pass_ctx
def records_policy(c: Ctx, patient: str) -> None:
    """A patient's key-release policy (strict or not)."""
    with c.client() as cl:
        out(cl.record_policy(c.public_key(patient)))


@commands.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many (newest first).")
@click.argument("patient")
@pass_ctx
def records_list(c: Ctx, limit: int, offset: int, patient: str) -> None:
    """A patient's records (metadata only), newest first."""
    with c.client() as cl:
        out(cl.call("records_list", {"patient": public_key_hex(c, patient), "limit": limit, "offset": offset}))


@commands.command("break-glass")
@click.option("--key", "key_ref", required=True, help="The accredited provider's key.")
@click.option("--reason", required=True, help="The declared emergency (a code or short phrase, no PHI).")
@click.argument("record_id")
@WAIT
@pass_ctx
def records_break_glass(c: Ctx, key_ref: str, reason: str, record_id: str, wait: bool) -> None:
    """Emergency access without consent: always audited, flagged and pushed to the patient."""
    rid = hash_arg(record_id, "record id")
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.break_glass(kp, rid, reason, wait=wait))


@commands.command("erase")
@click.option("--key", "key_ref", required=True, help="The patient's key.")
@click.argument("record_id")
@WAIT
@pass_ctx
def records_erase(c: Ctx, key_ref: str, record_id: str, wait: bool) -> None:
    """Erase a record: every node deletes its ciphertext and envelopes."""
    rid = hash_arg(record_id, "record id")
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.erase_record(kp, rid, wait=wait))


@click.command("audit")
@click.option("--limit", type=click.IntRange(1, 1000), default=1000, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True, help="Skip this many (oldest first).")
@click.argument("patient")
@pass_ctx
def audit(c: Ctx, limit: int, offset: int, patient: str) -> None:
    """Who accessed a patient's records, when and why (break-glass flagged), oldest first."""
    with c.client() as cl:
        out(cl.call("records_audit", {"patient": public_key_hex(c, patient), "limit": limit, "offset": offset}))


@click.command("console")
@click.option("--key", "key_ref", required=True, help="The patient's key (it never leaves this process).")
@click.option("--listen", default="127.0.0.1:0", show_default=True,
              help="host:port to serve on (port 0: any free port; keep it on loopback).")
@pass_ctx
def console(c: Ctx, key_ref: str, listen: str) -> None:
    """A patient's own records, consents and who read them, in a browser (Ctrl-C stops it).

    Runs a small read-only web app here, with the patient's key: records are fetched and
    decrypted in this process, never in the node. Prints the URL with a one-time token.
    """
    import trio

    from .patient_console import serve

    kp = c.load_key(key_ref)
    with c.client():  # fail now, with the usual message, if no node answers
        pass

    def announce(url: str) -> None:
        click.echo(f"patient console: {url}", err=True)

    try:
        trio.run(serve, c.ipc, kp, listen, announce)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        click.echo(f"medchain: error: --listen {listen}: {exc.strerror or exc}", err=True)
        sys.exit(1)


#: commands this module adds at the top level: ``medchain audit PATIENT`` (the audit
#: log is what patients and auditors ask for first, so it keeps its short name) and
#: ``medchain console`` (a patient's own view, decrypted in the patient's process)
top_level = [audit, console]
