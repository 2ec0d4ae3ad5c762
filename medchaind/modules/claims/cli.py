"""``medchain claims ...``: X12 837 / FHIR Claim in, 277CA and 835 posted, status and duplicates out.

Files are read, validated (pyx12 for X12) and de-identified here, in the client: the node
receives blind values, codes, amounts and the claim document encrypted to payer and
provider. Reports go to stdout as JSON (one object per claim); they carry the
provider's own patient control numbers, which never leave this process otherwise.

Exit codes: 0 every claim / acknowledgement / remittance committed (detections such as
duplicates are outcomes, not errors), 1 the file was refused (with the segment and
element named), 2 some claims were refused or failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ...clikit import WAIT, Ctx, Group, fail, finish, hash_arg, out, pass_ctx, public_key_hex
from ...errors import ValidationError
from .machine import STATUSES


@click.group("claims", cls=Group)
def commands() -> None:
    """Health care claims: 837 / FHIR Claim, 277CA, 835, duplicates (no PHI on chain)."""


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            fail(f"{path}: not a text file")


def _progress(total: int, what: str) -> Any:
    """A progress bar on stderr (terminals only); returns (on_progress, close)."""
    if not sys.stderr.isatty() or total < 2:
        return None, lambda: None
    from rich.console import Console
    from rich.progress import Progress

    prog = Progress(console=Console(stderr=True), transient=True)
    task = prog.add_task(what, total=total)
    prog.start()
    return (lambda _r: prog.advance(task)), prog.stop


def _finish_reports(reports: list[dict[str, Any]]) -> None:
    out(reports)
    if not all(r.get("ok") for r in reports):
        sys.exit(2)


@commands.command("enroll")
@click.option("--key", "key_ref", required=True, help="The payer's key.")
@click.option("--npi", "npis", multiple=True, required=True, help="A billing NPI credentialed for the provider.")
@click.argument("provider")
@WAIT
@pass_ctx
def claims_enroll(c: Ctx, key_ref: str, npis: tuple[str, ...], provider: str, wait: bool) -> None:
    """Accept claims from PROVIDER (key name or 0x key) under its billing NPIs.

    The first enrollment draws the payer-provider pair key that blinds every identifier
    of their claims, and seals it to both; enrolling again re-seals the same key.
    """
    pk = c.public_key(provider)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.enroll_provider(kp, pk, list(npis), wait=wait))


@commands.command("submit")
@click.option("--key", "key_ref", required=True, help="The provider's key.")
@click.option("--payer", required=True, help="The payer (key name or 0x key).")
@click.option("--encounters", "encounters_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help='JSON {"CLM01": "0x<record id>"} or {"CLM01": {"1": "0x..", ...}}: the encounter record of '
                   "each claim or line (an 837 has no element for it).")
@click.option("--no-validate", is_flag=True, help="Skip pyx12's TR3 validation (the strict reader still runs).")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@pass_ctx
def claims_submit(c: Ctx, key_ref: str, payer: str, encounters_file: Path | None, no_validate: bool,
                  file: Path) -> None:
    """Submit the claims of FILE: an X12 837P / 837I interchange or a FHIR Claim (JSON).

    Prints one report per claim: its patient control number, claim id, and the chain's
    detections (exact_duplicate: auto-denied with CARC 18 / N522; suspect_duplicate and
    no_service_on_record: held for the payer's review), or why it was refused.
    """
    from .client import read_claims, read_encounters

    try:
        claims, encounters = read_claims(_text(file), validate=not no_validate)
        if encounters_file is not None:
            encounters.update(read_encounters(json.loads(encounters_file.read_text()), claims))
    except ValidationError as exc:
        fail(f"{file.name}: {exc}")
    except ValueError as exc:
        fail(f"{encounters_file}: {exc}")
    payer_pk = c.public_key(payer)
    kp = c.load_key(key_ref)
    on_progress, close = _progress(len(claims), f"submitting {len(claims)} claims")
    with c.client() as cl:
        try:
            reports = cl.submit_claims(kp, payer_pk, claims, encounters=encounters, on_progress=on_progress)
        finally:
            close()
    _finish_reports(reports)


@commands.command("ack")
@click.option("--key", "key_ref", required=True, help="The payer's key.")
@click.option("--provider", help="The provider (default: the one enrolled under the 277CA's billing NPI).")
@click.option("--no-verify", is_flag=True,
              help="Accept without opening each document and recomputing its blind values.")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@pass_ctx
def claims_ack(c: Ctx, key_ref: str, provider: str | None, no_verify: bool, file: Path) -> None:
    """Post a 277CA (X214): acknowledge each claim (A1/A2 accepted, A3/A6/A7/A8 rejected)."""
    from .client import validate_x12
    from .x12 import parse_277ca, transactions

    text = _text(file)
    try:
        validate_x12(text, kind="277CA")
        acks = parse_277ca(text)
        npi = None
        for ts in transactions(text, "277"):
            npi = next((s.el(9) for s in ts if s.id == "NM1" and s.el(1) == "85" and s.el(8) == "XX"), npi)
    except ValidationError as exc:
        fail(f"{file.name}: {exc}")
    kp = c.load_key(key_ref)
    prov = c.public_key(provider) if provider else None
    with c.client() as cl:
        _finish_reports(cl.ack_claims(kp, acks, provider=prov, npi=npi, verify=not no_verify))


@commands.command("remit")
@click.option("--key", "key_ref", required=True, help="The payer's key.")
@click.option("--provider", help="The payee (default: the one enrolled under the 835's payee NPI).")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@pass_ctx
def claims_remit(c: Ctx, key_ref: str, provider: str | None, file: Path) -> None:
    """Post an 835 (X221A1): adjudicate each CLP (CAS / CARC, LQ / RARC), then the payment (BPR, TRN, PLB).

    Every claim and the payment must balance (CLP03 - CLP04 = sum of CAS; BPR02 = sum of
    CLP04 - PLB); the chain checks again.
    """
    from .client import validate_x12
    from .x12 import parse_835

    text = _text(file)
    try:
        validate_x12(text, kind="835")
        remittances = parse_835(text)
    except ValidationError as exc:
        fail(f"{file.name}: {exc}")
    kp = c.load_key(key_ref)
    prov = c.public_key(provider) if provider else None
    results = []
    with c.client() as cl:
        for rem in remittances:
            results.append(cl.remit(kp, rem, provider=prov))
    out(results)
    if not all(r["claims"] and all(x["ok"] for x in r["claims"]) and (r["payment"] is None or r["payment"]["ok"])
               for r in results):
        sys.exit(2)


@commands.command("status")
@click.argument("claim_id")
@pass_ctx
def claims_status(c: Ctx, claim_id: str) -> None:
    """A claim's status, holds, per-line detections and adjudications (CARC / RARC)."""
    with c.client() as cl:
        out(cl.claim_status(hash_arg(claim_id, "claim id")))


@commands.command("list")
@click.option("--provider", help="The provider's claims (key name or 0x key).")
@click.option("--payer", help="The payer's claims (key name or 0x key).")
@click.option("--status", "status", type=click.Choice(STATUSES), help="Only claims in this status.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@pass_ctx
def claims_list_cmd(c: Ctx, provider: str | None, payer: str | None, status: str | None, limit: int,
                    offset: int) -> None:
    """A provider's or a payer's claims (give one), newest first."""
    if (provider is None) == (payer is None):
        fail("give exactly one of --provider or --payer")
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    params["provider" if provider else "payer"] = public_key_hex(c, provider or payer or "")
    if status:
        params["status"] = status
    with c.client() as cl:
        out(cl.call("claims_list", params))


@commands.command("duplicates")
@click.option("--provider", help="The provider's flagged claims (key name or 0x key).")
@click.option("--payer", help="The payer's flagged claims and duplicate rates per provider.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@pass_ctx
def claims_duplicates_cmd(c: Ctx, provider: str | None, payer: str | None, limit: int, offset: int) -> None:
    """The duplicates report: flagged claims (exact, suspect, no service on record) and counts."""
    if (provider is None) == (payer is None):
        fail("give exactly one of --provider or --payer")
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    params["provider" if provider else "payer"] = public_key_hex(c, provider or payer or "")
    with c.client() as cl:
        out(cl.call("claims_duplicates", params))


@commands.command("document")
@click.option("--key", "key_ref", required=True, help="The payer's or the provider's key.")
@click.argument("claim_id")
@pass_ctx
def claims_document(c: Ctx, key_ref: str, claim_id: str) -> None:
    """Decrypt a claim's document (the canonical claim, PHI included): its payer and provider only."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        out(cl.claim_document(kp, hash_arg(claim_id, "claim id")))


@commands.command("release")
@click.option("--key", "key_ref", required=True, help="The payer's key.")
@click.option("--hold", required=True, type=click.Choice(["suspect_duplicate", "no_service_on_record"]))
@click.argument("claim_id")
@WAIT
@pass_ctx
def claims_release(c: Ctx, key_ref: str, hold: str, claim_id: str, wait: bool) -> None:
    """Release a held claim after review (the detection stays on record)."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.release_claim_hold(kp, hash_arg(claim_id, "claim id"), hold, wait=wait))


@commands.command("appeal")
@click.option("--key", "key_ref", required=True, help="The provider's key.")
@click.argument("claim_id")
@WAIT
@pass_ctx
def claims_appeal(c: Ctx, key_ref: str, claim_id: str, wait: bool) -> None:
    """Appeal a paid or denied claim (the payer adjudicates it again)."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.appeal_claim(kp, hash_arg(claim_id, "claim id"), wait=wait))


@commands.command("unit-limit")
@click.option("--key", "key_ref", required=True, help="An authority's key.")
@click.argument("code")
@click.argument("units", type=click.IntRange(0))
@WAIT
@pass_ctx
def claims_unit_limit(c: Ctx, key_ref: str, code: str, units: int, wait: bool) -> None:
    """Set CODE's medically-unlikely-edit limit to UNITS per line (0 lifts it); above it a line is auto-denied."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.set_unit_limit(kp.signing, code, units * 1000, wait=wait))
