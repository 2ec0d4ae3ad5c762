"""The module framework of the state machine: what a module declares, and to whom.

A module is a plug-in (DESIGN.md §2). It owns a state namespace (its ``name``) and
declares, as data:

* **tx types** ``<module>.<action>`` (:class:`TxSpec`): the typed body class
  (:mod:`medchaind.app.schema`), the handler, whether the sender must be a registered
  identity, whether the tx registers its sender (so the mempool lets the sender's next
  txs queue behind it), whether it carries a **blob sidecar** (:class:`BlobSpec`: the
  ciphertext travels beside the signed tx, bound by a hash field of the body) and its
  mempool **lane** (``priority`` for recalls, suspect-product notices, consent revocations:
  they are never delayed behind bulk traffic);
* **queries** (:class:`QuerySpec`): the parameter class, whether a missing ``time_ms``
  means the tip's block time, the message of a "not found" answer, and the JSON-RPC
  name (``<module>_<camelCaseName>`` unless given) plus old names kept as aliases; a
  query whose answer depends on *who asks* takes a :class:`QueryContext` (the chain id
  and the node's clock, which the caller cannot set) and checks a signed request with
  :func:`check_signed_request`;
* **subscription topics** it feeds (:class:`TopicSpec`): committed events carrying a
  field are pushed to subscribers filtering on that field's value;
* **host effects** (:meth:`Module.host_effects`): node-side work a committed event asks
  for (fetch a blob, shred a blob), and the blobs live state needs
  (:meth:`Module.live_blobs`);
* capabilities the framework asks every module for: whether a key is a registered
  sender (:meth:`Module.sender_registered`, identity answers), the authority set
  (:meth:`Module.authority_powers`, governance answers) and the tx that puts an
  equivocation on chain (:meth:`Module.evidence_tx`).

Handlers are pure: they read and write state only through their :class:`TxContext`, see
time only as the block's ``time_ms``, and fail by raising :class:`TxFailed`, which
discards every write of that tx (the sender's nonce is still consumed). Body classes are
decoded statelessly at mempool admission; the re-checks and the execution reuse that
typed body (:class:`BodyCache`) and decode again only the txs this node did not admit
(a block from a peer may carry txs this node never saw).

A module's client flows live in ``<package>.client`` (a ``HELPERS`` list of
:func:`medchaind.flows.helper` flows) and its CLI commands in ``<package>.cli``
(a click group named ``commands``): both are found by convention next to the module's
state machine, imported only by clients, so the pure part never imports click or I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, ClassVar

from .. import codec, crypto
from ..errors import MedchainError, NotFound
from .schema import Bytes, Field, FieldError, decode_body
from .state import StateOverlay, StateReader


class TxFailed(MedchainError):
    """Deterministic failure of a tx's handler; becomes the receipt's code and reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class QueryError(MedchainError):
    """A query refused: bad parameters, or an answer the caller may not have.

    ``code`` (optional) is a stable machine-readable reason a client can branch on; the
    node sends it as the JSON-RPC error's ``data.code``.
    """

    rpc_code = -32602

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """What a handler may know about the block it executes in."""

    chain_id: str
    height: int
    time_ms: int
    proposer: bytes


@functools.lru_cache(maxsize=1024)
def canonical_order(names: tuple[str, ...]) -> tuple[str, ...]:
    """Text map keys in canonical CBOR order (RFC 8949 §4.2.1: for text keys, shorter
    first, then bytewise; codec.py explains why): a map built in this order encodes the
    same with or without cbor2's canonical sort, and codec.encode skips the sort.

    Memoised: an emit site's field names are fixed by its code.
    """
    return tuple(sorted(names, key=lambda n: (len(n.encode()), n.encode())))


