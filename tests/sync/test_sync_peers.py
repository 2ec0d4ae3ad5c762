"""The peer book of sync (sync/peers.py): claims are claims, faults ban, and no single
peer sets the target."""

from __future__ import annotations

from medchaind.sync.peers import BAN_S, MAX_BAN_S, PeerBook

H = b"\x11" * 32
LIE = 2**62


def test_the_target_is_the_k_th_highest_claim_so_one_liar_cannot_set_it() -> None:
    book = PeerBook()
    for p, h in (("a", 25), ("b", 25), ("c", 24), ("liar", LIE)):
        book.note_claim(p, h, H)
    peers = ["a", "b", "c", "liar"]
    assert book.corroborated(peers, 2) == 25
    assert book.corroborated(["a", "liar"], 2) == 25
    assert book.corroborated(["liar"], 2) == 0  # alone, a claim is not corroborated
    assert book.corroborated(peers, 3) == 25 and book.corroborated(peers, 4) == 24


def test_an_announcement_raises_a_claim_a_status_replaces_it() -> None:
    book = PeerBook()
    book.note_announce("a", 10, H)
    book.note_announce("a", 8, H)
    assert book.claim("a").height == 10  # type: ignore[union-attr]
    book.note_claim("a", 9, H)
    assert book.claim("a").height == 9  # type: ignore[union-attr]


def test_only_a_peer_that_answered_a_status_has_reported_its_head() -> None:
    """A late announcement (gossip sends a new peer the recent ones again) is a claim
    but not a report: status --wait-sync once judged a restarted node caught up at
    height 2 from announcements of 2 and 3 while its peers were at 5."""
    book = PeerBook()
    book.note_announce("a", 2, H)
    assert book.claim("a").height == 2 and book.reported("a") is None  # type: ignore[union-attr]
    book.note_claim("a", 5, H)
    assert book.reported("a").height == 5  # type: ignore[union-attr]
    book.note_announce("a", 6, H)
    assert book.reported("a").height == 6  # type: ignore[union-attr]  # raised after the answer
    book.forget([])  # disconnected: asked again when it is back
    book.note_announce("a", 7, H)
    assert book.reported("a") is None
    book.note_claim("a", 7, H)
    book.fault("a", now=1.0)
    book.note_announce("a", 8, H)
    assert book.reported("a") is None


def test_a_fault_bans_for_longer_each_time_and_forgets_the_claim() -> None:
    book = PeerBook()
    book.note_claim("liar", LIE, H)
    assert book.fault("liar", now=100.0) == BAN_S
    assert book.banned("liar", 100.0 + BAN_S - 1) and not book.banned("liar", 100.0 + BAN_S)
    assert book.claim("liar") is None
    assert book.fault("liar", now=200.0) == 2 * BAN_S
    for _ in range(20):
        ban = book.fault("liar", now=300.0)
    assert ban == MAX_BAN_S and book.faults_total == 22


def test_ranking_puts_backed_claims_first_then_score_and_rotates_equals() -> None:
    book = PeerBook()
    for p, h in (("a", 30), ("b", 30), ("c", 30), ("liar", LIE)):
        book.note_claim(p, h, H)
    firsts = set()
    for _ in range(6):
        ranked = book.ranked(["a", "b", "c", "liar"], above=20, corroborated=30)
        assert ranked[-1] == "liar"  # unbacked: asked last
        firsts.add(ranked[0])
    assert firsts == {"a", "b", "c"}  # equals take turns
    book.slow("a")
    book.slow("b")
    assert book.ranked(["a", "b", "c", "liar"], above=20, corroborated=30)[0] == "c"
    # a verified commit backs a claim no one else makes
    book.verified("liar", LIE)
    assert book.backed("liar", 30)


def test_peers_at_or_below_our_height_are_not_candidates() -> None:
    book = PeerBook()
    book.note_claim("a", 5, H)
    assert book.ranked(["a"], above=5, corroborated=5) == []


def test_a_peer_restored_from_a_snapshot_is_not_asked_below_its_base() -> None:
    book = PeerBook()
    book.note_claim("S", 3000, b"h" * 32, base=2000)  # restored from the snapshot of 2000
    book.note_claim("F", 3000, b"h" * 32)
    assert book.ranked(["S", "F"], 10, 3000) == ["F"]
    assert sorted(book.ranked(["S", "F"], 1999, 3000)) == ["F", "S"]  # it has 2000 onwards
    book.note_announce("S", 3001, b"i" * 32)  # an announcement keeps the base
    assert book.claim("S").base == 2000  # type: ignore[union-attr]


def test_the_status_answer_carries_a_base_only_above_one() -> None:
    from medchaind import codec
    from medchaind.errors import DecodeError
    from medchaind.sync.wire import decode_status, decode_status_base, encode_status

    assert codec.decode(encode_status(5, b"x" * 32)) == {"height": 5, "hash": b"x" * 32}
    assert decode_status_base(encode_status(5, b"x" * 32, 3)) == (5, b"x" * 32, 3)
    assert decode_status(encode_status(5, b"x" * 32, 3)) == (5, b"x" * 32)
    for bad in (1, 6, -1):
        try:
            decode_status_base(codec.encode({"height": 5, "hash": b"x" * 32, "base": bad}))
        except DecodeError:
            continue
        raise AssertionError(f"base {bad} accepted")
