"""``medchain supply ...``: serialised drug packages, EPCIS import, verification, recalls, cases.

Serials and lots never leave this process in the clear: the commands compute the
chain's blind ids under each product's index key, which they fetch sealed to the key
given with ``--key`` (see :mod:`medchaind.modules.supply.client`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ...clikit import WAIT, Ctx, Group, fail, finish, hash_arg, out, pass_ctx, public_key_hex
from . import gs1
from .machine import CASE_KINDS, CASE_REASONS, CASE_STATUSES, FLAG_CODES, RECALL_CLASSES


@click.group("supply", cls=Group)
def commands() -> None:
    """Pharma supply chain: EPCIS events, DSCSA verification, recalls, suspect-product cases."""


KEY = click.option("--key", "key_ref", required=True, help="Your key (name or keystore file).")


def _expiry(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return gs1.expiry_from_iso(text) if "-" in text else gs1.expiry_from_yymmdd(text)
    except gs1.GS1Error as exc:
        fail(f"--expiry: {exc}")


def _product_id(gtin: str | None, serial: str | None, lot: str | None, expiry: str | None,
                scan: str | None, link: str | None) -> gs1.ProductId:
    """A package from --gtin/--serial[/--lot/--expiry], a scanned element string, or a Digital Link."""
    try:
        if scan is not None:
            return gs1.parse_element_string(scan.replace("<GS>", "\x1d"))
        if link is not None:
            epc = gs1.parse_digital_link(link)
            if epc.kind != "sgtin":
                fail("--link must name a serialised unit (/01/{gtin}/21/{serial})")
            assert epc.gtin is not None and epc.serial is not None
            return gs1.ProductId(epc.gtin, epc.serial, epc.lot, epc.expiry)
        if gtin is None or serial is None:
            fail("name the package: --gtin and --serial, --scan ELEMENT_STRING, or --link DIGITAL_LINK")
        return gs1.ProductId(gs1.check_gtin(gtin), gs1.check_text(serial, "serial"), lot, _expiry(expiry))
    except gs1.GS1Error as exc:
        fail(str(exc))


def _package_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--gtin", help="GTIN-14 (or 8/12/13 digits)."),
        click.option("--serial", help="Serial number (AI 21)."),
        click.option("--lot", help="Lot number (AI 10)."),
        click.option("--expiry", help="Expiry, YYMMDD (day 00 = month end) or YYYY-MM-DD."),
        click.option("--scan", help="A scanned GS1 element string (GS as \\x1d or <GS>), or (01)…(21)… text."),
        click.option("--link", help="A GS1 Digital Link of the package."),
    ]):
        f = opt(f)
    return f


# ------------------------------------------------------------------ parties and products


@commands.command("register-party")
@KEY
@click.option("--gln", required=True, help="Your GLN (13 digits, check digit verified).")
@WAIT
@pass_ctx
def supply_register_party(c: Ctx, key_ref: str, gln: str, wait: bool) -> None:
    """Bind your accredited identity to your GLN (as owning party in EPCIS events)."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.register_party(kp, gln, wait=wait))


@commands.command("register-product")
@KEY
@click.option("--gtin", required=True)
@click.option("--ndc", help="The NDC (e.g. 0001-2345-67).")
@click.option("--verify-url", help="Your verification service (https URL).")
@click.option("--share-with", multiple=True, help="Seal the index key to these members too (key name or 0x key).")
@pass_ctx
def supply_register_product(c: Ctx, key_ref: str, gtin: str, ndc: str | None, verify_url: str | None,
                            share_with: tuple[str, ...]) -> None:
    """Register a GTIN you own, with a fresh index key sealed to you and to --share-with."""
    members = [c.public_key(m) for m in share_with]
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.register_product(kp, gtin, ndc=ndc, verify_url=verify_url, share_with=members))


@commands.command("share-key")
@KEY
@click.option("--gtin", required=True)
@click.argument("members", nargs=-1, required=True)
@WAIT
@pass_ctx
def supply_share_key(c: Ctx, key_ref: str, gtin: str, members: tuple[str, ...], wait: bool) -> None:
    """Seal a product's index key to MEMBERS (trading partners, regulators)."""
    pks = [c.public_key(m) for m in members]
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.share_index_key(kp, gtin, pks, wait=wait))


