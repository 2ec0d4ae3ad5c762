"""Supply's client helpers (sans-IO flows; :mod:`medchaind.flows`).

Everything that sees a serial number, a lot number or an EPCIS event body happens here,
in the trading partner's process: GS1 parsing (:mod:`.gs1`), EPCIS validation, the
canonical event hash and conversion (:mod:`.epcis`), and the blind indexes under each
product's **index key**. The node only sees the chain's view of events (hashes, blind
ids, GLNs, steps).

Index keys travel on chain, sealed: :func:`register_product` makes a fresh key, registers
its ``key_check`` and seals the key to the owner itself and to the members it names;
:func:`share_index_key` seals it to more members later; :func:`index_key` fetches and
opens a member's copy (and checks it against ``key_check``), so any client holding the
member's keystore can compute the blind ids.

Helpers (methods of both clients): :func:`register_party`, :func:`register_product`,
:func:`share_index_key`, :func:`index_key`, :func:`capture`, :func:`import_epcis`,
:func:`verify_product`, :func:`trace_unit`, :func:`lot_holders`, :func:`recall_lot`,
:func:`acknowledge_recall`, :func:`supply_cases`, :func:`open_case`, :func:`update_case`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ... import flows
from ...crypto import KeyPair, seal
from ...errors import SignatureError
from ...flows import Call, Flow, helper, hexstr, send_flow, unhex
from ..identity.client import encryption_key
from . import epcis, gs1
from .machine import index_key_check

#: events per capture tx the importer sends (the chain takes up to 128)
IMPORT_BATCH = 128


class IndexKeyError(epcis.EpcisError):
    """An index key that cannot be had or does not match the product's key check."""


# ------------------------------------------------------------------ parties and products


@helper
def register_party(chain_id: str, keys: KeyPair, gln: str, **kw: Any) -> Flow[dict[str, Any]]:
    """``supply.register_party``: bind an accredited identity to its GLN (check digit verified)."""
    return (yield from send_flow(chain_id, keys.signing, "supply.register_party", {"gln": gs1.check_gln(gln)}, **kw))


def _seal_to(index_key: bytes, members: Sequence[bytes]) -> Flow[list[dict[str, bytes]]]:
    envelopes = []
    for pk in dict.fromkeys(members):
        enc = yield from encryption_key(pk)
        envelopes.append({"recipient": pk, "sealed_key": seal(enc, index_key)})
    return envelopes


@helper
def register_product(
    chain_id: str, owner: KeyPair, gtin: str, *, ndc: str | None = None, verify_url: str | None = None,
    share_with: Sequence[bytes] = (), index_key: bytes | None = None, **kw: Any,
) -> Flow[dict[str, Any]]:
    """Register a GTIN with a fresh index key, sealed to the owner and ``share_with``.

    Two txs: ``supply.register_product`` (the key's check), then ``supply.share_key``.
    Returns the second's status, with the first's under ``"registered"``.
    """
    gtin = gs1.check_gtin(gtin)
    if index_key is None:
        index_key, check = gs1.new_index_key()
    else:
        check = index_key_check(index_key)
    body: dict[str, Any] = {"gtin": gtin, "key_check": check}
    if ndc is not None:
        body["ndc"] = ndc
    if verify_url is not None:
        body["verify_url"] = verify_url
    st = yield from send_flow(chain_id, owner.signing, "supply.register_product", body, **kw)
    if not flows.ok(st):
        return st
    envelopes = yield from _seal_to(index_key, [owner.public_key, *share_with])
    shared = yield from send_flow(chain_id, owner.signing, "supply.share_key", {"gtin": gtin, "envelopes": envelopes},
                                  **kw)
    shared["registered"] = st
    return shared


@helper
def index_key(member: KeyPair, gtin: str) -> Flow[bytes]:
    """The product's index key as sealed to ``member`` on chain, opened and checked."""
    gtin = gs1.check_gtin(gtin)
    try:
        ans = yield Call("supply_indexKey", {"gtin": gtin, "member": hexstr(member.public_key)})
    except flows.RPCError:
        raise IndexKeyError(f"no index key of GTIN {gtin} is sealed to this member; ask the product's owner "
                            "(medchain supply share-key)") from None
    try:
        key = member.encryption.unseal(unhex(ans["sealed_key"]))
    except SignatureError:
        raise IndexKeyError(f"the index key of GTIN {gtin} does not open with this member's key") from None
    if index_key_check(key) != unhex(ans["key_check"]):
        raise IndexKeyError(f"the index key of GTIN {gtin} does not match the product's key check")
    return key


