"""Key release under random histories (hypothesis state machine).

The properties: the author of a record can place a data-key envelope for a reader only
while that reader has an open key request (it broke the glass or recorded an access
without holding an envelope) *and* is permitted to read at that block; the patient may
share with anyone, unless it chose strict release (then only with open requesters). And
the node releases the envelope and the ciphertext to a reader other than the patient or
the author only if it holds an envelope, is permitted now, and its latest access is for
the request's purpose and at most ten minutes old. A model tracks who asked for a key
and who accessed when; read permission is evaluated on the state before each block
(consent.check's own model test covers its answers).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from records_kit import HOUR_MS, Chain, add_body, envelopes, grant_body, pub

from medchaind.app import QueryError
from medchaind.modules.records import machine as records

READERS = ("D2", "PH", "X", "Q")
_BASE: Chain | None = None


def _base() -> Chain:
    global _BASE
    if _BASE is None:
        _BASE = Chain.standard()
        _BASE.grant("P", grant_body("D1", actions=["read", "write"]))
    return _BASE


class KeyRelease(RuleBasedStateMachine):
    @initialize(shared=st.booleans())
    def setup(self, shared: bool) -> None:
        from medchaind.app import DictState

        base = _base()
        self.chain = Chain.__new__(Chain)
        self.chain.__dict__.update(base.__dict__)
        self.chain.state = DictState(base.state.data)
        # half the histories start with D2 holding an envelope (so releases happen often)
        self.rid = self.chain.add("D1", add_body("P", recipients=["P", "D1", "D2"] if shared else ["P", "D1"]))
        self.holders = {"P", "D1", "D2"} if shared else {"P", "D1"}
        self.requested: set[str] = set()
        self.grants: list[bytes] = []
        self.erased = False
        self.strict = False
        self.accessed: dict[str, tuple[str, int]] = {}  # reader -> (purpose, block time)

    def _permitted(self, reader: str, purpose: str) -> bool:
        meta = records.get_record(self.chain.state, self.rid)
        assert meta is not None
        allowed, _, _ = records.read_permission(
            self.chain.state, self.rid, meta, pub(reader), purpose, self.chain.time_ms + 1_000
        )
        return allowed

    @rule(reader=st.sampled_from(READERS), decision=st.sampled_from(["permit", "deny"]),
          purposes=st.sampled_from([None, ["TREAT"], ["HPAYMT"]]))
    def grant(self, reader: str, decision: str, purposes: list[str] | None) -> None:
        extra: dict[str, Any] = {} if purposes is None else {"purposes": purposes}
        r = self.chain.send("P", "consent.grant", grant_body(reader, decision=decision, **extra))
        if r.ok:
            self.grants.append(bytes(r.events[0]["grant_id"]))

    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        if self.grants:
            gid = data.draw(st.sampled_from(self.grants))
            self.chain.send("P", "consent.revoke", {"grant_id": gid})

    @rule(reader=st.sampled_from(READERS))
    def break_glass(self, reader: str) -> None:
        r = self.chain.send(reader, "records.break_glass", {"record_id": self.rid, "reason": "EMERG"})
        # only an accredited provider may break the glass: D2 (PH is a pharmacy, X pending, Q a patient)
        assert r.ok == (not self.erased and reader == "D2"), (reader, r.code)
        if r.ok and reader not in self.holders:
            self.requested.add(reader)

    @rule(reader=st.sampled_from(READERS), purpose=st.sampled_from(["TREAT", "ETREAT", "HPAYMT"]))
    def access(self, reader: str, purpose: str) -> None:
        permitted = not self.erased and self._permitted(reader, purpose)
        r = self.chain.send(reader, "records.access", {"record_id": self.rid, "purpose": purpose})
        assert r.ok == permitted, (reader, purpose, r.code)
        if r.ok:
            self.accessed[reader] = (purpose, self.chain.time_ms)
        if r.ok and reader not in self.holders:
            self.requested.add(reader)
            assert r.events[-1]["type"] == "records.key_requested"

    @rule(reader=st.sampled_from(READERS))
    def author_answers(self, reader: str) -> None:
        raw = self.chain.state.get("records", records.key_request_key(pub("D1"), self.rid, pub(reader)))
        purpose = None if raw is None else records.codec.decode(raw)["purpose"]
        expected = (
            not self.erased and reader in self.requested and purpose is not None and self._permitted(reader, purpose)
        )
        r = self.chain.send("D1", "records.add_envelopes", {"record_id": self.rid, "envelopes": envelopes(reader)})
        assert r.ok == expected, (reader, r.code, self.requested)
        event(f"author answer: {r.code}")
        if r.ok:
            self.holders.add(reader)
            self.requested.discard(reader)

    @rule(reader=st.sampled_from(READERS))
    def patient_shares(self, reader: str) -> None:
        r = self.chain.send("P", "records.add_envelopes", {"record_id": self.rid, "envelopes": envelopes(reader)})
        assert r.ok == (not self.erased and (not self.strict or reader in self.requested)), (reader, r.code)
        if r.ok:
            self.holders.add(reader)
            self.requested.discard(reader)

    @rule(on=st.booleans())
    def set_strict(self, on: bool) -> None:
        self.chain.ok("P", "records.set_policy", {"strict": on})
        self.strict = on

    @rule(reader=st.sampled_from(READERS), purpose=st.sampled_from(["TREAT", "ETREAT", "HPAYMT"]))
    def release(self, reader: str, purpose: str) -> None:
        now = self.chain.now()
        try:
            got, ciphertext = self.chain.release(self.rid, reader, purpose)
        except QueryError as exc:
            code = exc.code
        else:
            code = "released" if ciphertext else "nothing"
        last = self.accessed.get(reader)
        if self.erased or (self._permitted(reader, purpose) and reader not in self.holders):
            expected = "nothing"
        elif not self._permitted(reader, purpose):
            expected = "not_permitted"
        elif last is None or last[0] != purpose or now - last[1] > records.ACCESS_WINDOW_MS:
            expected = "access_required"
        else:
            expected = "released"
        assert code == expected, (reader, purpose, last, now)
        event(f"release: {code}")

    @rule(reader=st.sampled_from(READERS), purpose=st.sampled_from(["TREAT", "ETREAT", "HPAYMT"]))
    def read(self, reader: str, purpose: str) -> None:
        """What an honest client does: the access, then the signed request."""
        self.access(reader, purpose)
        self.release(reader, purpose)

    @rule(hours=st.integers(1, 30))
    def advance(self, hours: int) -> None:
        self.chain.advance(hours * HOUR_MS)

    @rule(minutes=st.integers(1, 15))
    def advance_minutes(self, minutes: int) -> None:
        self.chain.advance(minutes * 60_000)

    @rule(roll=st.integers(0, 9))
    def erase(self, roll: int) -> None:
        if roll:  # rare: an erased record ends every interesting history
            return
        r = self.chain.send("P", "records.erase", {"record_id": self.rid})
        assert r.ok == (not self.erased)
        self.erased = True
        self.holders = set()
        self.requested = set()
        self.accessed = {}

    @invariant()
    def state_matches_model(self) -> None:
        state = self.chain.state
        stored = {
            name for name in ("P", "D1", *READERS)
            if state.get("records", records.envelope_key(self.rid, pub(name))) is not None
        }
        assert stored == self.holders
        open_requests = {
            name for name in READERS
            if state.get("records", records.key_request_key(pub("D1"), self.rid, pub(name))) is not None
        }
        assert open_requests == self.requested
        by_patient = {
            name for name in READERS
            if state.get("records", records.patient_request_key(pub("P"), self.rid, pub(name))) is not None
        }
        assert by_patient == self.requested  # the patient's index agrees with the author's


TestKeyRelease = KeyRelease.TestCase
TestKeyRelease.settings = settings(
    max_examples=80, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
