"""EPCIS 2.0 JSON(-LD) documents on the client: validate, hash, turn into chain events.

Nothing is signed before a document passes all three steps, and every refusal names the
event (its position and ``eventID``) and the field:

1. **Schema** (:func:`validate_document`): a focused JSON Schema (draft-07) of the EPCIS
   2.0 JSON binding for the five event types, checked with ``jsonschema``. GS1 publishes
   ``EPCIS-JSON-Schema.json``, but no package on the registries this project installs
   from ships it, so this module carries its own schema of what medchain accepts: the
   document envelope, every event's ``type`` / ``eventTime`` / ``eventTimeZoneOffset``,
   ``action`` (ADD/OBSERVE/DELETE) where the type has one, the identifier lists each type
   requires (ObjectEvent ``epcList`` or ``quantityList``; AggregationEvent ``parentID`` for
   ADD/DELETE and children for ADD/OBSERVE; TransactionEvent ``bizTransactionList``;
   TransformationEvent inputs and outputs or ``transformationID``; AssociationEvent
   ``parentID`` and children), and the shapes of ``sourceList`` / ``destinationList`` /
   ``bizTransactionList`` / ``readPoint`` / ``bizLocation`` / ``errorDeclaration``.
   Extensions (other namespaced keys) are allowed, as in EPCIS.
2. **Canonical event hash** (:func:`event_hashes`): GS1's CBV 2.0 event hash
   (``ni:///sha-256;…?ver=CBV2.0``) from ``epcis-event-hash-generator`` **1.9.3, pinned**
   (pyproject.toml): every member must compute the same hash of the same event, since the
   chain de-duplicates by it. Offline it resolves only the two JSON-LD contexts it
   bundles, so a document naming another remote ``@context`` is refused here (and not
   left to time out on the network). The generator skips an event it cannot parse and
   returns fewer hashes; this module detects that and names the event. An event carrying
   an ``errorDeclaration`` hashes like the event it declares in error (the generator
   ignores ``errorDeclaration`` and ``eventID``), which is how a correction finds its
   target. Test vectors: ``tests/supply/vectors`` (the generator's own ``.hashes`` files).
3. **Conversion** (:func:`prepare`): each event becomes the chain's ``Event`` body
   (:class:`medchaind.modules.supply.machine.Event`): EPCs become blind indexes under the
   product's index key (:mod:`.gs1`), owning parties become GLNs, CBV terms are reduced
   to bare names (``https://ref.gs1.org/cbv/BizStep-shipping``,
   ``urn:epcglobal:cbv:bizstep:shipping`` -> ``shipping``), ILMD ``cbvmda:lotNumber`` /
   ``itemExpirationDate`` give the lot and expiry at commissioning, and a Digital Link
   with ``/10/{lot}`` or ``?17=`` in a later event is a scanned lot / expiry the chain
   checks against commissioning.

Limits the chain sets (and this module enforces before signing): at most
:data:`~medchaind.modules.supply.machine.MAX_EPCS_PER_EVENT` EPCs per event; only SGTINs
and SSCCs are followed (other EPC schemes are refused); one GTIN per commissioning event
(one ILMD lot and expiry apply to all its units).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import ValidationError
from . import gs1
from .machine import BIZ_STEPS, DISPOSITIONS, ERROR_REASONS, MAX_EPCS_PER_EVENT, MAX_EPCS_PER_TX, MAX_EVENTS_PER_TX

#: JSON-LD contexts the pinned hash generator resolves offline
OFFLINE_CONTEXTS = (
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
    "https://gs1.github.io/EPCIS/epcis-context.jsonld",
)
HASH_GENERATOR_VERSION = "1.9.3"
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024

_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
_STR_LIST = {"type": "array", "items": {"type": "string", "minLength": 1}}
_QTY_LIST = {"type": "array", "items": {"type": "object", "required": ["epcClass"],
                                        "properties": {"epcClass": {"type": "string"},
                                                       "quantity": {"type": "number", "minimum": 0},
                                                       "uom": {"type": "string"}}}}


def _src_dest(name: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "object", "required": ["type", name],
                                       "properties": {"type": {"type": "string"}, name: {"type": "string"}}}}


def _is(event_type: str) -> dict[str, Any]:
    return {"properties": {"type": {"const": event_type}}, "required": ["type"]}


def _any_required(*names: str) -> dict[str, Any]:
    return {"anyOf": [{"required": [n]} for n in names]}


#: The focused EPCIS 2.0 JSON schema (draft-07) medchain validates documents with.
EPCIS_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "EPCIS 2.0 document (the subset medchain accepts)",
    "type": "object",
    "required": ["@context", "type", "schemaVersion", "creationDate", "epcisBody"],
    "properties": {
        "@context": {"anyOf": [{"type": "string"}, {"type": "object"},
                               {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object"}]}}]},
        "type": {"const": "EPCISDocument"},
        "schemaVersion": {"type": "string", "pattern": r"^2\.0(\.[0-9]+)?$"},
        "creationDate": {"type": "string", "pattern": _TIME},
        "epcisHeader": {"type": "object"},
        "epcisBody": {"type": "object", "required": ["eventList"],
                      "properties": {"eventList": {"type": "array", "items": {"$ref": "#/definitions/event"}}}},
    },
    "definitions": {
        "event": {
            "type": "object",
            "required": ["type", "eventTime", "eventTimeZoneOffset"],
            "properties": {
                "type": {"enum": ["ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent",
                                  "AssociationEvent"]},
                "eventTime": {"type": "string", "pattern": _TIME},
                "eventTimeZoneOffset": {"type": "string", "pattern": r"^[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)$"},
                "recordTime": {"type": "string", "pattern": _TIME},
                "eventID": {"type": "string", "minLength": 1},
                "action": {"enum": ["ADD", "OBSERVE", "DELETE"]},
                "bizStep": {"type": "string", "minLength": 1},
                "disposition": {"type": "string", "minLength": 1},
                "parentID": {"type": "string", "minLength": 1},
                "epcList": _STR_LIST, "childEPCs": _STR_LIST, "inputEPCList": _STR_LIST, "outputEPCList": _STR_LIST,
                "quantityList": _QTY_LIST, "childQuantityList": _QTY_LIST, "inputQuantityList": _QTY_LIST,
                "outputQuantityList": _QTY_LIST,
                "transformationID": {"type": "string"},
                "readPoint": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
                "bizLocation": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
                "bizTransactionList": {"type": "array", "items": {
                    "type": "object", "required": ["bizTransaction"],
                    "properties": {"type": {"type": "string"}, "bizTransaction": {"type": "string"}}}},
                "sourceList": _src_dest("source"),
                "destinationList": _src_dest("destination"),
                "ilmd": {"type": "object"},
                "errorDeclaration": {"type": "object", "required": ["declarationTime"], "properties": {
                    "declarationTime": {"type": "string", "pattern": _TIME},
                    "reason": {"type": "string"},
                    "correctiveEventIDs": _STR_LIST}},
            },
            "allOf": [
                {"if": _is("ObjectEvent"), "then": {"required": ["action"],
                                                    **_any_required("epcList", "quantityList")}},
                {"if": _is("AggregationEvent"), "then": {"required": ["action"], "allOf": [
                    {"if": {"properties": {"action": {"enum": ["ADD", "DELETE"]}}},
                     "then": {"required": ["parentID"]}},
                    {"if": {"properties": {"action": {"enum": ["ADD", "OBSERVE"]}}},
                     "then": _any_required("childEPCs", "childQuantityList")}]}},
                {"if": _is("TransactionEvent"), "then": {"required": ["action", "bizTransactionList"],
                                                         **_any_required("epcList", "quantityList")}},
                {"if": _is("TransformationEvent"), "then": {"not": {"required": ["action"]}, "anyOf": [
                    {"required": ["transformationID"]},
                    {"allOf": [_any_required("inputEPCList", "inputQuantityList"),
                               _any_required("outputEPCList", "outputQuantityList")]}]}},
                {"if": _is("AssociationEvent"), "then": {"required": ["action", "parentID"],
                                                         **_any_required("childEPCs", "childQuantityList")}},
            ],
        },
    },
}


class EpcisError(ValidationError):
    """A document, or one of its events, that medchain cannot accept; the message names it."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message if not problems else message + ":\n  " + "\n  ".join(problems))
        self.problems = list(problems) or [message]


