"""Sans-IO client flows: every client helper written once, driven by either client.

A client helper that talks to the node (register an identity, add a record, answer key
requests) is a **flow**: a generator that yields the JSON-RPC calls it needs
(:class:`Call`) and receives their results, and whose return value is the helper's
answer. It does no I/O itself, so one definition serves :class:`medchaind.client.Client`
(blocking) and :class:`medchaind.client.AsyncClient` (anyio), and a test can drive it
from a script of answers without a node. A driver sends each result back into the flow,
and *throws* each failure of a call (``RPCError``, ``TimeoutError``, ...) into it at the
``yield``, so a flow handles a refused call with an ordinary ``try``/``except``.

A module declares its client helpers with :func:`helper` in ``<package>.client`` and
lists them in ``HELPERS`` (docs/writing-a-module.md)::

    @helper
    def accredit(chain_id: str, authority: SigningKey, subject: bytes, role: str,
                 **kw: Any) -> Flow[dict[str, Any]]:
        \"\"\"``governance.accredit``: give ``subject`` a professional role.\"\"\"
        body = {"subject": subject, "role": role}
        return (yield from send_flow(chain_id, authority, "governance.accredit", body, **kw))

    @helper
    def identity(public_key: bytes | str) -> Flow[dict[str, Any]]:   # a single call is a flow too
        ident: dict[str, Any] = yield Call("identity_get", {"public_key": hexstr(public_key)})
        return ident

Both clients then have ``accredit(authority, subject, role, **kw)`` with this docstring:
a first parameter named ``chain_id`` is filled in by the client (it asks the node once),
and the method's signature is the flow's without it. ``@helper(loop=True)`` declares a
service loop whose flow is *one round* (see :class:`Helper`).

This module imports no trio, no sockets and no transport: the flows are pure apart from
the calls they yield (``read_record`` reads the monotonic clock for its deadline).
:data:`RPCError` (from :mod:`medchaind.errors`) is what a failed call raises into a flow.

**Verified answers.** A :class:`LightVerifier` holds what a client trusts: the chain id
and an authority set (from ``genesis.json``). :func:`verified_query_flow` asks the node
for an answer *with its proof* (``"prove": true``), fetches the header of the proof's
height and its commit, checks the commit's signatures against the trusted set, and
re-runs the query on the proven part of the state (:mod:`medchaind.app.proofs`); an
answer that the proof does not give raises :class:`~medchaind.errors.ProofError`.
:func:`verifying` applies this to every module query a flow makes, so every helper of
every module can be verified without being written twice (``Client(verifier=...)``).
"""

from __future__ import annotations

import base64
import inspect
import typing
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from . import codec
from .crypto import SigningKey
from .errors import NotFound, ProofError, TxDropped, ValidationError
from .errors import RPCError as RPCError
from .types import Commit, Genesis, Header, sign_tx, validators_hash, verify_commit

if typing.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .app import Module, QuerySpec

__all__ = [
    "Call",
    "Flow",
    "Helper",
    "LightVerifier",
    "RPCError",
    "helper",
    "hexstr",
    "ok",
    "send_flow",
    "submit_batches",
    "unhex",
    "proven_header_flow",
    "verified_nonce_flow",
    "verified_query_flow",
    "verifying",
    "wait_height_flow",
    "wait_tx_flow",
]

T = TypeVar("T")
P = ParamSpec("P")


def hexstr(b: bytes | str) -> str:
    """Bytes as the 0x-hex the JSON-RPC API takes (a str is passed through)."""
    return b if isinstance(b, str) else "0x" + b.hex()


def unhex(s: str) -> bytes:
    """0x-hex (or bare hex) from a JSON-RPC answer as bytes."""
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def ok(status: dict[str, Any]) -> bool:
    """Whether a tx status (from ``tx_wait``) carries a successful receipt."""
    return bool((status.get("receipt") or {}).get("ok"))


@dataclass(frozen=True, slots=True)
class Call:
    """One JSON-RPC call a flow needs; ``wait_s`` is how long the node may hold it."""

    method: str
    params: Any = None
    wait_s: float = 0.0

    def timeout(self, default: float | None) -> float | None:
        """The transport timeout: the client's default, stretched for a long poll."""
        if not self.wait_s:
            return None  # the client's default applies
        return None if default is None else max(default, self.wait_s + 5)


#: A flow: yields :class:`Call` requests, is sent their results, returns a ``T``.
Flow = Generator[Call, Any, T]