@helper
def share_index_key(chain_id: str, owner: KeyPair, gtin: str, members: Sequence[bytes],
                    **kw: Any) -> Flow[dict[str, Any]]:
    """``supply.share_key``: seal the product's index key to more members (trading partners, regulators)."""
    key = yield from index_key(owner, gtin)
    envelopes = yield from _seal_to(key, members)
    return (yield from send_flow(chain_id, owner.signing, "supply.share_key",
                                 {"gtin": gs1.check_gtin(gtin), "envelopes": envelopes}, **kw))


# ------------------------------------------------------------------ capture and import


@helper
def capture(chain_id: str, reporter: KeyPair, events: Sequence[dict[str, Any]], **kw: Any) -> Flow[dict[str, Any]]:
    """``supply.capture`` of chain Event bodies (see :func:`import_epcis` for EPCIS documents)."""
    return (yield from send_flow(chain_id, reporter.signing, "supply.capture", {"events": list(events)}, **kw))


def _gtins(doc: dict[str, Any]) -> list[str]:
    """The GTINs a document's events name (unparsable EPCs are reported per event later)."""
    out: dict[str, None] = {}
    for ev in (doc.get("epcisBody") or {}).get("eventList") or ():
        if not isinstance(ev, dict):
            continue
        for name in ("epcList", "childEPCs", "inputEPCList", "outputEPCList", "parentID"):
            value = ev.get(name)
            for text in value if isinstance(value, list) else [value] if isinstance(value, str) else ():
                try:
                    epc = gs1.parse_epc(text)
                except gs1.GS1Error:
                    continue
                if epc.gtin is not None:
                    out[epc.gtin] = None
    return list(out)


def _named(reason: str, batch: Sequence[epcis.Prepared]) -> epcis.Prepared | None:
    """The event of ``batch`` a refusal's reason names (``event <16 hex>: ...``)."""
    for p in batch:
        if f"event {p.hash.hex()[:16]}" in reason:
            return p
    return None


def _refusal(exc_or_receipt: Any) -> tuple[str, str]:
    if isinstance(exc_or_receipt, Exception):
        data = getattr(exc_or_receipt, "data", None)
        if isinstance(data, dict) and "code" in data:
            return str(data["code"]), str(data.get("reason", ""))
        return "refused", str(exc_or_receipt)
    return str(exc_or_receipt.get("code")), str(exc_or_receipt.get("reason", ""))