def _where(events: Sequence[Any], i: int) -> str:
    ev = events[i] if 0 <= i < len(events) else None
    eid = ev.get("eventID") if isinstance(ev, dict) else None
    return f"event {i + 1}" + (f" ({eid})" if eid else "")


# ------------------------------------------------------------------ 1. schema


def load_document(data: bytes | str) -> dict[str, Any]:
    """Parse a JSON document (bounded size); an EpcisError if it is not a JSON object."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise EpcisError(f"document is {len(data)} bytes; at most {MAX_DOCUMENT_BYTES}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EpcisError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EpcisError("an EPCIS document is a JSON object")
    return doc


def validate_document(doc: Any, *, max_problems: int = 20) -> None:
    """Check ``doc`` against :data:`EPCIS_SCHEMA`; EpcisError listing each problem by event and field."""
    import jsonschema  # type: ignore[import-untyped]

    validator = jsonschema.Draft7Validator(EPCIS_SCHEMA)
    events = doc.get("epcisBody", {}).get("eventList", []) if isinstance(doc, dict) else []
    events = events if isinstance(events, list) else []
    problems = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(err.absolute_path)
        if len(path) >= 3 and path[:2] == ["epcisBody", "eventList"] and isinstance(path[2], int):
            where = _where(events, path[2])
            fld = ".".join(str(p) for p in path[3:]) or "event"
        else:
            where, fld = "document", ".".join(str(p) for p in path) or "document"
        msg = err.message
        if err.validator in ("anyOf", "allOf", "if") and err.context:
            msg = "; ".join(sorted({c.message for c in err.context}))
        problems.append(f"{where}: {fld}: {msg}")
        if len(problems) >= max_problems:
            problems.append("… (more problems not shown)")
            break
    if problems:
        raise EpcisError("the document does not conform to the EPCIS 2.0 JSON schema", problems)
    _check_contexts(doc)


def _check_contexts(doc: dict[str, Any]) -> None:
    ctx = doc.get("@context")
    items = ctx if isinstance(ctx, list) else [ctx]
    for c in items:
        if isinstance(c, str) and c not in OFFLINE_CONTEXTS:
            raise EpcisError(f"document: @context {c!r} cannot be resolved offline; use "
                             f"{OFFLINE_CONTEXTS[0]!r} (inline namespace maps are fine)")


# ------------------------------------------------------------------ 2. canonical event hash


@contextlib.contextmanager
def _quiet_generator() -> Iterator[None]:
    # the generator logs its per-event failures on the root logger; we report them ourselves
    root = logging.getLogger()

    def drop(record: logging.LogRecord) -> bool:
        return not record.pathname.replace("\\", "/").count("epcis_event_hash_generator/")

    root.addFilter(drop)
    try:
        with warnings.catch_warnings():
            # 1.9.3 loads its bundled contexts with importlib.resources.open_text (deprecated)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        root.removeFilter(drop)


def _generator_hashes(doc: dict[str, Any]) -> list[str]:
    from epcis_event_hash_generator import hash_generator, json_to_py  # type: ignore[import-untyped]

    with _quiet_generator():
        try:
            events = json_to_py.event_list_from_epcis_document_json(copy.deepcopy(doc))
        except Exception as exc:  # noqa: BLE001 - PyLD and the generator raise many kinds
            raise EpcisError(f"document: the canonical event hash cannot be computed ({type(exc).__name__}: "
                             f"{str(exc)[:200]})") from None
        return list(hash_generator.epcis_hashes_from_events(events))


def hash_digest(ni: str) -> bytes:
    """The 32-byte digest of ``ni:///sha-256;<hex>?ver=CBV2.0``."""
    m = re.fullmatch(r"ni:///sha-256;([0-9a-f]{64})(\?.*)?", ni)
    if m is None:
        raise EpcisError(f"{ni!r} is not a canonical EPCIS event hash (ni:///sha-256;…)")
    return bytes.fromhex(m.group(1))


