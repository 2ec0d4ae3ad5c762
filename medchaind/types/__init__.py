"""Shared vocabulary: transactions, headers, commits, blocks, genesis (frozen values)."""

from .block import (
    EMPTY_HASH as EMPTY_HASH,
)
from .block import (
    PRECOMMIT as PRECOMMIT,
)
from .block import (
    PREVOTE as PREVOTE,
)
from .block import (
    Block as Block,
)
from .block import (
    Commit as Commit,
)
from .block import (
    CommitSig as CommitSig,
)
from .block import (
    Header as Header,
)
from .block import (
    decode_block as decode_block,
)
from .block import (
    decode_commit as decode_commit,
)
from .block import (
    sign_commit_vote as sign_commit_vote,
)
from .block import (
    tx_root as tx_root,
)
from .block import (
    validators_hash as validators_hash,
)
from .block import (
    verify_commit as verify_commit,
)
from .block import (
    vote_payload as vote_payload,
)
from .genesis import Authority as Authority
from .genesis import Genesis as Genesis
from .genesis import Params as Params
from .receipt import Receipt as Receipt
from .receipt import decode_receipt as decode_receipt
from .receipt import results_hash as results_hash
from .tx import Tx as Tx
from .tx import decode_tx as decode_tx
from .tx import sign_tx as sign_tx
from .tx import to_jsonable as to_jsonable