# ------------------------------------------------------------------ import


@commands.command("import")
@KEY
@click.option("--progress-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Where committed event hashes are recorded (default: FILE.progress). An interrupted "
                   "import run again resumes after them.")
@click.option("--batch", "batch_events", type=click.IntRange(1, 128), default=128, show_default=True,
              help="Events per capture tx.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(1, 3600), default=60.0, show_default=True,
              help="Seconds to wait for each batch to commit.")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@pass_ctx
def supply_import(c: Ctx, key_ref: str, progress_file: Path | None, batch_events: int, timeout_s: float,
                  file: Path) -> None:
    """Capture the events of an EPCIS 2.0 JSON(-LD) document FILE.

    Validated (schema), hashed (GS1 canonical event hash) and converted here before
    anything is signed; a document-level problem exits 1 naming the event and field.
    Prints a JSON report: events captured, duplicates, each refused event with its
    reason, each flag the chain raised. Exits 2 if any event was refused.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .client import progress_file_hashes
    from .epcis import EpcisError, load_document

    progress_file = progress_file or file.with_name(file.name + ".progress")
    done = progress_file_hashes(progress_file.read_text()) if progress_file.exists() else set()
    try:
        doc = load_document(file.read_bytes())
    except EpcisError as exc:
        fail(f"{file}: {exc}")
    kp = c.load_key(key_ref)
    n_events = len((doc.get("epcisBody") or {}).get("eventList") or [])
    if done:
        click.echo(f"medchain: resuming {file.name}: {len(done)} of {n_events} events already captured", err=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=_stderr_console(), disable=not sys.stderr.isatty())
    with c.client() as cl, bar, progress_file.open("a") as log:
        task = bar.add_task(f"importing {file.name}", total=None)

        def on_progress(p: dict[str, Any]) -> None:
            log.write(json.dumps({"batch": p["batch"], "tx": p["tx"], "height": p["height"],
                                  "committed": ["0x" + h.hex() for h in p["committed"]]}) + "\n")
            log.flush()
            bar.update(task, total=p["batches"], completed=p["batch"])

        try:
            report = cl.import_epcis(kp, doc, done=done, on_progress=on_progress, batch_events=batch_events,
                                     timeout_ms=int(timeout_s * 1000))
        except EpcisError as exc:
            fail(f"{file}: {exc}")
    report["progress_file"] = str(progress_file)
    out(report)
    if report["refused"]:
        click.echo(f"medchain: {len(report['refused'])} event(s) refused (see 'refused')", err=True)
        sys.exit(2)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


# ------------------------------------------------------------------ verification and trace


@commands.command("verify")
@KEY
@_package_options
@click.option("--corr-uuid", help="Correlation id of the verification request (echoed).")
@click.option("--context", default="dscsaSaleableReturn", show_default=True, help="LMS request context.")
@pass_ctx
def supply_verify(c: Ctx, key_ref: str, gtin: str | None, serial: str | None, lot: str | None,
                  expiry: str | None, scan: str | None, link: str | None, corr_uuid: str | None,
                  context: str) -> None:
    """Verify a package (e.g. a saleable return): GS1 Lightweight Messaging answer.

    Exits 0 when verified, 2 when not (verificationFailureReason says why).
    """
    pid = _product_id(gtin, serial, lot, expiry, scan, link)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        me = cl.call("supply_party", {"key": "0x" + kp.public_key.hex()})
        ans = cl.verify_product(kp, pid.gtin, pid.serial, lot=pid.lot, expiry=pid.expiry, corr_uuid=corr_uuid,
                                context=context, requester_gln=me["gln"])
    out(ans)
    if not ans["data"]["verified"]:
        sys.exit(2)


@commands.command("trace")
@KEY
@_package_options
@click.option("--sscc", help="Trace a logistic unit (SSCC-18) instead.")
@click.option("--limit", type=click.IntRange(1, 1000), default=200, show_default=True)
@pass_ctx
def supply_trace(c: Ctx, key_ref: str, gtin: str | None, serial: str | None, lot: str | None, expiry: str | None,
                 scan: str | None, link: str | None, sscc: str | None, limit: int) -> None:
    """Every event and custody change of a package (or SSCC), with the containers it was in."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        if sscc is not None:
            out(cl.trace_unit(kp, sscc=sscc, limit=limit))
            return
        pid = _product_id(gtin, serial, lot, expiry, scan, link)
        out(cl.trace_unit(kp, gtin=pid.gtin, serial=pid.serial, limit=limit))