def event_hashes(doc: dict[str, Any]) -> list[str]:
    """The canonical hash (``ni:///sha-256;…?ver=CBV2.0``) of each event, in document order."""
    _check_contexts(doc)
    events = doc["epcisBody"]["eventList"]
    hashes = _generator_hashes(doc)
    if len(hashes) == len(events):
        return hashes
    # the generator silently skipped events it could not parse: find them one by one
    for i, ev in enumerate(events):
        single = {**doc, "epcisBody": {"eventList": [ev]}}
        if len(_generator_hashes(single)) != 1:
            raise EpcisError(f"{_where(events, i)}: the canonical event hash cannot be computed (the hash "
                             "generator could not parse it)")
    raise EpcisError("document: the hash generator returned a wrong number of hashes")  # pragma: no cover


# ------------------------------------------------------------------ 3. conversion


def cbv_term(value: str | None, kind: str, allowed: Sequence[str]) -> str | None:
    """A CBV vocabulary value as its bare name (``other`` for a non-CBV URI)."""
    if value is None:
        return None
    lower = kind.lower()
    for prefix in (f"https://ref.gs1.org/cbv/{kind}-", f"urn:epcglobal:cbv:{lower}:", f"cbv:{kind}-",
                   f"https://ns.gs1.org/cbv/{kind}-"):
        if value.startswith(prefix):
            value = value[len(prefix):]
            break
    return value if value in allowed else "other"


