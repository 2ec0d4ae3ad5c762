"""``admits_proposal``: the host asks the core before it judges valid(v) (executes a
block), so only proposals the core will file cost an execution and a cache entry.

Cast of four, A-D; at height 1 "B" proposes round 0, "C" round 1, "D" round 2, "A" round 3.
"""

from __future__ import annotations

from medchaind.core import admits_proposal
from medchaind.testing.cast import Cast
from medchaind.testing.script import ScriptHost

C = Cast(4)


def test_nothing_is_admitted_before_the_height_starts() -> None:
    host = ScriptHost(C, "A")
    assert not admits_proposal(host.state, C.proposal("B", 1, 0, "X"))


def test_only_the_proposer_of_the_round_is_admitted() -> None:
    host = ScriptHost(C, "A")
    host.feed(host.start())
    assert admits_proposal(host.state, C.proposal("B", 1, 0, "X"))  # L22: from proposer(h, r)
    for who in "ACD":
        assert not admits_proposal(host.state, C.proposal(who, 1, 0, "X"))
    assert admits_proposal(host.state, C.proposal("C", 1, 1, "X"))  # a catch-up round of C's
    assert not admits_proposal(host.state, C.proposal("B", 2, 0, "X"))  # another height


def test_a_second_proposal_of_a_round_and_a_re_send_are_not_admitted() -> None:
    host = ScriptHost(C, "A")
    host.feed(host.start())
    host.feed(host.proposal("B", 0, "X"))
    assert not admits_proposal(host.state, C.proposal("B", 1, 0, "X"))  # already filed
    assert not admits_proposal(host.state, C.proposal("B", 1, 0, "Y"))  # unjustified equivocation


def test_catch_up_rounds_are_limited_per_proposer() -> None:
    host = ScriptHost(C, "A")
    host.feed(host.start())
    # C proposes in rounds 1, 5, 9, ...: two catch-up rounds are kept, a third is not
    host.feed(host.proposal("C", 1, "X"))
    host.feed(host.proposal("C", 5, "Y"))
    assert not admits_proposal(host.state, C.proposal("C", 1, 9, "Z"))


def test_nothing_is_admitted_once_the_height_is_decided() -> None:
    host = ScriptHost(C, "A")
    host.feed(host.start())
    host.feed(host.proposal("B", 0, "X"))
    for who in "BCD":
        host.feed(host.precommit(who, 0, "X"))
    assert host.state.decision is not None
    assert not admits_proposal(host.state, C.proposal("C", 1, 1, "Y"))  # L49 is done
