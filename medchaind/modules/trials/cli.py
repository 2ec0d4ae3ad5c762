"""``medchain trials ...``: clinical trials (register from ClinicalTrials.gov, amend, enrol
with consent, commit, unblind, report, outcome switching).

Files (a ClinicalTrials.gov record, a protocol PDF, an SAP, a randomisation list, data
files) are read and hashed here, in the client; the chain receives hashes, and the
registry's public text of the record (title, outcomes, arms).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import click

from ...clikit import WAIT, Ctx, Group, fail, finish, hash_arg, out, pass_ctx, public_key_hex
from ...crypto import sha256
from . import machine
from .client import data_lock_root

FILE = click.Path(dir_okay=False, exists=True, path_type=Path)


@click.group("trials", cls=Group)
def commands() -> None:
    """Clinical trials: registration, amendments, consented enrolment, commitments, switching."""


def _study(path: Path) -> Any:
    from .ctgov import CtgovError, parse

    try:
        return parse(path.read_bytes(), path.name)
    except CtgovError as exc:
        fail(str(exc))


def _doc_hash(file: Path | None, hex_: str | None, what: str, *, required: bool = True) -> bytes | None:
    """The SHA-256 of ``file`` or the hash given as hex (exactly one, if required)."""
    if file is not None and hex_ is not None:
        fail(f"give --{what}-file or --{what}-hash, not both")
    if file is not None:
        return sha256(file.read_bytes())
    if hex_ is not None:
        return hash_arg(hex_, f"--{what}-hash")
    if required:
        fail(f"give --{what}-file FILE or --{what}-hash HEX")
    return None


def _json(body: Any) -> Any:
    """A tx body for printing (bytes as 0x-hex)."""
    if isinstance(body, bytes):
        return "0x" + body.hex()
    if isinstance(body, dict):
        return {k: _json(v) for k, v in body.items()}
    if isinstance(body, list | tuple):
        return [_json(v) for v in body]
    return body


def _trial_arg(trial: str) -> str:
    import re

    if re.fullmatch(machine.REGISTRY_ID_PATTERN, trial) is None:
        fail(f"{trial!r} is not a registry id (NCT followed by 8 digits, or another registry's id)")
    return trial


TRIAL = click.argument("trial", callback=lambda _c, _p, v: _trial_arg(v))
KEY = click.option("--key", "key_ref", required=True, help="The signing key (key name or keystore file).")
DRY_RUN = click.option("--dry-run", is_flag=True, help="Print the tx body and send nothing.")


# ------------------------------------------------------------------ sponsor


@commands.command("register")
@KEY
@click.option("--from-ctgov", "ctgov_file", type=FILE, required=True,
              help="A ClinicalTrials.gov API v2 study record (JSON file).")
@click.option("--protocol-file", type=FILE, help="The protocol document (hashed here).")
@click.option("--protocol-hash", help="Or its SHA-256 as hex.")
@click.option("--protocol-version", type=click.IntRange(1, machine.MAX_VERSION), default=1, show_default=True)
@click.option("--site", "sites", multiple=True, help="A site (accredited provider: key name or 0x key); repeat.")
@click.option("--ethics-ref", help="The ethics (IRB/IEC) approval reference, if approved already.")
@click.option("--ethics-file", type=FILE, help="The approval document (hashed here).")
@click.option("--ethics-hash", help="Or its SHA-256 as hex.")
@DRY_RUN
@WAIT
@pass_ctx
def trials_register(c: Ctx, key_ref: str, ctgov_file: Path, protocol_file: Path | None, protocol_hash: str | None,
                    protocol_version: int, sites: tuple[str, ...], ethics_ref: str | None, ethics_file: Path | None,
                    ethics_hash: str | None, dry_run: bool, wait: bool) -> None:
    """Register a trial from its ClinicalTrials.gov record: NCT id, title, outcomes, target,
    allocation, masking, arms, phases; the record's snapshot hash; the protocol's hash."""
    study = _study(ctgov_file)
    ph = _doc_hash(protocol_file, protocol_hash, "protocol")
    ethics = None
    if ethics_ref is not None:
        eh = _doc_hash(ethics_file, ethics_hash, "ethics")
        assert eh is not None
        ethics = (ethics_ref, eh)
    elif ethics_file is not None or ethics_hash is not None:
        fail("--ethics-file/--ethics-hash need --ethics-ref")
    assert ph is not None
    body = study.registration(protocol_hash=ph, protocol_version=protocol_version,
                              sites=[c.public_key(s) for s in sites], ethics=ethics)
    if dry_run:
        out({"body": _json(body), "record": study.summary()})
        return
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.register_trial(kp.signing, body, wait=wait))


@commands.command("report")
@KEY
@click.option("--from-ctgov", "ctgov_file", type=FILE, required=True,
              help="A later ClinicalTrials.gov record: its results section, else its registered outcomes.")
@click.option("--source", type=click.Choice(["auto", "results", "protocol"]), default="auto", show_default=True,
              help="Which outcomes of the record are the report's.")
@click.option("--results-file", type=FILE, help="The results document (e.g. the CSR; hashed here).")
@DRY_RUN
@WAIT
@pass_ctx
def trials_report(c: Ctx, key_ref: str, ctgov_file: Path, source: str, results_file: Path | None, dry_run: bool,
                  wait: bool) -> None:
    """Submit the results report; then `medchain trials switching NCT...` classifies it."""
    study = _study(ctgov_file)
    body = study.report(source=source, results_hash=None if results_file is None else sha256(results_file.read_bytes()))
    if dry_run:
        out({"body": _json(body), "record": study.summary()})
        return
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.report_trial(kp.signing, body, wait=wait))


@commands.command("ethics")
@KEY
@TRIAL
@click.option("--ref", required=True, help="The approval reference.")
@click.option("--ethics-file", type=FILE, help="The approval document (hashed here).")
@click.option("--ethics-hash", help="Or its SHA-256 as hex.")
@WAIT
@pass_ctx
def trials_ethics(c: Ctx, key_ref: str, trial: str, ref: str, ethics_file: Path | None, ethics_hash: str | None,
                  wait: bool) -> None:
    """Record the trial's ethics approval (enrolment is refused before it)."""
    h = _doc_hash(ethics_file, ethics_hash, "ethics")
    assert h is not None
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.trial_ethics(kp.signing, trial, ref, h, wait=wait))