def _owning_party(entries: Any, name: str, where: str) -> str | None:
    found = []
    for e in entries or ():
        t = cbv_term(e.get("type"), "SDT", ("owning_party", "possessing_party", "location"))
        if t == "owning_party":
            found.append(e[name])
    if len(found) > 1:
        raise EpcisError(f"{where}: {name}List names {len(found)} owning parties; at most one")
    if not found:
        return None
    try:
        return gs1.gln_from_party(found[0])
    except gs1.GS1Error as exc:
        raise EpcisError(f"{where}: {name}List: {exc}") from None


def event_time_ms(text: str) -> int:
    """An EPCIS time stamp as milliseconds since the epoch (UTC)."""
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise EpcisError(f"time {text!r} has no time zone")
    delta = t - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _ilmd(ev: dict[str, Any], key: str) -> Any:
    ilmd = ev.get("ilmd") or {}
    for k in (f"cbvmda:{key}", key, f"urn:epcglobal:cbv:mda:{key}"):
        if k in ilmd:
            return ilmd[k]
    return None


@dataclass(frozen=True, slots=True)
class Prepared:
    """One event of a document, ready for the chain (or refused with ``problem``)."""

    index: int
    event_id: str | None
    hash_uri: str
    hash: bytes
    #: the chain's Event body, or None for an error declaration / a refused event
    body: dict[str, Any] | None = None
    #: a ``supply.declare_error`` body when the event declares an earlier one in error
    error: dict[str, Any] | None = None
    problem: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def where(self) -> str:
        return f"event {self.index + 1}" + (f" ({self.event_id})" if self.event_id else "")


IndexKeys = Callable[[str], bytes]


def _oid(epc: gs1.Epc, keys: IndexKeys, where: str) -> bytes:
    if epc.kind == "sscc":
        assert epc.sscc is not None
        return gs1.sscc_oid(epc.sscc)
    assert epc.gtin is not None and epc.serial is not None
    try:
        key = keys(epc.gtin)
    except KeyError:
        raise EpcisError(f"{where}: no index key for GTIN {epc.gtin}; ask the product's owner to share it "
                         "(medchain supply share-key)") from None
    return gs1.sgtin_oid(key, epc.gtin, epc.serial)


