"""One signed object, one encoding: integer fields never accept a CBOR boolean.

CBOR ``true``/``false`` decode to Python's ``True``/``False``, and ``bool`` is a subclass
of ``int`` with ``True == 1``. A decoder that checks ``x in (1, 2)`` or
``isinstance(x, int)`` therefore took ``{"kind": true}`` as a prevote: the same signed
vote then had two encodings (``1`` and ``true``), two hashes and two gossip ids, and the
signature verified for both because the payload is rebuilt from the decoded value
(issue 9, defect 9). Every decoder of a message that carries a vote or proposal field,
or another integer a peer controls, is checked here with both booleans in each integer
field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medchaind import codec, core
from medchaind.consensus import wire
from medchaind.consensus.wal import WAL, entry_from_map, message_from_map, message_to_map
from medchaind.core import PolkaRecord, decode_proposal, decode_vote, verify_vote
from medchaind.errors import DecodeError, MedchainError, StoreError, ValidationError
from medchaind.sync import wire as sync_wire
from medchaind.testing.cast import TEST_CHAIN_ID, Cast
from medchaind.types import decode_commit

C = Cast(4)
BOOLS = [True, False]


def with_field(m: dict[str, Any], field: str, value: object) -> dict[str, Any]:
    out = dict(m)
    out[field] = value
    return out


def test_a_vote_whose_kind_is_true_is_one_more_encoding_of_a_signed_prevote() -> None:
    """The defect itself: the boolean encoding verifies, so it must not decode."""
    v = C.prevote("A", 3, 1, "X")
    forged = codec.encode(with_field(v.to_map(), "kind", True))
    assert forged != v.encode()
    assert verify_vote(TEST_CHAIN_ID, core.Vote(core.VoteKind(True), v.height, v.round, v.block_hash,
                                                 v.validator, v.signature))  # same payload
    with pytest.raises(DecodeError, match="kind"):
        decode_vote(forged)


@pytest.mark.parametrize("field", ["kind", "height", "round"])
@pytest.mark.parametrize("value", BOOLS)
def test_decode_vote_rejects_a_boolean_integer(field: str, value: bool) -> None:
    v = C.precommit("B", 2, 1, "X")
    with pytest.raises(DecodeError):
        decode_vote(codec.encode(with_field(v.to_map(), field, value)))


@pytest.mark.parametrize("field", ["height", "round", "pol_round"])
@pytest.mark.parametrize("value", BOOLS)
def test_decode_proposal_rejects_a_boolean_integer(field: str, value: bool) -> None:
    p = C.proposal("C", 2, 1, "X", pol_round=0)
    with pytest.raises(DecodeError):
        decode_proposal(codec.encode(with_field(p.to_map(), field, value)))


@pytest.mark.parametrize("field", ["kind", "height", "round"])
@pytest.mark.parametrize("value", BOOLS)
def test_the_consensus_topic_rejects_a_vote_with_a_boolean_integer(field: str, value: bool) -> None:
    m = {"t": "vote", **with_field(C.prevote("D", 2, 0, None).to_map(), field, value)}
    with pytest.raises(MedchainError):
        wire.decode_consensus(codec.encode(m))


@pytest.mark.parametrize("field", ["height", "round", "pol_round"])
@pytest.mark.parametrize("value", BOOLS)
def test_the_consensus_topic_rejects_a_proposal_with_a_boolean_integer(field: str, value: bool) -> None:
    # the message part of a proposal on the consensus topic (its block is decoded apart)
    m = {"t": "proposal", **with_field(C.proposal("B", 1, 1, "X", pol_round=0).to_map(), field, value)}
    with pytest.raises(ValidationError):
        message_from_map(m)


@pytest.mark.parametrize("value", BOOLS)
def test_the_consensus_topic_rejects_a_boolean_resend_counter(value: bool) -> None:
    m = {"t": "vote", **C.prevote("A", 2, 0, None).to_map(), "resend": value}
    with pytest.raises(DecodeError, match="resend"):
        wire.decode_consensus(codec.encode(m))


@pytest.mark.parametrize("value", BOOLS)
def test_a_wal_vote_or_proof_of_lock_with_a_boolean_integer_is_refused(value: bool) -> None:
    vote = C.prevote("A", 1, 0, "X")
    with pytest.raises(ValidationError):
        entry_from_map({"t": "vote", **with_field(vote.to_map(), "kind", value)})
    polka = message_to_map(PolkaRecord(core.Height(1), core.Round(0), C.block("X"), (vote,)))
    for field in ("height", "round"):
        with pytest.raises(ValidationError):
            entry_from_map(with_field(polka, field, value))
    bad_vote = with_field(vote.to_map(), "kind", value)
    with pytest.raises(ValidationError):
        entry_from_map(with_field(polka, "votes", [bad_vote]))


def test_a_wal_file_with_a_boolean_vote_kind_is_an_error_not_a_prevote(tmp_path: Path) -> None:
    path = tmp_path / "consensus.wal"
    rec = codec.encode({"h": 1, "m": {"t": "vote", **with_field(C.prevote("A", 1, 0, "X").unsigned().to_map(),
                                                                   "kind", True)}})
    path.write_bytes(len(rec).to_bytes(4, "big") + rec + len(rec).to_bytes(4, "big") + rec)
    with pytest.raises(StoreError, match="kind"):
        WAL(path)


@pytest.mark.parametrize("value", BOOLS)
def test_the_sync_decoders_reject_boolean_integers(value: bool) -> None:
    head = bytes(32)
    with pytest.raises(DecodeError):
        sync_wire.decode_announce(codec.encode({"height": value, "hash": head}))
    with pytest.raises(DecodeError):
        sync_wire.decode_status(codec.encode({"height": value, "hash": head}))
    for field in ("from", "to"):
        req = with_field({"op": "blocks", "from": 1, "to": 1}, field, value)
        with pytest.raises(DecodeError):
            sync_wire.decode_sync_request(codec.encode(req))


@pytest.mark.parametrize("field", ["height", "round"])
@pytest.mark.parametrize("value", BOOLS)
def test_a_commit_with_a_boolean_integer_is_refused(field: str, value: bool) -> None:
    votes = tuple(C.precommit(w, 4, 2, "X") for w in "ABD")
    d = core.Decide(core.Height(4), core.Round(2), C.block("X"), C.proposal("B", 4, 2, "X"), votes)
    m = d.to_commit().to_map()
    with pytest.raises(DecodeError):
        decode_commit(codec.encode(with_field(m, field, value)))


@pytest.mark.parametrize("field", ["kind", "height", "round"])
@pytest.mark.parametrize("value", BOOLS)
def test_equivocation_evidence_rejects_a_boolean_integer_in_either_vote(field: str, value: bool) -> None:
    """The governance module's evidence body (docs/protocol.md §15.3) decodes votes with
    its own schema; the same trap applies there."""
    from medchaind.app.schema import FieldError, decode_body
    from medchaind.modules.governance.machine import Evidence

    a, b = C.prevote("A", 5, 0, None), C.prevote("A", 5, 0, "X")
    ok = {"vote_a": a.to_map(), "vote_b": b.to_map()}
    decode_body(Evidence, ok)
    for which in ("vote_a", "vote_b"):
        bad = dict(ok)
        bad[which] = with_field(ok[which], field, value)
        with pytest.raises(FieldError):
            decode_body(Evidence, bad)