def _split(x: str) -> list[str]:
    return [v.strip() for v in x.split(",") if v.strip()]


@commands.command("amend")
@KEY
@TRIAL
@click.option("--version", "version", type=click.IntRange(1, machine.MAX_VERSION), required=True,
              help="The new protocol version (above the current one).")
@click.option("--protocol-file", type=FILE, help="The amended protocol (hashed here).")
@click.option("--protocol-hash", help="Or its SHA-256 as hex.")
@click.option("--changes", required=True, help=f"Comma-separated: {', '.join(machine.CHANGE_KINDS)}.")
@click.option("--reason", required=True, help="Why (public registry text: no personal data).")
@click.option("--reconsent/--no-reconsent", default=False, show_default=True,
              help="Participants must consent to this version before further study events.")
@click.option("--approval-ref", help="The ethics approval of the amendment.")
@click.option("--approval-file", type=FILE, help="The approval document (hashed here).")
@click.option("--approval-hash", help="Or its SHA-256 as hex.")
@click.option("--urgent-safety", is_flag=True, help="An urgent safety measure taken before approval (flagged).")
@click.option("--outcomes-from-ctgov", type=FILE, help="The new outcome list: this record's registered outcomes.")
@click.option("--target", type=click.IntRange(1, machine.MAX_TARGET), help="The new target enrolment.")
@click.option("--add-site", "add_sites", multiple=True, help="A new site (key name or 0x key); repeat.")
@WAIT
@pass_ctx
def trials_amend(c: Ctx, key_ref: str, trial: str, version: int, protocol_file: Path | None,
                 protocol_hash: str | None, changes: str, reason: str, reconsent: bool, approval_ref: str | None,
                 approval_file: Path | None, approval_hash: str | None, urgent_safety: bool,
                 outcomes_from_ctgov: Path | None, target: int | None, add_sites: tuple[str, ...],
                 wait: bool) -> None:
    """Amend the protocol: new version, what changed and why, approval, re-consent."""
    ph = _doc_hash(protocol_file, protocol_hash, "protocol")
    assert ph is not None
    approval = None
    if approval_ref is not None:
        ah = _doc_hash(approval_file, approval_hash, "approval")
        assert ah is not None
        approval = (approval_ref, ah)
    elif not urgent_safety:
        fail("an amendment needs --approval-ref (or --urgent-safety for a measure taken before approval)")
    outcomes = None
    if outcomes_from_ctgov is not None:
        outcomes = _study(outcomes_from_ctgov).registered_outcomes
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.amend_trial(
            kp.signing, trial, effective_version=version, protocol_hash=ph, changes=_split(changes), reason=reason,
            reconsent=reconsent, approval=approval, urgent_safety=urgent_safety, outcomes=outcomes,
            target_enrollment=target, add_sites=[c.public_key(s) for s in add_sites] or None, wait=wait))


def _salt(path: Path, create: bool) -> bytes:
    if path.exists():
        text = path.read_text().strip()
        try:
            salt = bytes.fromhex(text[2:] if text.startswith("0x") else text)
        except ValueError:
            fail(f"{path}: not hex")
        if len(salt) != 32:
            fail(f"{path}: a salt is 32 bytes (64 hex digits)")
        return salt
    if not create:
        fail(f"{path}: no such salt file (the one written when the randomisation list was committed)")
    salt = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(salt.hex() + "\n")
    click.echo(f"medchain: wrote a new salt to {path}: keep it secret until unblinding", err=True)
    return salt