def _epcs(ev: dict[str, Any], names: Sequence[str], where: str) -> list[gs1.Epc]:
    out = []
    for name in names:
        for text in ev.get(name) or ():
            try:
                out.append(gs1.parse_epc(text))
            except gs1.GS1Error as exc:
                raise EpcisError(f"{where}: {name}: {exc}") from None
    return out


def convert_event(ev: dict[str, Any], index: int, hash_uri: str, keys: IndexKeys,
                  id_to_hash: dict[str, bytes]) -> Prepared:
    """One validated, hashed EPCIS event as a :class:`Prepared` (raises EpcisError naming it)."""
    event_id = ev.get("eventID")
    where = f"event {index + 1}" + (f" ({event_id})" if event_id else "")
    digest = hash_digest(hash_uri)
    warnings = []
    if isinstance(event_id, str) and event_id.startswith("ni:///") and hash_digest(event_id) != digest:
        warnings.append(f"{where}: its eventID is not its canonical hash (stale?); the chain uses {hash_uri}")
    if "errorDeclaration" in ev:
        decl = ev["errorDeclaration"]
        corrective = []
        for cid in decl.get("correctiveEventIDs") or ():
            if cid.startswith("ni:///"):
                corrective.append(hash_digest(cid))
            elif cid in id_to_hash:
                corrective.append(id_to_hash[cid])
            else:
                raise EpcisError(f"{where}: errorDeclaration.correctiveEventIDs: {cid!r} is neither a canonical "
                                 "event hash nor the eventID of an event in this document")
        body: dict[str, Any] = {"event": digest,
                                "reason": cbv_term(decl.get("reason"), "ER", ERROR_REASONS) or "other",
                                "declared_ms": event_time_ms(decl["declarationTime"])}
        if corrective:
            body["corrective"] = list(dict.fromkeys(corrective))
        return Prepared(index, event_id, hash_uri, digest, error=body, warnings=tuple(warnings))

    etype = ev["type"]
    action = ev.get("action", "OBSERVE")  # a TransformationEvent has none (recorded only)
    lists = {"ObjectEvent": ["epcList"], "AggregationEvent": ["childEPCs"], "TransactionEvent": ["epcList"],
             "AssociationEvent": ["childEPCs"], "TransformationEvent": ["inputEPCList", "outputEPCList"]}[etype]
    epcs = _epcs(ev, lists, where)
    if len(epcs) > MAX_EPCS_PER_EVENT:
        raise EpcisError(f"{where}: names {len(epcs)} EPCs; medchain takes at most {MAX_EPCS_PER_EVENT} per event "
                         "(split it into several events in the source system)")
    body = {"hash": digest, "type": etype, "action": action, "time_ms": event_time_ms(ev["eventTime"])}
    step = cbv_term(ev.get("bizStep"), "BizStep", BIZ_STEPS)
    disp = cbv_term(ev.get("disposition"), "Disp", DISPOSITIONS)
    if step is not None:
        body["biz_step"] = step
    if disp is not None:
        body["disposition"] = disp
    if "parentID" in ev and etype in ("AggregationEvent", "TransactionEvent", "AssociationEvent"):
        try:
            parent = gs1.parse_epc(ev["parentID"])
        except gs1.GS1Error as exc:
            raise EpcisError(f"{where}: parentID: {exc}") from None
        body["parent"] = _oid(parent, keys, where)
    src = _owning_party(ev.get("sourceList"), "source", where)
    dst = _owning_party(ev.get("destinationList"), "destination", where)
    if src is not None:
        body["source"] = src
    if dst is not None:
        body["dest"] = dst
    oids = [_oid(e, keys, where) for e in epcs]
    if len(set(oids)) != len(oids):
        raise EpcisError(f"{where}: an EPC is listed twice")
    body["epcs"] = oids
    sgtins = [e for e in epcs if e.kind == "sgtin"]
    if etype == "ObjectEvent" and action == "ADD" and sgtins:
        gtins = {e.gtin for e in sgtins}
        if len(gtins) != 1:
            raise EpcisError(f"{where}: commissions units of {len(gtins)} GTINs; one ILMD lot and expiry apply to "
                             "all units of an event, so split it by GTIN")
        gtin = sgtins[0].gtin
        assert gtin is not None
        lot, exp = _ilmd(ev, "lotNumber"), _ilmd(ev, "itemExpirationDate")
        if not isinstance(lot, str) or not isinstance(exp, str):
            raise EpcisError(f"{where}: ilmd: commissioning needs cbvmda:lotNumber and cbvmda:itemExpirationDate "
                             "(the DSCSA product identifier has a lot and an expiry)")
        try:
            body.update(gtin=gtin, lot_id=gs1.lot_id(keys(gtin), gtin, gs1.check_text(lot, "lot")),
                        expiry=gs1.expiry_from_iso(exp))
        except gs1.GS1Error as exc:
            raise EpcisError(f"{where}: ilmd: {exc}") from None
    else:
        scanned = {(e.gtin, e.lot) for e in sgtins if e.lot is not None}
        exps = {e.expiry for e in sgtins if e.expiry is not None}
        if len(scanned) == 1:
            g, lot = next(iter(scanned))
            assert g is not None and lot is not None
            body["lot_id"] = gs1.lot_id(keys(g), g, lot)
        elif len(scanned) > 1:
            warnings.append(f"{where}: its Digital Links carry {len(scanned)} different lots; lots not checked")
        if len(exps) == 1:
            body["expiry"] = next(iter(exps))
        elif len(exps) > 1:
            warnings.append(f"{where}: its Digital Links carry different expiries; expiry not checked")
    return Prepared(index, event_id, hash_uri, digest, body=body, warnings=tuple(warnings))


