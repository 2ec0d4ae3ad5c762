"""Shared vocabulary: transactions, headers, commits, blocks, genesis (frozen values)."""

from .block import (
    EMPTY_HASH as EMPTY_HASH,
    PRECOMMIT as PRECOMMIT,
    PREVOTE as PREVOTE,
    Block as Block,
    Commit as Commit,
    CommitSig as CommitSig,
    Header as Header,
    decode_block as decode_block,
    decode_commit as decode_commit,
    sign_commit_vote as sign_commit_vote,
    tx_root as tx_root,
    validators_hash as validators_hash,
    verify_commit as verify_commit,
    vote_payload as vote_payload,
)
from .genesis import Authority as Authority, Genesis as Genesis, Params as Params
from .tx import Tx as Tx, decode_tx as decode_tx, sign_tx as sign_tx, to_jsonable as to_jsonable
from .receipt import Receipt as Receipt, decode_receipt as decode_receipt, results_hash as results_hash