# ---------------------------------------------------------------------- transport flows


def drive(flow: Flow[T], answer: Callable[[Call], Any],
          errors: type[BaseException] | tuple[type[BaseException], ...] = Exception) -> T:
    """Run ``flow`` to its end in-process: each call is answered by ``answer(call)``, and
    an exception of ``errors`` it raises is thrown into the flow (as the clients do with
    a failed call). For harnesses and tests; the clients add timeouts and waits."""
    try:
        call = next(flow)
        while True:
            try:
                result = answer(call)
            except errors as exc:
                call = flow.throw(exc)
            else:
                call = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def wait_tx_flow(tx_hash: bytes | str, timeout_ms: int) -> Flow[dict[str, Any]]:
    """Wait until the tx is committed (or the timeout passes); its status. Raises
    :class:`~medchaind.errors.TxDropped` if the node's mempool dropped it instead."""
    status: dict[str, Any] = yield Call(
        "tx_wait", {"hash": hexstr(tx_hash), "timeout_ms": timeout_ms}, wait_s=timeout_ms / 1000
    )
    if status.get("status") == "dropped":
        raise TxDropped(str(status.get("hash", hexstr(tx_hash))), str(status.get("reason")))
    return status


#: what one ``tx_submitBatch`` call carries at most (the node's MAX_BATCH_TXS and
#: MAX_BATCH_TX_BYTES / MAX_BATCH_BLOB_BYTES, in docs/client-guide.md)
BATCH_TXS, BATCH_TX_BYTES, BATCH_BLOB_BYTES = 1000, 8 * 1024 * 1024, 12 * 1024 * 1024


def submit_batches(txs: Sequence[Any], blobs: Sequence[bytes | None] | None = None) -> list[dict[str, str]]:
    """The ``tx_submitBatch`` params for ``txs`` (each a Tx or its encoded bytes) and
    their optional sidecars (aligned by index, None for none): as few calls as the
    node's per-call limits allow, in order. Each ``txs`` is the base64 of the canonical
    CBOR array of the encoded txs."""
    raws = [t if isinstance(t, bytes) else t.encoded for t in txs]
    if blobs is not None and len(blobs) != len(raws):
        raise ValueError(f"{len(blobs)} blobs for {len(raws)} txs: give one per tx (None for none)")
    out: list[dict[str, str]] = []
    start = 0
    while start < len(raws):
        end, size, bsize = start, 0, 0
        while end < len(raws) and end - start < BATCH_TXS:
            blob_len = len(blobs[end] or b"") if blobs is not None else 0
            # 9 bytes of CBOR head per item at most, on top of the bytes themselves
            if end > start and (size + len(raws[end]) + 9 > BATCH_TX_BYTES or bsize + blob_len + 9 > BATCH_BLOB_BYTES):
                break
            size += len(raws[end]) + 9
            bsize += blob_len + 9
            end += 1
        params = {"txs": base64.b64encode(codec.encode(raws[start:end])).decode()}
        if blobs is not None:
            params["blobs"] = base64.b64encode(codec.encode(list(blobs[start:end]))).decode()
        out.append(params)
        start = end
    return out


def wait_height_flow(height: int, timeout_ms: int) -> Flow[dict[str, Any] | None]:
    """Wait until the chain reaches ``height`` (or the timeout passes); the head."""
    head: dict[str, Any] | None = yield Call(
        "chain_waitHeight", {"height": height, "timeout_ms": timeout_ms}, wait_s=timeout_ms / 1000
    )
    return head


def send_flow(
    chain_id: str, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None,
    wait: bool = True, timeout_ms: int = 30_000, blob: bytes | None = None,
) -> Flow[dict[str, Any]]:
    """Build, sign and submit a tx; with ``wait`` its committed status and receipt.

    Without ``nonce`` the node is asked for the sender's next one (committed plus
    contiguous pending). ``blob`` is the tx's sidecar (e.g. a record's ciphertext).
    """
    if nonce is None:
        nonce = int((yield Call("tx_nonce", {"sender": hexstr(key.public_key)}))["next"])
    tx = sign_tx(key, chain_id, type_, nonce, body)
    params = {"tx": hexstr(tx.encoded)}
    if blob is not None:
        params["blob"] = hexstr(blob)
    h = yield Call("tx_submit", params)
    if not wait:
        return {"hash": h, "status": "pending"}
    return (yield from wait_tx_flow(h, timeout_ms))


