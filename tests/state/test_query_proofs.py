"""Query answers with proofs: a client checks them against a header it verified itself.

The chain (:class:`state_kit.HeaderChain`) has four authorities A, B, C, D; three sign
each block. The client trusts only the genesis authority set (a
:class:`medchaind.flows.LightVerifier`). Each lying node below changes one thing the
client receives: the answer, a value in the proof, a node of the proof, the state the
node answers from, the header's commit. Every lie must end in ProofError (and the honest
node's answers must verify and equal the unproven ones).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from state_kit import HeaderChain, ProofNode, hexs, pub

from medchaind import codec
from medchaind.app import DictState
from medchaind.errors import MedchainError as MedchainErrorT
from medchaind.errors import ProofError
from medchaind.flows import LightVerifier, verified_query_flow, verifying
from medchaind.ipc import RPCError
from medchaind.modules.identity.client import identity
from medchaind.testing.appkit import enc_key
from medchaind.types import validators_hash


def _chain() -> HeaderChain:
    c = HeaderChain()
    c.register("P", "patient")
    c.register("X", "pharmacy")
    c.accredit("X", "pharmacy")
    c.register("Y", "pharmacy")
    c.accredit("Y", "pharmacy")
    c.ok("P", "consent.grant", {"actor_role": "pharmacy", "actions": ["read"], "decision": "permit"})
    c.ok("P", "consent.grant", {"actor": pub("Y"), "actions": ["read"], "decision": "deny"})
    return c


def _check(actor: str) -> dict[str, Any]:
    return {"patient": hexs(pub("P")), "actor": hexs(pub(actor)), "action": "read", "resource_type": "Observation"}


def _trust(c: HeaderChain) -> LightVerifier:
    return LightVerifier.from_genesis(c.genesis)


def verified(node: ProofNode, method: str, params: dict[str, Any]) -> Any:
    return node.run(verified_query_flow(_trust(node.c), method, params))


# ------------------------------------------------------------------ honest node


def test_identity_lookup_verifies_and_equals_the_plain_answer() -> None:
    c = _chain()
    node = ProofNode(c)
    params = {"public_key": hexs(pub("X"))}
    got = verified(node, "identity_get", params)
    assert got == node.queries.run(node.methods["identity_get"], params)
    assert got["status"] == "accredited"
    # the proof is against the header of the tip, fetched and checked by the client
    assert [m for m, _ in node.calls] == ["identity_get", "chain_getBlock"]
    assert node.calls[0][1]["prove"] is True


def test_absence_of_an_identity_is_proven() -> None:
    c = _chain()
    node = ProofNode(c)
    with pytest.raises(RPCError) as e:  # the verified "not found", as the plain call says it
        verified(node, "identity_get", {"public_key": hexs(pub("nobody"))})
    assert e.value.code == -32020


def test_consent_checks_verify_permit_and_deny() -> None:
    c = _chain()
    node = ProofNode(c)
    permit = verified(node, "consent_check", _check("X"))
    assert permit["allowed"] is True and permit["reason"].startswith("permitted by consent")
    deny = verified(node, "consent_check", _check("Y"))
    assert deny == {"allowed": False, "reason": deny["reason"]} and deny["reason"].startswith("denied by consent")


def test_every_helper_is_verified_through_the_verifying_wrapper() -> None:
    c = _chain()
    node = ProofNode(c)
    got = node.run(verifying(identity(pub("P")), _trust(c)))
    assert got["role"] == "patient"
    assert node.calls[0][1].get("prove") is True


def test_a_call_that_already_asks_for_a_proof_is_not_wrapped_twice() -> None:
    # Client(verifier=...).query(..., verify=True) drives verified_query_flow through the
    # client's verifying wrapper
    c = _chain()
    node = ProofNode(c)
    trust = _trust(c)
    params = {"public_key": hexs(pub("P"))}
    got = node.run(verifying(verified_query_flow(trust, "identity_get", params), trust))
    assert got == node.queries.run(node.methods["identity_get"], params)


def test_a_header_verified_once_is_not_fetched_again() -> None:
    c = _chain()
    node = ProofNode(c)
    trust = _trust(c)
    node.run(verified_query_flow(trust, "consent_check", _check("X")))
    node.run(verified_query_flow(trust, "identity_get", {"public_key": hexs(pub("P"))}))
    assert [m for m, _ in node.calls].count("chain_getBlock") == 1


def test_a_paged_list_proves_only_what_it_read() -> None:
    c = _chain()
    for i in range(12):
        c.register(f"Q{i}", "patient")
    node = ProofNode(c)
    page = verified(node, "identity_list", {"limit": 3})
    assert len(page) == 3
    full = node.queries.run(node.methods["identity_list"], {"prove": True, "limit": 1000})
    small = node.queries.run(node.methods["identity_list"], {"prove": True, "limit": 3})
    assert len(small["proof"]["values"]) == 3 < len(full["proof"]["values"])


# ------------------------------------------------------------------ lying nodes


def _flip_answer(method: str, result: Any) -> Any:
    out = copy.deepcopy(result)
    out["result"]["allowed"] = not out["result"]["allowed"]
    return out


def _drop_the_deny(method: str, result: Any) -> Any:
    """Leave the deny grant's value out of the proof (and claim a permit)."""
    out = copy.deepcopy(result)
    values = [v for v in out["proof"]["values"] if b"deny" not in bytes.fromhex(v[2:])]
    assert len(values) < len(out["proof"]["values"])
    out["proof"]["values"] = values
    out["result"] = {"allowed": True, "reason": "permitted by consent " + "00" * 32}
    return out