@helper
def import_epcis(
    chain_id: str, reporter: KeyPair, document: dict[str, Any] | bytes | str, *,
    done: Collection[bytes] = (), on_progress: Callable[[dict[str, Any]], None] | None = None,
    batch_events: int = IMPORT_BATCH, timeout_ms: int = 60_000,
) -> Flow[dict[str, Any]]:
    """Capture every event of an EPCIS 2.0 document; a report of what happened to each.

    The document is validated (schema), hashed (canonical event hash) and converted
    before anything is signed: a document-level problem raises
    :class:`~medchaind.modules.supply.epcis.EpcisError`. Events go in batches of
    ``batch_events``, one tx each, each waited for. An event that cannot be converted, or
    that the chain refuses (the refusal names it), is reported in ``refused`` with its
    reason and left out; the rest of its batch is sent again. Error declarations in the
    document become ``supply.declare_error`` txs, in document order.

    Resumable: ``done`` holds event hashes already committed (skipped without a tx);
    ``on_progress`` gets one report per committed batch, with the batch's hashes, for the
    caller to persist. Re-importing without ``done`` is safe too: the chain
    de-duplicates by event hash (``duplicates`` in the report).
    """
    doc = epcis.load_document(document) if isinstance(document, bytes | str) else document
    epcis.validate_document(doc)
    keys: dict[str, bytes] = {}
    missing: dict[str, str] = {}
    for gtin in _gtins(doc):
        try:
            keys[gtin] = yield from index_key(reporter, gtin)
        except IndexKeyError as exc:
            missing[gtin] = str(exc)
    prepared = epcis.prepare(doc, keys.__getitem__, validate=False)
    report: dict[str, Any] = {"events": len(prepared), "captured": 0, "duplicates": 0, "declared": 0,
                              "skipped": 0, "refused": [], "flags": [], "warnings": [], "txs": []}
    for p in prepared:
        report["warnings"] += list(p.warnings)
        if p.problem is not None:
            report["refused"].append({"event": p.where, "hash": p.hash_uri, "code": "invalid_event",
                                      "reason": p.problem})
    todo = [p for p in prepared if p.problem is None and p.hash not in done]
    report["skipped"] = sum(1 for p in prepared if p.problem is None and p.hash in done)
    groups = list(epcis.batches(todo, max_events=batch_events))
    for i, group in enumerate(groups):
        batch = list(group)
        while batch:
            declared = batch[0].error
            declaration = declared is not None
            if declared is not None:
                type_, body = "supply.declare_error", declared
            else:
                type_, body = "supply.capture", {"events": [p.body for p in batch]}
            try:
                st = yield from send_flow(chain_id, reporter.signing, type_, body, timeout_ms=timeout_ms)
            except flows.RPCError as exc:
                code, reason = _refusal(exc)
                bad = batch[0] if declaration else _named(reason, batch)
                if bad is None:
                    raise  # not about one event (the sender is not a party, the node is down...)
                report["refused"].append({"event": bad.where, "hash": bad.hash_uri, "code": code, "reason": reason})
                batch.remove(bad)
                continue
            receipt = st.get("receipt")
            if receipt is None:
                raise flows.RPCError(-32000, f"tx {st.get('hash')} not committed within {timeout_ms} ms; run the "
                                     "import again to resume", {"code": "timeout"})
            if not receipt["ok"]:
                code, reason = _refusal(receipt)
                bad = batch[0] if declaration else _named(reason, batch)
                if bad is None:
                    raise flows.RPCError(-32000, f"capture failed: {code}: {reason}", receipt)
                report["refused"].append({"event": bad.where, "hash": bad.hash_uri, "code": code, "reason": reason})
                batch.remove(bad)
                continue
            report["txs"].append(st["hash"])
            for ev in receipt["events"]:
                if ev["type"] == "supply.captured":
                    report["captured"] += ev["events"]
                    report["duplicates"] += ev["duplicates"]
                elif ev["type"] == "supply.flagged":
                    where = next((p.where for p in batch if "0x" + p.hash.hex() == ev["event"]), None)
                    report["flags"].append({"event": where, "hash": ev["event"], "code": ev["code"],
                                            "oids": ev["oids"]})
                elif ev["type"] == "supply.error_declared":
                    report["declared"] += 1
            if on_progress is not None:
                on_progress({"batch": i + 1, "batches": len(groups), "committed": [p.hash for p in batch],
                             "height": st.get("height"), "tx": st["hash"]})
            break
    for gtin, why in missing.items():
        report["warnings"].append(f"GTIN {gtin}: {why}")
    return report


# ------------------------------------------------------------------ queries with identifiers


def _oid_of(member: KeyPair, gtin: str | None, serial: str | None, sscc: str | None) -> Flow[bytes]:
    if sscc is not None:
        return gs1.sscc_oid(sscc)
    if gtin is None or serial is None:
        raise gs1.GS1Error("give a GTIN and a serial, or an SSCC")
    key = yield from index_key(member, gtin)
    return gs1.sgtin_oid(key, gtin, gs1.check_text(serial, "serial"))


@helper
def verify_product(
    member: KeyPair, gtin: str, serial: str, *, lot: str | None = None, expiry: int | None = None,
    corr_uuid: str | None = None, context: str | None = None, requester_gln: str | None = None,
) -> Flow[dict[str, Any]]:
    """A VRS-style verification (GS1 Lightweight Messaging Standard shape) of one package.

    ``expiry`` is YYYYMMDD. The answer is the chain's ``supply_verify`` (with the blind ids
    computed here, under the product's index key) plus the request echoed.
    """
    gtin = gs1.check_gtin(gtin)
    key = yield from index_key(member, gtin)
    params: dict[str, Any] = {"oid": hexstr(gs1.sgtin_oid(key, gtin, serial)), "gtin": gtin}
    if lot is not None:
        params["lot_id"] = hexstr(gs1.lot_id(key, gtin, lot))
    if expiry is not None:
        params["expiry"] = expiry
    if corr_uuid is not None:
        params["corr_uuid"] = corr_uuid
    if context is not None:
        params["context"] = context
    ans: dict[str, Any] = yield Call("supply_verify", params)
    ans["request"] = {"gtin": gtin, "serial": serial, "lot": lot, "expiry": expiry, "reqGLN": requester_gln}
    return ans