# ---------------------------------------------------------------------- helpers


def _public_return(annotation: Any) -> Any:
    """``Flow[X]`` -> ``X`` (the annotation of what the client method returns)."""
    if isinstance(annotation, str):  # postponed annotations: the source text
        if annotation.startswith("Flow[") and annotation.endswith("]"):
            return annotation[len("Flow[") : -1]
        return inspect.Signature.empty
    args = typing.get_args(annotation)
    return args[2] if typing.get_origin(annotation) is Generator and len(args) == 3 else inspect.Signature.empty


@dataclass(frozen=True, slots=True)
class Helper(Generic[P, T]):
    """One client helper: a flow function that both clients turn into a method.

    ``needs_chain_id``: the flow's first parameter is ``chain_id``; the client passes its
    chain id and the method does not show the parameter.

    ``loop``: a service loop (a custodian, a watcher). The flow is **one round** and must
    end by waiting for something on the node (e.g. the next block); :class:`~medchaind.
    client.Client` repeats rounds until its extra keyword argument ``stop()`` returns
    true (default: forever), :class:`~medchaind.client.AsyncClient` until cancelled.
    The round's return value is dropped.

    Calling a ``Helper`` calls the flow function itself (e.g. to drive it in a test).
    """

    fn: Callable[P, Flow[T]]
    name: str
    needs_chain_id: bool
    loop: bool = False

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Flow[T]:
        return self.fn(*args, **kwargs)

    def flow(self, chain_id: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Flow[T]:
        """The flow of one method call (or one round of a loop)."""
        if self.needs_chain_id:
            return self.fn(chain_id, *args, **kwargs)  # type: ignore[arg-type]
        return self.fn(*args, **kwargs)

    def signature(self) -> inspect.Signature:
        """The client method's signature, without ``self``: no ``chain_id``, returns ``X``
        for ``Flow[X]`` (``None`` for a loop)."""
        sig = inspect.signature(self.fn)
        params = list(sig.parameters.values())[1 if self.needs_chain_id else 0 :]
        ret = None if self.loop else _public_return(sig.return_annotation)
        return sig.replace(parameters=params, return_annotation=ret)


@overload
def helper(fn: Callable[P, Flow[T]], /) -> Helper[P, T]: ...
@overload
def helper(*, loop: bool = False, name: str | None = None) -> Callable[[Callable[P, Flow[T]]], Helper[P, T]]: ...
def helper(
    fn: Callable[P, Flow[T]] | None = None, /, *, loop: bool = False, name: str | None = None
) -> Helper[P, T] | Callable[[Callable[P, Flow[T]]], Helper[P, T]]:
    """Declare a client helper: ``@helper`` or ``@helper(loop=True, name=...)``.

    The function must be a generator (a helper that is one call is ``yield Call(...)``
    once); its name (or ``name``) is the client method's name.
    """

    def declare(f: Callable[P, Flow[T]]) -> Helper[P, T]:
        method = name or f.__name__
        if not inspect.isgeneratorfunction(f):
            raise TypeError(f"client helper {method!r}: {f.__qualname__} must be a generator (yield Call(...))")
        if not method.isidentifier() or method.startswith("_"):
            raise ValueError(f"client helper {method!r}: the name must be a public identifier")
        params = inspect.signature(f).parameters
        if loop and "stop" in params:
            raise ValueError(f"client helper {method!r}: a loop's 'stop' parameter belongs to the blocking client")
        needs_chain_id = next(iter(params), None) == "chain_id"
        return Helper(fn=f, name=method, needs_chain_id=needs_chain_id, loop=loop)

    return declare if fn is None else declare(fn)


# ---------------------------------------------------------------------- verified answers

_HASH_FIELDS = ("prev_hash", "tx_root", "app_hash", "results_hash", "validators_hash", "proposer",
                "last_commit_hash")


def header_from_json(doc: Any) -> Header:
    """A header from its JSON-RPC form (``chain_getBlock``'s ``header``); ProofError if malformed."""
    try:
        m = {k: doc[k] for k in ("chain", "height", "round", "time_ms", *_HASH_FIELDS)}
        for k in _HASH_FIELDS:
            m[k] = unhex(m[k])
        return Header.from_map(m)
    except (KeyError, TypeError, ValueError, AttributeError, ValidationError) as exc:
        raise ProofError(f"the node sent a malformed header: {exc}") from None


def commit_from_json(doc: Any) -> Commit:
    """A commit from its JSON-RPC form; ProofError if malformed."""
    try:
        sigs = [[unhex(x["validator"]), unhex(x["signature"])] for x in doc["signatures"]]
        return Commit.from_map({"height": doc["height"], "round": doc["round"],
                                "block_hash": unhex(doc["block_hash"]), "signatures": sigs})
    except (KeyError, TypeError, ValueError, AttributeError, ValidationError) as exc:
        raise ProofError(f"the node sent a malformed commit: {exc}") from None


class LightVerifier:
    """What a verifying client trusts, and the header checks it makes (docs/protocol.md §23.5).

    ``powers`` is the authority set the client trusts (from ``genesis.json``, or one it
    verified later). A header is believed when its commit carries valid precommits of
    more than 2/3 of the power of the set that signs it, and that set is the trusted one;
    or, after authority changes, when the node names the header's set (it must hash to
    the header's ``validators_hash``), more than 2/3 of that set signed, *and* signers
    holding more than 1/3 of the trusted set's power are among them (so at least one
    trusted authority vouches for it, as in Tendermint's light client). The trusted set
    then moves to the header's set. Verified headers are kept by height (a few).

    ``modules`` are the state machine's modules, whose query rules a proof is checked
    with; default: the registry's.
    """

    MAX_HEADERS = 64

    def __init__(self, chain_id: str, powers: Mapping[bytes, int], modules: Sequence[Module] | None = None) -> None:
        from .app.proofs import query_index

        if modules is None:
            from .modules import load_modules

            modules = load_modules()
        self.chain_id = chain_id
        self.powers = dict(powers)
        self.queries = query_index(modules)
        self.headers: dict[int, Header] = {}

    @classmethod
    def from_genesis(cls, genesis: Genesis, modules: Sequence[Module] | None = None) -> LightVerifier:
        return cls(genesis.chain_id, genesis.powers(), modules)

    def proves(self, method: str) -> bool:
        """Whether ``method`` is a module query (whose answers can be proven)."""
        return method in self.queries

    def spec(self, method: str) -> QuerySpec:
        return self.queries[method][1]

    def verify_header(self, header: Header, commit: Commit,
                      validators: Mapping[bytes, int] | None = None) -> None:
        """Raise ProofError unless ``commit`` makes ``header`` final (see the class doc)."""
        if header.chain != self.chain_id:
            raise ProofError(f"the header is of chain {header.chain!r}, not {self.chain_id!r}")
        block_hash = header.hash()
        if commit.height != header.height or commit.block_hash != block_hash:
            raise ProofError("the commit the node sent is not for that header")
        trusted = validators_hash(self.powers) == header.validators_hash
        signers = self.powers if trusted else validators
        if signers is None:
            raise ProofError(
                f"block {header.height} is signed by an authority set this client does not trust "
                "and the node did not name it; verify against a newer trusted set (genesis.json "
                "is out of date after authority changes)")
        if not trusted and validators_hash(dict(signers)) != header.validators_hash:
            raise ProofError("the authority set the node named is not the header's")
        try:
            verify_commit(commit, self.chain_id, dict(signers), block_hash, header.height)
        except ValidationError as exc:
            raise ProofError(f"block {header.height} is not final: {exc}") from None
        if not trusted:
            vouched = sum(self.powers.get(s.validator, 0) for s in commit.signatures)
            if 3 * vouched <= sum(self.powers.values()):
                raise ProofError(f"block {header.height} is signed by a set that fewer than 1/3 of "
                                 "the trusted authorities belong to; this client cannot follow the change")
            self.powers = dict(signers)
        if len(self.headers) >= self.MAX_HEADERS:
            self.headers.pop(min(self.headers))
        self.headers[header.height] = header


def _validators(doc: Any) -> dict[bytes, int] | None:
    if doc is None:
        return None
    try:
        return {unhex(k): int(p) for k, p in doc}
    except (TypeError, ValueError, AttributeError):
        raise ProofError("the proof's validators are malformed") from None


def verified_query_flow(verifier: LightVerifier, method: str, params: Any = None) -> Flow[Any]:
    """Call module query ``method`` with a proof and return the answer the proof gives.

    Raises ProofError when the header, its commit, the witness or the answer does not
    check out (the node lied or sent too little), and the RPCError "not found" (-32020)
    for a proven absence of a query that declares one, as the unproven call would.
    """
    from .app.proofs import PROVE_PARAM, Witness, WitnessState, check_answer, replay_query

    spec = verifier.spec(method)
    asked = dict(params or {})
    resp = yield Call(method, {**asked, PROVE_PARAM: True})
    if not isinstance(resp, dict) or "result" not in resp or not isinstance(resp.get("proof"), dict):
        raise ProofError(f"the node answered {method} without a proof")
    proof = resp["proof"]
    header = yield from proven_header_flow(verifier, proof)
    witness = Witness.from_json(proof)
    context_ms = proof.get("context_time_ms")
    if context_ms is not None and (type(context_ms) is not int or context_ms < header.time_ms):
        raise ProofError("the proof's context time is before its block")
    replayed = replay_query(spec, verifier.chain_id, asked, WitnessState(header.app_hash, witness),
                            tip_time_ms=header.time_ms, context_time_ms=context_ms)
    answer = check_answer(replayed, resp["result"])
    if answer is None and spec.not_found is not None:
        raise RPCError(NotFound.rpc_code, spec.not_found)
    return answer


def proven_header_flow(verifier: LightVerifier, proof: dict[str, Any]) -> Flow[Header]:
    """The header of a proof's ``height``, fetched and checked (§23.5) unless the
    verifier already holds it; its ``app_hash`` must be the proof's."""
    height = proof.get("height")
    if type(height) is not int or height < 1:
        raise ProofError("the proof names no committed block (the chain has no block yet?)")
    header = verifier.headers.get(height)
    if header is None:
        block = yield Call("chain_getBlock", {"height": height})
        if not isinstance(block, dict) or block.get("commit") is None:
            raise ProofError(f"the node has no commit for block {height}")
        header = header_from_json(block.get("header"))
        if header.height != height:
            raise ProofError("the node sent the header of another height")
        verifier.verify_header(header, commit_from_json(block["commit"]), _validators(proof.get("validators")))
    if proof.get("app_hash") not in (None, hexstr(header.app_hash)):
        raise ProofError("the proof's app_hash is not the header's")
    return header


def verified_nonce_flow(verifier: LightVerifier, sender: bytes | str, height: int | None = None) -> Flow[int]:
    """A sender's committed nonce (its number of committed txs), proven: ``tx_nonce``
    with ``"prove": true`` (at ``height``, or the node's head) and the proof of
    ``auth/n/<sender>`` checked against a header the verifier accepts (membership: the
    8-byte nonce; absence: 0). ProofError if the node's answer is not what it proves."""
    from .app.app import NONCE_NS, nonce_key
    from .app.proofs import Witness, verify_key

    pk = unhex(sender) if isinstance(sender, str) else sender
    params: dict[str, Any] = {"sender": hexstr(pk), "prove": True}
    if height is not None:
        params["height"] = height
    resp = yield Call("tx_nonce", params)
    if not isinstance(resp, dict) or not isinstance(resp.get("proof"), dict):
        raise ProofError("the node answered tx_nonce without a proof")
    proof = resp["proof"]
    if height is not None and proof.get("height") != height:
        raise ProofError(f"the node proved height {proof.get('height')}, not {height}")
    header = yield from proven_header_flow(verifier, proof)
    raw = verify_key(header.app_hash, NONCE_NS, nonce_key(pk), Witness.from_json(proof))
    if raw is not None and len(raw) != 8:
        raise ProofError("the proven nonce is not 8 bytes")
    nonce = 0 if raw is None else int.from_bytes(raw, "big")
    if resp.get("committed") != nonce:
        raise ProofError(f"the node says nonce {resp.get('committed')}, its proof shows {nonce}")
    return nonce


def verifying(flow: Flow[T], verifier: LightVerifier) -> Flow[T]:
    """``flow`` with every module query it makes answered by :func:`verified_query_flow`.

    Other calls (txs, waits, chain reads) and calls that already ask for a proof pass
    through unchanged. A ProofError is raised into the flow like any failed call, so a
    helper that does not handle it fails with it.
    """
    from .app.proofs import PROVE_PARAM

    try:
        call = next(flow)
        while True:
            try:
                asks = isinstance(call.params, dict) and PROVE_PARAM in call.params
                if verifier.proves(call.method) and not asks:
                    result = yield from verified_query_flow(verifier, call.method, call.params)
                else:
                    result = yield call
            except Exception as exc:  # the flow decides, as with any failed call
                call = flow.throw(exc)
            else:
                call = flow.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