def _forge_value(method: str, result: Any) -> Any:
    """Turn the deny into a permit inside the proof's values."""
    out = copy.deepcopy(result)
    forged = []
    for v in out["proof"]["values"]:
        raw = bytes.fromhex(v[2:])
        if b"deny" in raw:
            g = codec.decode(raw)
            g["decision"] = "permit"
            raw = codec.encode(g)
        forged.append(hexs(raw))
    out["proof"]["values"] = forged
    out["result"] = {"allowed": True, "reason": out["result"]["reason"].replace("denied", "permitted")}
    return out


def _drop_a_node(method: str, result: Any) -> Any:
    out = copy.deepcopy(result)
    out["proof"]["nodes"] = out["proof"]["nodes"][:-1]
    return out


def _alter_a_node(method: str, result: Any) -> Any:
    out = copy.deepcopy(result)
    last = bytearray(bytes.fromhex(out["proof"]["nodes"][-1][2:]))
    last[-1] ^= 1
    out["proof"]["nodes"][-1] = hexs(bytes(last))
    return out


def _no_proof(method: str, result: Any) -> Any:
    return result["result"]


@pytest.mark.parametrize("lie", [_flip_answer, _drop_the_deny, _forge_value, _drop_a_node, _alter_a_node, _no_proof])
def test_a_node_that_lies_about_a_consent_check_is_caught(lie: Any) -> None:
    c = _chain()
    node = ProofNode(c, lie=lie)
    with pytest.raises(ProofError):
        verified(node, "consent_check", _check("Y"))


def test_a_node_whose_state_was_tampered_with_is_caught() -> None:
    # The liar answers from its own state, internally consistent (its own trie, its own
    # root), in which Y is a provider and Y's deny grant is gone; that is not the state
    # the authorities signed, so no proof it builds reaches the header's app_hash, not
    # even one about a key it did not change.
    c = _chain()
    forged = dict(c.state.data)
    k = ("identity", b"id/" + pub("Y"))
    ident = codec.decode(forged[k])
    ident["enc_key"] = enc_key("mallory")
    forged[k] = codec.encode(ident)
    deny = [k for k, v in forged.items() if k[0] == "consent" and codec.decode(v)["decision"] == "deny"]
    assert len(deny) == 1
    del forged[deny[0]]
    liar = ProofNode(c)
    liar.queries.state = DictState(forged)
    assert liar.queries.run(liar.methods["consent_check"], _check("Y"))["allowed"] is True
    for method, params in [("identity_get", {"public_key": hexs(pub("Y"))}),
                           ("consent_check", _check("Y")),
                           ("identity_get", {"public_key": hexs(pub("X"))})]:
        with pytest.raises(ProofError):
            verified(liar, method, params)