def prepare(doc: dict[str, Any], keys: IndexKeys, *, validate: bool = True,
            stop_on_error: bool = False) -> list[Prepared]:
    """Every event of ``doc``, validated, hashed and converted, in document order.

    A document-level problem (schema, context, hashing) raises EpcisError. An event that
    cannot be converted (unknown EPC scheme, missing index key, missing ILMD...) comes
    back with ``problem`` set, so an import can report it and go on; with
    ``stop_on_error`` it raises instead.
    """
    if validate:
        validate_document(doc)
    events = doc["epcisBody"]["eventList"]
    hashes = event_hashes(doc)
    id_to_hash = {ev["eventID"]: hash_digest(h) for ev, h in zip(events, hashes, strict=True)
                  if isinstance(ev.get("eventID"), str)}
    out = []
    for i, (ev, h) in enumerate(zip(events, hashes, strict=True)):
        try:
            out.append(convert_event(ev, i, h, keys, id_to_hash))
        except EpcisError as exc:
            if stop_on_error:
                raise
            out.append(Prepared(i, ev.get("eventID"), h, hash_digest(h), problem=str(exc)))
    return out


def batches(prepared: Sequence[Prepared], *, max_events: int = MAX_EVENTS_PER_TX,
            max_objects: int = MAX_EPCS_PER_TX) -> Iterator[list[Prepared]]:
    """Consecutive capture batches within the chain's per-tx limits (document order kept).

    Only events with a body go into batches; an error declaration is its own tx and
    comes out alone, in its place, so corrections follow what they correct.
    """
    batch: list[Prepared] = []
    objects = 0
    for p in prepared:
        if p.body is None:
            if p.error is not None:
                if batch:
                    yield batch
                    batch, objects = [], 0
                yield [p]
            continue
        n = len(p.body["epcs"]) + ("parent" in p.body)
        if batch and (len(batch) >= max_events or objects + n > max_objects):
            yield batch
            batch, objects = [], 0
        batch.append(p)
        objects += n
    if batch:
        yield batch
