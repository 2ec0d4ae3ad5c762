"""Claims' client side: X12 validation with pyx12, the pair key, and the helpers (sans-IO flows).

Everything that touches PHI happens here, in the provider's or the payer's process:
the 837 / FHIR Claim is validated (pyx12 for X12, fhir.resources for FHIR) and
parsed into canonical claims (:mod:`.x12`, :mod:`.fhir_claim`), every identifier is
blinded with the payer-provider pair key (:mod:`.canonical`), and the claim document is
encrypted to both parties (records' envelopes) before anything is signed. The node sees
blind values, codes, amounts and a ciphertext.

The pair key
------------
The payer draws it once per provider (:func:`enroll_provider`) and seals it to the
provider's and its own X25519 keys in ``claims.enroll``; re-enrolling (new NPIs) opens
the payer's own envelope and re-seals the same key, so blind values stay comparable.
Both sides get it back with :func:`pair_key` (open their envelope from
``claims_enrollment``). Losing it loses the ability to recognise one's own claims on
chain, not the claims: the documents are sealed with separate data keys.

Helpers (methods of :class:`~medchaind.client.Client` and ``AsyncClient``):
:func:`enroll_provider`, :func:`submit_claims`, :func:`ack_claims`, :func:`remit`,
:func:`claim_status`, :func:`claims_list`, :func:`claims_duplicates`,
:func:`claim_document`, :func:`release_claim_hold`, :func:`appeal_claim`,
:func:`set_unit_limit`.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ... import flows
from ...crypto import KeyPair, SigningKey, random_bytes
from ...errors import ValidationError
from ...flows import Call, Flow, helper, hexstr, send_flow, unhex, wait_tx_flow
from ..identity.client import encryption_key
from ..records import encryption
from . import canonical, codes, x12
from .x12 import X12Error

# ------------------------------------------------------------------ input files


def validate_x12(text: str, *, kind: str = "X12") -> None:
    """Validate an interchange against its TR3 with pyx12; raise :class:`X12Error` with its reasons.

    pyx12 knows 005010X222A1 (837P), X223A2 (837I), X221A1 (835) and X214 (277CA). It
    works offline (its maps ship in the package). It reports what the implementation
    guide says (missing loops, segment order, element types and the guide's codes) but
    not external code lists, which :mod:`.x12` checks.
    """
    import pyx12.params  # type: ignore[import-untyped]
    import pyx12.x12n_document  # type: ignore[import-untyped]

    if not text.lstrip("\ufeff \r\n\t").startswith("ISA"):
        raise X12Error(f"{kind}: the file does not start with an ISA segment")
    log = logging.getLogger("pyx12")
    disabled, log.disabled = log.disabled, True  # it logs every finding at ERROR; we report them
    out = io.StringIO()
    try:
        ok = pyx12.x12n_document.x12n_document(pyx12.params.params(), io.StringIO(text), None, None, None,
                                               fd_json=out)
    except Exception as exc:  # pyx12 raises EngineError, X12Error, KeyError on some inputs
        raise X12Error(f"{kind}: pyx12 cannot read the file: {exc}") from None
    finally:
        log.disabled = disabled
    if ok:
        return
    findings = _pyx12_findings(out.getvalue())
    shown = "; ".join(findings[:8]) + (f"; and {len(findings) - 8} more" if len(findings) > 8 else "")
    raise X12Error(f"{kind} fails TR3 validation (pyx12): {shown or 'invalid'}")


def _pyx12_findings(doc: str) -> list[str]:
    try:
        tree = json.loads(doc)
    except ValueError:
        return []
    out: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            here = where
            if "seg_id" in node:
                here = f"line {node.get('cur_line')} {node['seg_id']} ({node.get('name')})"
            if "ele_pos" in node and isinstance(node.get("ele_pos"), int):
                sub = f"-{node['subele_pos']}" if node.get("subele_pos") else ""
                here = f"{where} element {node['ele_pos']:02d}{sub} ({node.get('name')})"
            for e in node.get("errors", []) or []:
                out.append(f"{here}: {e.get('err_str')}")
            for k, v in node.items():
                if k != "errors":
                    walk(v, here)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    walk(tree, "interchange")
    return out


def read_837(text: str, *, validate: bool = True) -> list[dict[str, Any]]:
    """The canonical claims of an 837P / 837I (validated with pyx12 first)."""
    if validate:
        validate_x12(text, kind="837")
    return x12.parse_837(text)


def read_claims(data: str, *, validate: bool = True) -> tuple[list[dict[str, Any]], dict[str, dict[int, bytes]]]:
    """An 837 (text starting with ISA) or a FHIR Claim (JSON): canonical claims and encounters by PCN."""
    if data.lstrip("\ufeff \r\n\t").startswith("{"):
        from .fhir_claim import parse_fhir_claim

        claim, enc = parse_fhir_claim(data)
        return [claim], ({claim["pcn"]: enc} if enc else {})
    return read_837(data, validate=validate), {}


def read_encounters(doc: Mapping[str, Any], claims: Sequence[Mapping[str, Any]]) -> dict[str, dict[int, bytes]]:
    """An encounters map (``{"PCN": "0x<record id>"}`` for every line, or ``{"PCN": {"1": "0x.."}}``)."""
    out: dict[str, dict[int, bytes]] = {}
    lines = {c["pcn"]: [ln["n"] for ln in c["lines"]] for c in claims}
    for pcn, v in doc.items():
        if pcn not in lines:
            raise ValidationError(f"encounters: no claim with patient control number {pcn!r} in the file")
        pairs = {str(n): v for n in lines[pcn]} if isinstance(v, str) else dict(v)
        out[pcn] = {}
        for n, rid in pairs.items():
            try:
                raw = unhex(str(rid))
            except ValueError:
                raw = b""
            if len(raw) != 32 or not str(n).isdigit() or int(n) not in lines[pcn]:
                raise ValidationError(f"encounters[{pcn!r}][{n!r}]: a line number of the claim and a 0x record id")
            out[pcn][int(n)] = raw
    return out


# ------------------------------------------------------------------ pair key


def _my_envelope(enrollment: Mapping[str, Any], me: bytes) -> bytes:
    for e in enrollment["envelopes"]:
        if unhex(e["recipient"]) == me:
            return unhex(e["sealed_key"])
    raise ValidationError("this key holds no envelope of the pair key (neither the payer nor the provider)")


def pair_key(keys: KeyPair, payer: bytes, provider: bytes) -> Flow[bytes]:
    """Open this party's envelope of the payer-provider pair key."""
    enrollment = yield Call("claims_enrollment", {"payer": hexstr(payer), "provider": hexstr(provider)})
    return encryption.open_envelope(keys, _my_envelope(enrollment, keys.public_key))


@helper
def enroll_provider(chain_id: str, payer: KeyPair, provider: bytes, npis: Sequence[str], **kw: Any
                    ) -> Flow[dict[str, Any]]:
    """``claims.enroll``: accept claims from ``provider`` under its billing ``npis``.

    The first enrollment draws the pair key; a later one (new NPIs) re-seals the same key.
    """
    bad = [n for n in npis if not codes.is_npi(n)]
    if bad:
        raise ValidationError(f"not a valid NPI (check digit): {', '.join(bad)}")
    try:
        key = yield from pair_key(payer, payer.public_key, provider)
    except flows.RPCError:  # not enrolled yet
        key = random_bytes(canonical.PAIR_KEY_SIZE)
    recipients = {payer.public_key: payer.encryption.public_key, provider: (yield from encryption_key(provider))}
    envs = encryption.seal_data_key(key, recipients)
    body = {"provider": provider, "npis": list(npis),
            "envelopes": [{"recipient": e["recipient"], "sealed_key": e["sealed_key"]} for e in envs]}
    return (yield from send_flow(chain_id, payer.signing, "claims.enroll", body, **kw))


# ------------------------------------------------------------------ submit


def _find(claims: list[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    return next((c for c in reversed(claims) if pred(c)), None)


def _resolve_original(claim: Mapping[str, Any], key: bytes, provider: bytes, payer: bytes
                      ) -> Flow[bytes | None]:
    """The claim id a replacement / void refers to: REF*F8 (the payer's claim control number)."""
    if claim["frequency"] == codes.ORIGINAL:
        return None
    found = yield Call("claims_byRef", {"icn": hexstr(canonical.icn_key(key, claim["original_icn"]))})
    mine = [c for c in found if c["provider"] == hexstr(provider) and c["payer"] == hexstr(payer)]
    if not mine:
        raise ValidationError(f"claim {claim['pcn']!r}: no claim on chain with payer claim control number "
                              f"{claim['original_icn']!r} (REF*F8)")
    return unhex(mine[-1]["claim_id"])


def _outcome(st: dict[str, Any]) -> dict[str, Any]:
    receipt = st.get("receipt") or {}
    out: dict[str, Any] = {"hash": st.get("hash"), "ok": bool(receipt.get("ok")),
                           "code": receipt.get("code") or st.get("status"), "reason": receipt.get("reason")}
    for ev in receipt.get("events", []):
        if ev.get("type") == "claims.submitted":
            out.update(claim_id=ev["claim_id"], flags=ev["flags"], holds=ev["holds"])
    return out


Pending = tuple[dict[str, Any], str, dict[str, Any], bytes | None]


def _send_all(chain_id: str, key: SigningKey, txs: Sequence[Pending],
              on_progress: Callable[[dict[str, Any]], None] | None) -> Flow[list[dict[str, Any]]]:
    """Submit every tx, then wait for each (one block for a batch, not one per tx).

    ``txs``: (report, type, body, blob). A tx the node refuses at admission is reported
    with its code; the others carry their receipts.
    """
    pending = []
    reports = []
    for report, type_, body, blob in txs:
        try:
            st = yield from send_flow(chain_id, key, type_, body, blob=blob, wait=False)
        except flows.RPCError as exc:
            code = exc.data.get("code") if isinstance(exc.data, dict) else None
            report.update(ok=False, code=code or "refused", reason=exc.message)
            reports.append(report)
            if on_progress is not None:
                on_progress(report)
            continue
        pending.append((report, st["hash"]))
    for report, h in pending:
        st = yield from wait_tx_flow(h, 60_000)
        report.update(_outcome(st))
        reports.append(report)
        if on_progress is not None:
            on_progress(report)
    return reports


@helper
def submit_claims(
    chain_id: str, provider: KeyPair, payer: bytes, claims: Sequence[Mapping[str, Any]], *,
    encounters: Mapping[str, Mapping[int, bytes]] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> Flow[list[dict[str, Any]]]:
    """Blind, encrypt and submit canonical claims (``read_claims``); one report per claim.

    Each report: ``pcn`` (the provider's own reference, never sent), ``ok``, ``code`` /
    ``reason`` if refused, else ``claim_id``, ``flags`` (detections) and ``holds``. A
    replacement or void (frequency 7 / 8) is linked to the claim its REF*F8 names.
    """
    key = yield from pair_key(provider, payer, provider.public_key)
    recipients = {payer: (yield from encryption_key(payer)), provider.public_key: provider.encryption.public_key}
    txs: list[Pending] = []
    for claim in claims:
        report: dict[str, Any] = {"pcn": claim["pcn"], "frequency": claim["frequency"]}
        try:
            original = yield from _resolve_original(claim, key, provider.public_key, payer)
            enc = encryption.encrypt_record(canonical.document_bytes(claim), recipients)
            body = canonical.submit_body(
                claim, key, payer=payer, content_hash=enc.content_hash, size=enc.size,
                envelopes=[{"recipient": e["recipient"], "sealed_key": e["sealed_key"]} for e in enc.envelopes],
                encounters=(encounters or {}).get(claim["pcn"]),
                original=original)
        except ValidationError as exc:
            report.update(ok=False, code="invalid", reason=str(exc))
            txs.append((report, "", {}, None))
            continue
        txs.append((report, "claims.submit", body, enc.ciphertext))
    ready = [t for t in txs if t[1]]
    refused = [t[0] for t in txs if not t[1]]
    for r in refused:
        if on_progress is not None:
            on_progress(r)
    sent = yield from _send_all(chain_id, provider.signing, ready, on_progress)
    order = {id(t[0]): i for i, t in enumerate(txs)}
    return sorted([*refused, *sent], key=lambda r: order[id(r)])


# ------------------------------------------------------------------ the payer's side


def _claims_by_pcn(key: bytes, pcn: str, provider: bytes, payer: bytes) -> Flow[list[dict[str, Any]]]:
    found = yield Call("claims_byRef", {"pcn": hexstr(canonical.pcn_key(key, pcn))})
    return [c for c in found if c["provider"] == hexstr(provider) and c["payer"] == hexstr(payer)]


def _provider_of(payer: bytes, npi: str | None, provider: bytes | None) -> Flow[bytes]:
    if provider is not None:
        return provider
    if npi is None:
        raise ValidationError("name the provider (the file carries no billing NPI)")
    enrollment = yield Call("claims_enrollment", {"payer": hexstr(payer), "npi": npi})
    return unhex(enrollment["provider"])


def open_document(keys: KeyPair, claim_id: bytes | str, *, wait_s: float = 30.0) -> Flow[dict[str, Any]]:
    """Fetch and decrypt a claim's document (the canonical claim); the payer or provider only."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        head = yield Call("chain_head")
        doc = yield Call("claims_document", {"claim_id": hexstr(claim_id), "reader": hexstr(keys.public_key)})
        if doc.get("ciphertext") is not None:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise flows.RPCError(-32020, "the claim document has not reached this node yet", {"code": "unavailable"})
        step = min(remaining, 1.0)
        yield Call("chain_waitHeight", {"height": (head or {"height": 0})["height"] + 1,
                                        "timeout_ms": int(step * 1000)}, wait_s=step)
    plain = encryption.open_record(keys, unhex(doc["envelope"]), unhex(doc["ciphertext"]), unhex(doc["content_hash"]))
    return json.loads(plain)  # type: ignore[no-any-return]


@helper
def claim_document(keys: KeyPair, claim_id: bytes | str, *, wait_s: float = 30.0) -> Flow[dict[str, Any]]:
    """A claim's decrypted document (the canonical claim); for its payer and provider."""
    return (yield from open_document(keys, claim_id, wait_s=wait_s))


@helper
def ack_claims(
    chain_id: str, payer: KeyPair, acks: Sequence[Mapping[str, Any]], *, provider: bytes | None = None,
    npi: str | None = None, verify: bool = True, on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> Flow[list[dict[str, Any]]]:
    """Post a 277CA (``x12.parse_277ca``): ``claims.ack`` for each claim it acknowledges.

    The provider is ``provider`` or the one enrolled under the billing ``npi``. With
    ``verify``, an accepting acknowledgement is sent only after the claim's document has
    been opened and every blind value on chain recomputed from it (a mismatch is reported
    as ``onchain_mismatch`` and not acknowledged).
    """
    prov = yield from _provider_of(payer.public_key, npi, provider)
    key = yield from pair_key(payer, payer.public_key, prov)
    txs: list[Pending] = []
    reports: list[dict[str, Any]] = []
    order: dict[int, int] = {}
    for a in acks:
        report: dict[str, Any] = {"pcn": a["pcn"], "category": a["category"]}
        order[id(report)] = len(order)
        candidates = yield from _claims_by_pcn(key, a["pcn"], prov, payer.public_key)
        target = _find(candidates, lambda c: c["ack"] is None and (c["status"] == "submitted" or c["chain_denied"]))
        if target is None:
            report.update(ok=False, code="no_claim", reason="no claim awaiting acknowledgement under this CLM01")
            reports.append(report)
            continue
        report["claim_id"] = target["claim_id"]
        if verify and a["accepted"]:
            doc = yield from open_document(payer, target["claim_id"])
            full = yield Call("claims_get", {"claim_id": target["claim_id"]})
            problems = canonical.verify_submission(doc, key, full)
            if problems:
                report.update(ok=False, code="onchain_mismatch", reason=", ".join(problems))
                reports.append(report)
                continue
        body: dict[str, Any] = {"claim_id": unhex(target["claim_id"]), "category": a["category"],
                                "status_code": a["status_code"]}
        if a.get("icn") and a["accepted"]:
            body["icn"] = canonical.icn_key(key, a["icn"])
        txs.append((report, "claims.ack", body, None))
    for r in reports:
        if on_progress is not None:
            on_progress(r)
    sent = yield from _send_all(chain_id, payer.signing, txs, on_progress)
    return sorted(reports + sent, key=lambda r: order[id(r)])  # in the 277CA's order


def _line_map(claim: Mapping[str, Any], svcs: Sequence[Mapping[str, Any]]) -> list[int]:
    """The claim line each 835 SVC adjudicates: REF*6R when it names a line, else code and charge in order."""
    lines = list(claim["lines"])
    used: set[int] = set()
    out = []
    for svc in svcs:
        n = None
        ctl = svc.get("control")
        if ctl and ctl.isdigit() and any(ln["n"] == int(ctl) for ln in lines) and int(ctl) not in used:
            n = int(ctl)
        else:
            n = next((ln["n"] for ln in lines if ln["n"] not in used and ln["code"] == svc["code"]
                      and ln["charge_cents"] == svc["charge_cents"]), None)
        if n is None:
            raise ValidationError(f"SVC {svc['code']} {codes.format_cents(svc['charge_cents'])} matches no line of "
                                  "the claim")
        used.add(n)
        out.append(n)
    return out


def adjudication_body(claim_id: str, onchain: Mapping[str, Any], clp: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """The ``claims.adjudicate`` body of one 835 CLP loop."""
    def adjs(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [{"group": a["group"], "reason": a["reason"], "amount": a["amount_cents"]} for a in items]

    ns = _line_map(onchain, clp["lines"])
    body: dict[str, Any] = {
        "claim_id": unhex(claim_id), "clp_status": clp["status"], "charge": clp["charge_cents"],
        "paid": clp["paid_cents"], "patient_resp": clp["patient_resp_cents"], "adjustments": adjs(clp["adjustments"]),
        "lines": [],
    }
    for n, svc in zip(ns, clp["lines"], strict=True):
        la: dict[str, Any] = {"n": n, "charge": svc["charge_cents"], "paid": svc["paid_cents"],
                              "adjustments": adjs(svc["adjustments"])}
        if svc["remarks"]:
            la["remarks"] = sorted(set(svc["remarks"]))
        body["lines"].append(la)
    if clp["remarks"]:
        body["remarks"] = sorted(set(clp["remarks"]))
    if clp.get("icn"):
        body["icn"] = canonical.icn_key(key, clp["icn"])
    return body


@helper
def remit(
    chain_id: str, payer: KeyPair, remittance: Mapping[str, Any], *, provider: bytes | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> Flow[dict[str, Any]]:
    """Post an 835 (one of ``x12.parse_835``'s): ``claims.adjudicate`` per CLP, then ``claims.pay``.

    A CLP for a claim the chain already auto-denied (exact duplicate, unit limit) is
    checked against that denial and reported as ``chain_denied``. The payment is sent
    only when every other CLP was adjudicated (the chain re-checks that BPR02 balances).
    Returns ``{"claims": [per-CLP reports], "payment": report or None}``.
    """
    prov = yield from _provider_of(payer.public_key, remittance.get("payee_npi"), provider)
    key = yield from pair_key(payer, payer.public_key, prov)
    reports: list[dict[str, Any]] = []
    txs: list[Pending] = []
    paid_ids: list[bytes] = []
    for clp in remittance["claims"]:
        report: dict[str, Any] = {"pcn": clp["pcn"], "clp_status": clp["status"], "paid_cents": clp["paid_cents"]}
        candidates = yield from _claims_by_pcn(key, clp["pcn"], prov, payer.public_key)
        target = _find(candidates, lambda c: c["status"] in ("accepted", "appealed"))
        denied = _find(candidates, lambda c: c["chain_denied"] and c["status"] == "denied")
        if target is None and denied is not None and clp["paid_cents"] == 0:
            report.update(claim_id=denied["claim_id"], ok=True, code="chain_denied",
                          reason="denied on chain already (auto-denial); the 835 agrees")
            reports.append(report)
            continue
        if target is None:
            report.update(ok=False, code="no_claim", reason="no accepted or appealed claim under this CLM01")
            reports.append(report)
            continue
        report["claim_id"] = target["claim_id"]
        full = yield Call("claims_get", {"claim_id": target["claim_id"]})
        try:
            body = adjudication_body(target["claim_id"], full, clp, key)
        except ValidationError as exc:
            report.update(ok=False, code="invalid", reason=str(exc))
            reports.append(report)
            continue
        txs.append((report, "claims.adjudicate", body, None))
        paid_ids.append(unhex(target["claim_id"]))
    for r in reports:
        if on_progress is not None:
            on_progress(r)
    sent = yield from _send_all(chain_id, payer.signing, txs, on_progress)
    order = {clp["pcn"]: i for i, clp in enumerate(remittance["claims"])}
    reports = sorted(reports + sent, key=lambda r: order[r["pcn"]])  # in the 835's order
    payment = None
    if all(r["ok"] for r in reports) and paid_ids:
        body = {"provider": prov, "trace": canonical.trace_key(key, remittance["trace"]), "method":
                remittance["method"], "total": remittance["total_cents"], "claims": paid_ids}
        if remittance["plb"]:
            body["plb"] = [{"reason": p["reason"], "amount": p["amount_cents"]} for p in remittance["plb"]]
        (payment,) = yield from _send_all(chain_id, payer.signing, [({"payment": remittance["trace"]}, "claims.pay",
                                                                      body, None)], on_progress)
    elif paid_ids:
        payment = {"payment": remittance["trace"], "ok": False, "code": "not_sent",
                   "reason": "some claims of the 835 were not adjudicated: the payment would not balance"}
    return {"claims": reports, "payment": payment}


# ------------------------------------------------------------------ small helpers


@helper
def claim_status(claim_id: bytes | str) -> Flow[dict[str, Any]]:
    """A claim's status, holds, per-line detections and adjudication history."""
    got: dict[str, Any] = yield Call("claims_get", {"claim_id": hexstr(claim_id)})
    return got


@helper
def claims_list(*, provider: bytes | None = None, payer: bytes | None = None, status: str | None = None,
                limit: int = 100, offset: int = 0) -> Flow[list[dict[str, Any]]]:
    """A provider's or payer's claims, newest first."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    params.update({k: hexstr(v) for k, v in (("provider", provider), ("payer", payer)) if v is not None})
    if status is not None:
        params["status"] = status
    got: list[dict[str, Any]] = yield Call("claims_list", params)
    return got


@helper
def claims_duplicates(*, provider: bytes | None = None, payer: bytes | None = None, limit: int = 100,
                      offset: int = 0) -> Flow[dict[str, Any]]:
    """The duplicates report: flagged claims and per payer-provider counts."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    params.update({k: hexstr(v) for k, v in (("provider", provider), ("payer", payer)) if v is not None})
    got: dict[str, Any] = yield Call("claims_duplicates", params)
    return got


@helper
def release_claim_hold(chain_id: str, payer: KeyPair, claim_id: bytes, hold: str, **kw: Any) -> Flow[dict[str, Any]]:
    """``claims.release``: the payer reviewed a held claim (suspect duplicate, no service on record)."""
    body = {"claim_id": claim_id, "hold": hold}
    return (yield from send_flow(chain_id, payer.signing, "claims.release", body, **kw))


@helper
def appeal_claim(chain_id: str, provider: KeyPair, claim_id: bytes, **kw: Any) -> Flow[dict[str, Any]]:
    """``claims.appeal``: the provider appeals a paid or denied claim."""
    return (yield from send_flow(chain_id, provider.signing, "claims.appeal", {"claim_id": claim_id}, **kw))


@helper
def set_unit_limit(chain_id: str, authority: SigningKey, code: str, max_units_milli: int, **kw: Any
                   ) -> Flow[dict[str, Any]]:
    """``claims.set_unit_limit``: an authority sets (0: lifts) a code's unit limit per line."""
    body = {"code": code, "max_units": max_units_milli}
    return (yield from send_flow(chain_id, authority, "claims.set_unit_limit", body, **kw))


HELPERS = [
    enroll_provider, submit_claims, ack_claims, remit, claim_status, claims_list, claims_duplicates,
    claim_document, release_claim_hold, appeal_claim, set_unit_limit,
]