def test_a_header_not_signed_by_the_trusted_authorities_is_refused() -> None:
    # the node serves real, finalised blocks, but of a chain run by other authorities
    c = _chain()
    other = HeaderChain(authorities=("E", "F", "G", "H"), signers=("E", "F", "G"))
    other.register("X", "pharmacy")
    with pytest.raises(ProofError, match="fewer than 1/3 of the trusted"):
        ProofNode(other).run(verified_query_flow(_trust(c), "identity_get", {"public_key": hexs(pub("X"))}))


def test_a_commit_with_too_few_signatures_is_refused() -> None:
    c = HeaderChain(signers=("A", "B"))  # 2 of 4: not final
    c.register("P", "patient")
    with pytest.raises(ProofError, match="not final"):
        verified(ProofNode(c), "identity_get", {"public_key": hexs(pub("P"))})


# ------------------------------------------------------------------ authority changes


def test_the_client_follows_an_authority_change_vouched_for_by_a_third_of_its_set() -> None:
    c = HeaderChain(signers=("A", "B", "C", "D"))  # final under 4 and under 5 authorities
    trust = _trust(c)
    for voter in ("A", "B", "C"):
        c.send(voter, "governance.add_authority", {"public_key": pub("E"), "name": "E", "power": 1})
    c.register("P", "patient", enc="p")  # a block after the change took effect...
    c.register("Q", "patient", enc="q")
    assert pub("E") in c.powers and validators_hash(c.signed_by[c.height]) != validators_hash(trust.powers)
    node = ProofNode(c)
    got = node.run(verified_query_flow(trust, "identity_get", {"public_key": hexs(pub("Q"))}))
    assert got["enc_key"] == hexs(enc_key("q"))
    assert pub("E") in trust.powers  # the trusted set moved to the header's


def test_the_client_refuses_a_set_its_trusted_authorities_do_not_vouch_for() -> None:
    c = _chain()
    stranger = LightVerifier(c.app.chain_id, {pub(n): 1 for n in ("S", "T", "U", "V")})
    with pytest.raises(ProofError):
        ProofNode(c).run(verified_query_flow(stranger, "identity_get", {"public_key": hexs(pub("P"))}))


def test_prove_is_a_boolean() -> None:
    node = ProofNode(_chain())
    with pytest.raises(RPCError, match="prove must be a boolean"):
        node.queries.run(node.methods["identity_get"], {"public_key": hexs(pub("P")), "prove": "yes"})


# ------------------------------------------------------------------ every query of the registry


def _sample(field: Any) -> Any:
    """A plausible JSON value for a parameter field type (None: no sample)."""
    from medchaind.app import schema as sc

    if isinstance(field, sc.Bytes):
        return hexs(pub("P")) if field.size == 32 else ("0x" + "01" * (field.size or max(field.min, 1)))
    if isinstance(field, sc.Int):
        return field.lo
    if isinstance(field, sc.Bool):
        return False
    if isinstance(field, sc.Enum):
        return field.values[0]
    if isinstance(field, sc.OneOf):
        return min(field.values)
    if isinstance(field, sc.Nullable):
        return None
    if isinstance(field, sc.ListOf) and field.min == 0:
        return []
    return None


def test_every_query_of_every_module_answers_with_a_proof_that_verifies() -> None:
    # Nothing is declared per query: run each query of the registry with sample params
    # on a small chain, with a proof, and check the proof (many answers are absences).
    from medchaind.app.schema import fields_of

    c = _chain()
    node = ProofNode(c)
    trust = _trust(c)
    proven: set[str] = set()
    for method, spec in node.methods.items():
        params: dict[str, Any] = {}
        for f in fields_of(spec.params):
            if f.required:
                value = _sample(f.type)
                if value is None:
                    break
                params[f.name] = value
        else:
            try:
                node.queries.run(spec, {**params, "prove": True})
            except (RPCError, MedchainErrorT):
                continue  # the sample params are refused (e.g. a pattern): not this test's business
            try:
                node.run(verified_query_flow(trust, method, params))
            except RPCError as exc:
                assert exc.code == -32020  # a proven "not found"
            proven.add(method.split("_")[0])
    assert proven >= {"identity", "governance", "anchor", "consent", "records", "supply", "trials", "claims"}, proven