@dataclass(slots=True)
class TxContext:
    module: str
    state: StateOverlay
    block: BlockInfo
    sender: bytes
    tx_hash: bytes
    events: list[dict[str, Any]] = dc_field(default_factory=list)

    # own namespace
    def get(self, key: bytes) -> Any | None:
        raw = self.state.get(self.module, key)
        return None if raw is None else codec.decode_stored(raw)

    def put(self, key: bytes, value: Any) -> None:
        self.state.set(self.module, key, codec.encode(value))

    def put_built(self, key: bytes, value: Any) -> None:
        """:meth:`put` of a value the handler built in canonical key order from checked
        parts (:func:`codec.encode_built`'s contract: same bytes, no data-model walk)."""
        self.state.set(self.module, key, codec.encode_built(value))

    def delete(self, key: bytes) -> None:
        self.state.delete(self.module, key)

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]:
        for k, v in self.state.iterate(self.module, prefix):
            yield k, codec.decode_stored(v)

    # other modules' state, read-only
    def read(self, module: str, key: bytes) -> Any | None:
        raw = self.state.get(module, key)
        return None if raw is None else codec.decode_stored(raw)

    def emit(self, kind: str, /, **fields: Any) -> None:
        # the event map is built in canonical key order (docs/protocol.md §7 hashes the
        # events through canonical CBOR): then encoding a block's receipts for
        # ``results_hash`` takes codec.encode's plain path instead of cbor2's canonical
        # sort of every map, ~12 us per tx. The bytes are the same either way.
        fields.setdefault("type", f"{self.module}.{kind}")
        self.events.append({name: fields[name] for name in canonical_order(tuple(fields))})


@dataclass(frozen=True, slots=True)
class QueryContext:
    """What the host tells a query about where and when it answers; never from the caller.

    ``chain_id`` binds a signed request to this chain. ``time_ms`` is the node's "now":
    the time the next block would have if this node proposed it now (its clock, never
    before the tip's block time), the same time mempool admission judges txs at. A
    query judges freshness windows and permissions at this time, which a caller cannot
    move (unlike a ``time_ms`` parameter).
    """

    chain_id: str
    time_ms: int


Handler = Callable[[TxContext, Any], None]
#: ``handler(state, params)``, or ``handler(state, params, context)`` for a query that
#: declares ``context=True``
QueryHandler = Callable[..., Any]

#: mempool lanes, in the order proposals take from them
LANES = ("priority", "default")


@dataclass(frozen=True, slots=True)
class BlobSpec:
    """A tx that carries a sidecar (a ciphertext) outside its signed bytes.

    The body binds it: ``body.<hash_field>`` is the SHA-256 of the sidecar and, if
    given, ``body.<size_field>`` its length. ``required``: the tx is refused without it.
    """

    hash_field: str
    size_field: str | None = None
    max_size: int = 4 * 1024 * 1024
    required: bool = True


@dataclass(frozen=True, slots=True)
class TxSpec:
    body: type
    handler: Handler
    #: if False, the sender need not be a registered identity (e.g. registration itself)
    requires_identity: bool = True
    #: this tx registers its sender: later txs of the sender may queue behind it
    registers_sender: bool = False
    blob: BlobSpec | None = None
    lane: str = "default"
    #: whether the handler's pass/fail outcome may depend on the block it runs in
    #: (``ctx.block``'s height or time: a consent's period, a deadline, a key built from
    #: the height). Only a verdict counts: a handler that merely *stores* the height or
    #: time, whose reads and failures never depend on them, may say False. The mempool
    #: then re-checks a pending tx of this type after a block only if the block wrote a
    #: state key its last check read (or its sender's nonce); with True (the safe
    #: default) it re-checks it after every block (medchaind.mempool, docs/writing-a-module.md).
    verdict_reads_block: bool = True

    def __post_init__(self) -> None:
        if self.lane not in LANES:
            raise ValueError(f"lane must be one of {LANES}")

    def decode(self, body: Any) -> Any:
        """The typed body, or TxFailed("invalid_body") naming the field."""
        try:
            return decode_body(self.body, body)
        except FieldError as exc:
            raise TxFailed("invalid_body", str(exc)) from None


