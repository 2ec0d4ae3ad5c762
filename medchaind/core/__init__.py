"""The pure BFT consensus core (Tendermint, DESIGN.md §4).

Synchronous and pure: no trio, no sockets, no clock, no disk, no randomness, no floats.
A host (the consensus service; in tests :mod:`medchaind.testing.sim`) owns the I/O and
drives the core with :func:`apply`::

    state = initial_state(my_public_key, TimeoutConfig())
    state, effects = apply(state, StartHeight(height, validators, wal=entries))

then carries out ``effects`` in order and feeds back inputs: verified peer messages,
its own signed messages, expired timeouts, built blocks. :mod:`.driver` documents the
host loop; :mod:`.round_machine` the theory of operation; :mod:`.state` the WAL and
last-signed guard.
"""

from .driver import admits_proposal as admits_proposal
from .driver import apply as apply
from .driver import next_event as next_event
from .effects import Broadcast as Broadcast
from .effects import Decide as Decide
from .effects import Effect as Effect
from .effects import EvidenceFound as EvidenceFound
from .effects import RequestValue as RequestValue
from .effects import ScheduleTimeout as ScheduleTimeout
from .effects import SignProposal as SignProposal
from .effects import SignVote as SignVote
from .effects import WALAppend as WALAppend
from .inputs import BlockReady as BlockReady
from .inputs import Input as Input
from .inputs import ProposalReceived as ProposalReceived
from .inputs import StartHeight as StartHeight
from .inputs import TimeoutFired as TimeoutFired
from .inputs import VoteReceived as VoteReceived
from .messages import NIL_ROUND as NIL_ROUND
from .messages import BlockHash as BlockHash
from .messages import Ed25519Signer as Ed25519Signer
from .messages import Height as Height
from .messages import Message as Message
from .messages import PolkaRecord as PolkaRecord
from .messages import Proposal as Proposal
from .messages import Round as Round
from .messages import Signer as Signer
from .messages import ValidatorId as ValidatorId
from .messages import Vote as Vote
from .messages import VoteKind as VoteKind
from .messages import WALEntry as WALEntry
from .messages import decode_proposal as decode_proposal
from .messages import decode_vote as decode_vote
from .messages import proposal_payload as proposal_payload
from .messages import sign_proposal as sign_proposal
from .messages import sign_vote as sign_vote
from .messages import verify_proposal as verify_proposal
from .messages import verify_vote as verify_vote
from .proposals import ProposalKeeper as ProposalKeeper
from .proposals import ProposalRecord as ProposalRecord
from .state import LastSigned as LastSigned
from .state import State as State
from .state import Step as Step
from .state import initial_state as initial_state
from .timeouts import TimeoutConfig as TimeoutConfig
from .timeouts import TimeoutKind as TimeoutKind
from .validators import Validator as Validator
from .validators import ValidatorSet as ValidatorSet
from .votes import AddOutcome as AddOutcome
from .votes import Evidence as Evidence
from .votes import Quorum as Quorum
from .votes import VoteKeeper as VoteKeeper