@helper
def trace_unit(member: KeyPair, *, gtin: str | None = None, serial: str | None = None, sscc: str | None = None,
               limit: int = 200) -> Flow[dict[str, Any]]:
    """Every event of a package (or an SSCC) and of the containers it travelled in, oldest first."""
    oid = yield from _oid_of(member, gtin, serial, sscc)
    ans: dict[str, Any] = yield Call("supply_trace", {"oid": hexstr(oid), "limit": limit})
    return ans


def _lot_params(member: KeyPair, gtin: str, lot: str) -> Flow[dict[str, Any]]:
    gtin = gs1.check_gtin(gtin)
    key = yield from index_key(member, gtin)
    return {"gtin": gtin, "lot_id": hexstr(gs1.lot_id(key, gtin, gs1.check_text(lot, "lot")))}


@helper
def lot_holders(member: KeyPair, gtin: str, lot: str) -> Flow[dict[str, Any]]:
    """Who holds units of a lot now, who has units inbound, and who acknowledged its recall."""
    params = yield from _lot_params(member, gtin, lot)
    ans: dict[str, Any] = yield Call("supply_holders", params)
    return ans


@helper
def recall_lot(chain_id: str, by: KeyPair, gtin: str, lot: str, *, cls: str = "II", reason: str,
               **kw: Any) -> Flow[dict[str, Any]]:
    """``supply.recall`` (the GTIN's owner or a regulator; priority lane): the current
    holders get a ``supply.recalled`` push on the ``supply`` topic."""
    params = yield from _lot_params(by, gtin, lot)
    body = {"gtin": params["gtin"], "lot_id": unhex(params["lot_id"]), "cls": cls, "reason": reason}
    return (yield from send_flow(chain_id, by.signing, "supply.recall", body, **kw))


@helper
def acknowledge_recall(chain_id: str, holder: KeyPair, gtin: str, lot: str, **kw: Any) -> Flow[dict[str, Any]]:
    """``supply.recall_ack``: a holder acknowledges the recall of a lot."""
    params = yield from _lot_params(holder, gtin, lot)
    body = {"gtin": params["gtin"], "lot_id": unhex(params["lot_id"])}
    return (yield from send_flow(chain_id, holder.signing, "supply.recall_ack", body, **kw))


@helper
def supply_cases(*, status: str = "open", party: bytes | str | None = None, limit: int = 100) -> Flow[Any]:
    """Suspect / illegitimate product cases with their 24-hour notification deadlines."""
    params: dict[str, Any] = {"status": status, "limit": limit}
    if party is not None:
        params["party"] = hexstr(party)
    return (yield Call("supply_cases", params))


@helper
def open_case(chain_id: str, opener: KeyPair, kind: str, reason: str, oids: Sequence[bytes], *,
              gtin: str | None = None, note: bytes | None = None, **kw: Any) -> Flow[dict[str, Any]]:
    """``supply.case_open`` (priority lane); the status carries ``case_id`` once committed."""
    body: dict[str, Any] = {"kind": kind, "reason": reason, "oids": list(oids)}
    if gtin is not None:
        body["gtin"] = gs1.check_gtin(gtin)
    if note is not None:
        body["note"] = note
    st = yield from send_flow(chain_id, opener.signing, "supply.case_open", body, **kw)
    for ev in (st.get("receipt") or {}).get("events", []):
        if ev.get("type") == "supply.case":
            st["case_id"] = ev["case_id"]
    return st


@helper
def update_case(chain_id: str, by: KeyPair, case_id: bytes, status: str, *, note: bytes | None = None,
                form3911: bytes | None = None, fda_incident: str | None = None, **kw: Any) -> Flow[dict[str, Any]]:
    """``supply.case_update``: investigating, cleared, illegitimate (starts the 24-hour clock),
    notified (with the Form FDA 3911's hash), closed."""
    body: dict[str, Any] = {"case_id": case_id, "status": status}
    for k, v in (("note", note), ("form3911", form3911), ("fda_incident", fda_incident)):
        if v is not None:
            body[k] = v
    return (yield from send_flow(chain_id, by.signing, "supply.case_update", body, **kw))


def progress_file_hashes(text: str) -> set[bytes]:
    """Event hashes recorded in an import's progress file (JSON lines ``{"committed": [...]}``)."""
    out: set[bytes] = set()
    for line in text.splitlines():
        line = line.strip()
        if line:
            out.update(unhex(h) for h in json.loads(line).get("committed", []))
    return out


HELPERS = [
    register_party, register_product, share_index_key, index_key, capture, import_epcis, verify_product,
    trace_unit, lot_holders, recall_lot, acknowledge_recall, supply_cases, open_case, update_case,
]