@commands.command("commit")
@KEY
@TRIAL
@click.option("--kind", type=click.Choice(machine.COMMIT_KINDS), required=True)
@click.option("--file", "files", type=FILE, multiple=True,
              help="The document (sap, analysis_code, randomisation list) or, for data_lock, every data file.")
@click.option("--hash", "hex_", help="Or the hash (for data_lock: the Merkle root) as hex.")
@click.option("--salt-file", type=click.Path(dir_okay=False, path_type=Path),
              help="randomisation: the secret salt (created, mode 0600, if missing).")
@click.option("--label", help="A short label, e.g. 'SAP v2.0'.")
@WAIT
@pass_ctx
def trials_commit(c: Ctx, key_ref: str, trial: str, kind: str, files: tuple[Path, ...], hex_: str | None,
                  salt_file: Path | None, label: str | None, wait: bool) -> None:
    """Commit the SAP, the randomisation list (commit-reveal), the data lock (a Merkle root
    over the data files' hashes, files in name order) or the analysis code."""
    if bool(files) == (hex_ is not None):
        fail("give --file (repeat for data_lock) or --hash")
    if kind == "randomisation":
        if len(files) != 1 or salt_file is None:
            fail("randomisation: give the list as --file and a --salt-file")
        salt = _salt(salt_file, create=True)
        kp = c.load_key(key_ref)
        with c.client() as cl:
            finish(cl.commit_randomisation(kp.signing, trial, files[0].read_bytes(), salt, wait=wait))
        return
    if hex_ is not None:
        digest = hash_arg(hex_, "--hash")
    elif kind == "data_lock":
        digest = data_lock_root([sha256(f.read_bytes()) for f in sorted(files, key=lambda p: p.name)])
    else:
        if len(files) != 1:
            fail(f"{kind}: give one --file")
        digest = sha256(files[0].read_bytes())
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.trial_commit(kp.signing, trial, kind, digest, label=label, wait=wait))


@commands.command("set-status")
@KEY
@TRIAL
@click.argument("action", type=click.Choice(machine.STATUS_ACTIONS))
@WAIT
@pass_ctx
def trials_set_status(c: Ctx, key_ref: str, trial: str, action: str, wait: bool) -> None:
    """Change the trial's status (the block's time becomes the date of the change)."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.trial_status(kp.signing, trial, action, wait=wait))


@commands.command("unblind")
@KEY
@TRIAL
@click.option("--list-file", type=FILE, help="The randomisation list committed before the first enrolment.")
@click.option("--salt-file", type=FILE, help="Its salt.")
@WAIT
@pass_ctx
def trials_unblind(c: Ctx, key_ref: str, trial: str, list_file: Path | None, salt_file: Path | None,
                   wait: bool) -> None:
    """Unblind (after the SAP and the data lock), revealing the randomisation commitment."""
    if (list_file is None) != (salt_file is None):
        fail("give both --list-file and --salt-file, or neither")
    kp = c.load_key(key_ref)
    with c.client() as cl:
        if list_file is not None and salt_file is not None:
            finish(cl.unblind_trial(kp.signing, trial, allocation_list=list_file.read_bytes(),
                                    salt=_salt(salt_file, create=False), wait=wait))
        else:
            finish(cl.unblind_trial(kp.signing, trial, wait=wait))


# ------------------------------------------------------------------ participant and site


@commands.command("consent")
@click.option("--key", "key_ref", required=True, help="The participant's pseudonym key for this trial.")
@TRIAL
@click.option("--site", required=True, help="The enrolling site (key name or 0x key).")
@click.option("--version", "version", type=click.IntRange(1, machine.MAX_VERSION), required=True,
              help="The protocol version whose consent form the participant signed.")
@WAIT
@pass_ctx
def trials_consent(c: Ctx, key_ref: str, trial: str, site: str, version: int, wait: bool) -> None:
    """The participant consents (registering the pseudonym first if needed)."""
    site_pk = c.public_key(site)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.join_trial(kp, trial, site_pk, version, wait=wait))


def _participant_opts(f: Any) -> Any:
    f = click.option("--grant", help="The participant's consent grant id (default: found on chain).")(f)
    f = click.option("--participant", required=True, help="The participant's pseudonym (key name or 0x key).")(f)
    return f


@commands.command("enroll")
@click.option("--key", "key_ref", required=True, help="The site's key.")
@TRIAL
@_participant_opts
@WAIT
@pass_ctx
def trials_enroll(c: Ctx, key_ref: str, trial: str, participant: str, grant: str | None, wait: bool) -> None:
    """Enrol a participant under their trial consent (checked by the chain at block time)."""
    pk = c.public_key(participant)
    gid = None if grant is None else hash_arg(grant, "--grant")
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.enroll_participant(kp.signing, trial, pk, grant_id=gid, wait=wait))


@commands.command("reconsent")
@click.option("--key", "key_ref", required=True, help="The enrolling site's key.")
@TRIAL
@_participant_opts
@WAIT
@pass_ctx
def trials_reconsent(c: Ctx, key_ref: str, trial: str, participant: str, grant: str | None, wait: bool) -> None:
    """Record a participant's consent to the amended protocol version."""
    pk = c.public_key(participant)
    gid = None if grant is None else hash_arg(grant, "--grant")
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.reconsent_participant(kp.signing, trial, pk, grant_id=gid, wait=wait))