# ------------------------------------------------------------------ recalls


@commands.command("recall")
@KEY
@click.option("--gtin", required=True)
@click.option("--lot", required=True)
@click.option("--class", "cls", type=click.Choice(RECALL_CLASSES), required=True, help="FDA recall class.")
@click.option("--reason", required=True, help="Short public reason (no personal data).")
@WAIT
@pass_ctx
def supply_recall(c: Ctx, key_ref: str, gtin: str, lot: str, cls: str, reason: str, wait: bool) -> None:
    """Recall a lot (the GTIN's owner or a regulator): its current holders get a push at once."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.recall_lot(kp, gtin, lot, cls=cls, reason=reason, wait=wait))


@commands.command("holders")
@KEY
@click.option("--gtin", required=True)
@click.option("--lot", required=True)
@pass_ctx
def supply_holders(c: Ctx, key_ref: str, gtin: str, lot: str) -> None:
    """Who holds units of a lot now, who has units inbound, who acknowledged its recall."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        out(cl.lot_holders(kp, gtin, lot))


@commands.command("recall-ack")
@KEY
@click.option("--gtin", required=True)
@click.option("--lot", required=True)
@WAIT
@pass_ctx
def supply_recall_ack(c: Ctx, key_ref: str, gtin: str, lot: str, wait: bool) -> None:
    """Acknowledge a recall of a lot you hold."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.acknowledge_recall(kp, gtin, lot, wait=wait))


# ------------------------------------------------------------------ cases and flags


@commands.command("cases")
@click.option("--all", "all_", is_flag=True, help="Closed and cleared cases too.")
@click.option("--party", help="Only cases that concern this party (key name or 0x key).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@pass_ctx
def supply_cases_cmd(c: Ctx, all_: bool, party: str | None, limit: int) -> None:
    """Suspect / illegitimate product cases with their 24-hour notification deadlines."""
    with c.client() as cl:
        out(cl.supply_cases(status="all" if all_ else "open", party=None if party is None else c.public_key(party),
                            limit=limit))


@commands.command("case-open")
@KEY
@click.option("--kind", type=click.Choice(CASE_KINDS), default="suspect", show_default=True)
@click.option("--reason", type=click.Choice(CASE_REASONS), required=True)
@click.option("--gtin", help="The product (its serials via --serial; its owner is told).")
@click.option("--serial", "serials", multiple=True, help="Serial of a unit of --gtin (repeat).")
@click.option("--sscc", "ssccs", multiple=True, help="An SSCC (repeat).")
@WAIT
@pass_ctx
def supply_case_open(c: Ctx, key_ref: str, kind: str, reason: str, gtin: str | None, serials: tuple[str, ...],
                     ssccs: tuple[str, ...], wait: bool) -> None:
    """Open a suspect (or illegitimate) product case on units and SSCCs (priority lane)."""
    kp = c.load_key(key_ref)
    if serials and gtin is None:
        fail("--serial needs --gtin")
    with c.client() as cl:
        oids = [gs1.sscc_oid(s) for s in ssccs]
        if serials:
            assert gtin is not None
            key = cl.index_key(kp, gtin)
            oids += [gs1.sgtin_oid(key, gtin, s) for s in serials]
        if not oids:
            fail("name at least one unit (--gtin with --serial) or --sscc")
        finish(cl.open_case(kp, kind, reason, oids, gtin=gtin, wait=wait))


@commands.command("case-update")
@KEY
@click.option("--status", type=click.Choice([s for s in CASE_STATUSES if s != "suspect"]), required=True)
@click.option("--form3911", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The filed Form FDA 3911 (its SHA-256 goes on chain), for --status notified.")
@click.option("--fda-incident", help="FDA's incident number, for --status notified.")
@click.argument("case_id")
@WAIT
@pass_ctx
def supply_case_update(c: Ctx, key_ref: str, status: str, form3911: Path | None, fda_incident: str | None,
                       case_id: str, wait: bool) -> None:
    """Move a case on: investigating, cleared, illegitimate (starts the 24-hour clock),
    notified (Form 3911 filed), closed."""
    import hashlib

    cid = hash_arg(case_id, "case id")
    digest = None if form3911 is None else hashlib.sha256(form3911.read_bytes()).digest()
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.update_case(kp, cid, status, form3911=digest, fda_incident=fda_incident, wait=wait))


@commands.command("flags")
@click.option("--code", type=click.Choice(FLAG_CODES))
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@pass_ctx
def supply_flags(c: Ctx, code: str | None, limit: int) -> None:
    """Detections the chain raised (counterfeits, double dispenses, non-owner shipments...), newest first."""
    params: dict[str, Any] = {"limit": limit}
    if code is not None:
        params["code"] = code
    with c.client() as cl:
        out(cl.call("supply_flags", params))


@commands.command("events")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.argument("party")
@pass_ctx
def supply_events(c: Ctx, limit: int, party: str) -> None:
    """Events PARTY captured or was the destination of, newest first."""
    with c.client() as cl:
        out(cl.call("supply_events", {"party": public_key_hex(c, party), "limit": limit}))


@commands.command("sample")
@click.option("--manufacturer", "m_gln", required=True, help="The manufacturer's GLN.")
@click.option("--distributor", "d_gln", required=True, help="The distributor's GLN.")
@click.option("--pharmacy", "p_gln", required=True, help="The pharmacy's GLN.")
@click.option("--gtin", required=True)
@click.option("--lot", required=True)
@click.option("--expiry", required=True, help="YYYY-MM-DD.")
@click.option("--units", type=click.IntRange(1, 100_000), default=300, show_default=True)
@click.option("--per-case", type=click.IntRange(1, 1000), default=12, show_default=True)
@click.option("--dispense", type=click.IntRange(0), help="Units the pharmacy dispenses (default: all).")
@click.option("--return-unit", type=click.IntRange(0), help="Also write a saleable return of this unit.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def supply_sample(m_gln: str, d_gln: str, p_gln: str, gtin: str, lot: str, expiry: str, units: int, per_case: int,
                  dispense: int | None, return_unit: int | None, out_dir: Path) -> None:
    """Write sample EPCIS 2.0 documents of a DSCSA lifecycle into OUT (for trials and demos).

    One document per party: manufacturer.jsonld (commission, pack, ship), distributor.jsonld
    (receive, unpack, ship), pharmacy.jsonld (receive, check, unpack, dispense); with
    anomalies-pharmacy.jsonld (a counterfeit and a double dispense) and
    anomalies-distributor.jsonld (a shipment by a non-owner); with --return-unit,
    return-pharmacy.jsonld and return-distributor.jsonld (a saleable return).
    """
    from . import samples

    try:
        parties = samples.Parties(gs1.check_gln(m_gln), gs1.check_gln(d_gln), gs1.check_gln(p_gln))
        gtin = gs1.check_gtin(gtin)
        gs1.expiry_from_iso(expiry)
    except gs1.GS1Error as exc:
        fail(str(exc))
    docs = {f"{role}.jsonld": d for role, d in samples.lifecycle(parties, gtin, lot, expiry, units, per_case=per_case,
                                                                   dispense=dispense).items()}
    docs.update({f"anomalies-{role}.jsonld": d for role, d in samples.anomalies(parties, gtin, lot, expiry).items()})
    if return_unit is not None:
        docs.update({f"return-{role}.jsonld": d
                     for role, d in samples.saleable_return(parties, gtin, return_unit).items()})
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, doc in docs.items():
        (out_dir / name).write_text(json.dumps(doc, indent=1))
        written[name] = len(doc["epcisBody"]["eventList"])
    out({"written": {str(out_dir / k): v for k, v in written.items()}})