class BodyCache:
    """Typed tx bodies that passed admission, kept for the re-checks and the execution.

    Theory of operation. A tx's typed body (:meth:`TxSpec.decode`: the schema walk and the
    body class's ``check()``) is a pure function of the tx's type and its CBOR body, and a
    running node computes it three times for the same tx: at mempool admission, at the
    re-check after each block while the tx is the sender's next, and at execution (for a
    ``claims.submit`` ~50 us each, about a seventh of its execution). The app stores the
    result of a successful :meth:`App.check_tx` here under the tx's hash and reuses it.

    Invariants:

    * Only :meth:`App.check_tx` stores, and only once every check passed; a check that
      fails (bad body, nonce, sender, dry run) removes the tx's entry, so a body whose tx
      failed a check is never reused. Execution only reads.
    * A hit needs the same tx type and the very body object the entry was decoded from
      (``is``): a tx rebuilt with another body under a stale hash (``dataclasses.replace``)
      decodes afresh. Two txs with the same body bytes but different senders have
      different hashes (the hash covers sender and signature), hence separate entries;
      the typed body does not depend on the sender either way.
    * Typed bodies are immutable (frozen dataclasses, tuples, scalars: schema.py refuses
      mutable defaults), so a handler cannot change what a later use of the entry sees.
    * Bounded: at most ``capacity`` entries, oldest first out; the mempool calls
      :meth:`discard` when a tx leaves it (committed, dropped, evicted), so the cache
      holds about what the pool holds. A miss costs a decode, never a different result.
    """

    __slots__ = ("capacity", "_entries", "hits", "misses")

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("BodyCache capacity must be at least 1")
        self.capacity = capacity
        #: tx hash -> (tx type, raw body object, typed body); insertion order = age
        self._entries: dict[bytes, tuple[str, Any, Any]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._entries

    def get(self, tx_hash: bytes, tx_type: str, raw: Any) -> Any | None:
        """The typed body stored for this tx, or None."""
        e = self._entries.get(tx_hash)
        if e is not None and e[1] is raw and e[0] == tx_type:
            self.hits += 1
            return e[2]
        self.misses += 1
        return None

    def put(self, tx_hash: bytes, tx_type: str, raw: Any, typed: Any) -> None:
        entries = self._entries
        entries.pop(tx_hash, None)  # re-stored: youngest again
        entries[tx_hash] = (tx_type, raw, typed)
        while len(entries) > self.capacity:
            try:
                del entries[next(iter(entries))]
            except (KeyError, RuntimeError, StopIteration):  # another thread got there first
                break

    def discard(self, tx_hashes: Iterable[bytes]) -> None:
        """Forget ``tx_hashes`` (absent ones are ignored)."""
        pop = self._entries.pop
        for h in tx_hashes:
            pop(h, None)


@dataclass(frozen=True, slots=True)
class QuerySpec:
    handler: QueryHandler
    params: type
    #: a missing ``time_ms`` parameter means the tip's block time (the node fills it in)
    tip_time: bool = False
    #: a ``None`` answer becomes a NotFound error with this message
    not_found: str | None = None
    #: JSON-RPC method name; default ``<module>_<camelCase query name>``
    rpc: str | None = None
    #: older JSON-RPC names that keep working
    aliases: tuple[str, ...] = ()
    #: the handler takes a third argument, the :class:`QueryContext` (chain id, node clock)
    context: bool = False

    @property
    def doc(self) -> str:
        return (self.handler.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")

    def run(self, state: StateReader, params: Any, context: QueryContext) -> Any:
        """Call the handler with what it declared it takes."""
        if self.context:
            return self.handler(state, params, context)
        return self.handler(state, params)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A subscription topic fed by committed events that carry ``field``.

    A subscriber names one value (``{"topic": T, <field>: "0x…"}``); an event is pushed to
    it when ``event[field]`` equals that value, or contains it (a list field).
    """

    field: str
    doc: str = ""
    #: the subscriber's filter value, decoded from JSON (default: a 32-byte key as 0x-hex)
    param: Field = dc_field(default_factory=lambda: Bytes(32))


@dataclass(frozen=True, slots=True)
class WantBlob:
    """Host effect: this node should hold the blob with this SHA-256 (fetch it from peers)."""

    content_hash: bytes


@dataclass(frozen=True, slots=True)
class DropBlob:
    """Host effect: delete the blob with this SHA-256 from this node (erasure)."""

    content_hash: bytes


HostEffect = WantBlob | DropBlob


@dataclass(frozen=True, slots=True)
class Attach:
    """A query answer with a blob the host attaches, as 0x-hex under ``field`` (None if absent)."""

    value: dict[str, Any]
    content_hash: bytes
    field: str = "ciphertext"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


class Module:
    """Base class: subclasses set ``name`` and fill the declarations in ``__init__``."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self.txs: dict[str, TxSpec] = {}
        self.queries: dict[str, QuerySpec] = {}
        self.topics: dict[str, TopicSpec] = {}

    def rpc_name(self, query: str) -> str:
        spec = self.queries[query]
        return spec.rpc or f"{self.name}_{camel(query)}"

    @classmethod
    def package(cls) -> str:
        """The Python package holding this module (``client`` and ``cli`` live beside it)."""
        mod = cls.__module__
        return mod.rpartition(".")[0] if mod.endswith(".machine") else mod

    # -------------------------------------------------------------- state-machine hooks

    def genesis_writes(self, genesis: Any) -> dict[bytes, Any]:
        """Initial state of this module's namespace (key -> CBOR value)."""
        return {}

    def end_block(self, ctx: TxContext) -> None:
        """Runs after a block's txs (e.g. scheduled changes); ``ctx.sender`` is empty."""

    def sender_registered(self, state: StateReader, sender: bytes) -> bool:
        """Whether ``sender`` is a registered identity (the identity module answers)."""
        return False

    def authority_powers(self, state: StateReader) -> dict[bytes, int] | None:
        """The authority set and powers, if this module keeps it (governance)."""
        return None

    def evidence_tx(self, vote_a: dict[str, Any], vote_b: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """``(action, body)`` of the tx that commits an equivocation, if this module takes it."""
        return None

    # -------------------------------------------------------------- host hooks

    def host_effects(self, event: dict[str, Any]) -> Sequence[HostEffect]:
        """Node-side work a committed event of this module asks for."""
        return ()

    def live_blobs(self, state: StateReader) -> set[bytes]:
        """Blob hashes that committed state needs every node to hold."""
        return set()


def get_query(modules: dict[str, Module], path: str) -> tuple[Module, QuerySpec]:
    module, _, name = path.partition(".")
    mod = modules.get(module)
    if mod is None or name not in mod.queries:
        raise QueryError(f"unknown query {path!r}")
    return mod, mod.queries[name]


def not_found(spec: QuerySpec, answer: Any) -> Any:
    if answer is None and spec.not_found is not None:
        raise NotFound(spec.not_found)
    return answer


# ---------------------------------------------------------------- query helpers


def check_signed_request(
    context: QueryContext,
    domain: str,
    signer: bytes,
    request: dict[str, Any],
    sig: bytes,
    *,
    max_age_ms: int,
    max_ahead_ms: int,
    who: str = "the signer's key",
    how: str = "",
) -> None:
    """Raise :class:`QueryError` unless ``sig`` is ``signer``'s signature of ``request``
    for this chain and ``request["time_ms"]`` is fresh at the node's clock.

    The signed message is ``signing_message(domain, chain_id, enc(request))``
    (docs/protocol.md §2.2): canonical CBOR of the request map, so the caller sends its
    fields as plain parameters and both sides build the same bytes. Fresh means
    ``now - max_age_ms <= time_ms <= now + max_ahead_ms``. Codes: ``bad_signature``,
    ``stale_request``; ``who`` names the expected key and ``how`` (e.g. "see
    docs/protocol.md §18.5") ends each message.
    """
    hint = f" ({how})" if how else ""
    if not crypto.verify(signer, sig, domain, context.chain_id, codec.encode(request)):
        raise QueryError(
            f"bad signature: sig is not {who}'s signature of this request under "
            f"{domain!r} for chain {context.chain_id!r}{hint}",
            "bad_signature",
        )
    age = context.time_ms - int(request["time_ms"])
    if age > max_age_ms or -age > max_ahead_ms:
        raise QueryError(
            f"stale request: time_ms is {age} ms before the node's clock (accepted: "
            f"-{max_ahead_ms}..{max_age_ms}); sign a new request with the current time{hint}",
            "stale_request",
        )


def hex_or_none(b: bytes | None) -> str | None:
    return None if b is None else "0x" + b.hex()