@commands.command("event")
@click.option("--key", "key_ref", required=True, help="The enrolling site's key.")
@TRIAL
@click.option("--participant", required=True, help="The participant's pseudonym (key name or 0x key).")
@click.option("--kind", required=True, help="A code: visit, dose, crf, ae...")
@click.option("--data-file", type=FILE, help="The (encrypted) data of the event, hashed here.")
@WAIT
@pass_ctx
def trials_event(c: Ctx, key_ref: str, trial: str, participant: str, kind: str, data_file: Path | None,
                 wait: bool) -> None:
    """Record a study event (refused without the participant's current consent)."""
    pk = c.public_key(participant)
    dh = None if data_file is None else sha256(data_file.read_bytes())
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.trial_event(kp.signing, trial, pk, kind, data_hash=dh, wait=wait))


@commands.command("withdraw")
@click.option("--key", "key_ref", required=True, help="The participant's or the enrolling site's key.")
@TRIAL
@click.option("--participant", required=True, help="The participant's pseudonym (key name or 0x key).")
@WAIT
@pass_ctx
def trials_withdraw(c: Ctx, key_ref: str, trial: str, participant: str, wait: bool) -> None:
    """Withdraw a participant (no further study events)."""
    pk = c.public_key(participant)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.withdraw_participant(kp.signing, trial, pk, wait=wait))


# ------------------------------------------------------------------ queries


@commands.command("status")
@TRIAL
@pass_ctx
def trials_status(c: Ctx, trial: str) -> None:
    """A trial: status and dates, versions, commitments, counts, flags, consent coverage."""
    with c.client() as cl:
        t = cl.trial(trial)
        t["coverage"] = cl.trial_coverage(trial)
        out(t)


@commands.command("switching")
@TRIAL
@click.option("--report", type=click.IntRange(0, machine.MAX_REPORTS - 1), help="Which report (default: latest).")
@click.option("--summary", is_flag=True, help="Only the switched outcomes and the summary.")
@pass_ctx
def trials_switching(c: Ctx, trial: str, report: int | None, summary: bool) -> None:
    """The outcome-switching report (COMPare categories) of a results report; exits 3 if
    outcomes were switched."""
    import sys

    with c.client() as cl:
        r = cl.trial_switching(trial, report)
    if summary:
        r = {"trial": r["trial"], "summary": r["summary"],
             "switched": [e for e in r["outcomes"] if e["switched"]]}
    out(r)
    if r["summary"]["switched"]:
        sys.exit(3)


@commands.command("outcomes")
@TRIAL
@click.option("--version", "version", type=click.IntRange(1, machine.MAX_VERSION), help="Default: current.")
@pass_ctx
def trials_outcomes(c: Ctx, trial: str, version: int | None) -> None:
    """The outcomes in force at a protocol version, with their fingerprints."""
    with c.client() as cl:
        out(cl.trial_outcomes(trial, version))


@commands.command("amendments")
@TRIAL
@pass_ctx
def trials_amendments(c: Ctx, trial: str) -> None:
    """The trial's amendments: version, what changed, why, approval, re-consent."""
    with c.client() as cl:
        out(cl.trial_amendments(trial))


@commands.command("participants")
@TRIAL
@click.option("--site", help="Only this site's (key name or 0x key).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@pass_ctx
def trials_participants(c: Ctx, trial: str, site: str | None, limit: int, offset: int) -> None:
    """Enrolled pseudonyms in randomisation order, with their consent state."""
    with c.client() as cl:
        out(cl.trial_participants(trial, site=None if site is None else c.public_key(site), limit=limit,
                                  offset=offset))


@commands.command("list")
@click.option("--sponsor", help="Only this sponsor's (key name or 0x key).")
@pass_ctx
def trials_list(c: Ctx, sponsor: str | None) -> None:
    """Registered trials."""
    params = {} if sponsor is None else {"sponsor": public_key_hex(c, sponsor)}
    with c.client() as cl:
        out(cl.call("trials_list", params))
