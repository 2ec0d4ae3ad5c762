"""Verified answers from a real network (docs/protocol.md §23): 4 authorities, 1 observer.

A pharmacy's client trusts only ``genesis.json``. It reads a patient's identity and two
consent checks from the *observer* (a node it does not run), each answer with a proof
that it checks against a header and the authorities' commit, and it catches a node whose
answers are altered on the way. Every node has the same ``app_hash`` at every height; an
authority's chain exported and imported into a fresh datadir re-executes to the same
state root (replay keeps the commitment).
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest
from test_network import assert_same_chain, call, network  # noqa: F401 - the fixture

from medchaind.client import Client
from medchaind.crypto import KeyPair
from medchaind.errors import ProofError
from medchaind.flows import LightVerifier, ok
from medchaind.ipc import RPCError
from medchaind.node.chainfile import export_chain, import_chain
from medchaind.testing.wait import wait_until
from medchaind.types import Genesis

pytestmark = pytest.mark.e2e


def hexs(b: bytes) -> str:
    return "0x" + b.hex()


class AlteringClient(Client):
    """A client behind a node (or a proxy) that turns consent denials into permits."""

    def call(self, method: str, params: Any = None, timeout: float | None = None) -> Any:
        result = super().call(method, params, timeout=timeout)
        if method == "consent_check":
            result["result"] = {"allowed": True, "reason": "permitted by consent " + "00" * 32}
        return result


def test_a_client_verifies_identity_and_consent_answers_from_a_node_it_does_not_run(network: Any) -> None:  # noqa: F811
    nodes = network
    genesis = Genesis.from_json((nodes[0].datadir / "genesis.json").read_text())
    patient, pharmacy, other = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    with Client(nodes[0].ipc, timeout=60) as c:
        assert ok(c.register_identity(patient, "patient"))
        assert ok(c.register_identity(pharmacy, "pharmacy", label="Corner Pharmacy"))
        assert ok(c.register_identity(other, "pharmacy", label="Other Pharmacy"))
        assert ok(c.grant(patient, actor=pharmacy.public_key, actions=["read"], decision="permit"))
        last = c.grant(patient, actor=other.public_key, actions=["read"], decision="deny")
        assert ok(last)
    wait_until(lambda: int(call(nodes[4], "node_info")["height"]) >= last["height"],  # type: ignore[index]
               timeout=60, what="the observer to reach the grants")

    def check(actor: KeyPair) -> dict[str, Any]:
        return {"patient": hexs(patient.public_key), "actor": hexs(actor.public_key), "action": "read",
                "resource_type": "Observation"}

    with Client(nodes[4].ipc, timeout=60, verifier=LightVerifier.from_genesis(genesis)) as v:
        ident = v.identity(pharmacy.public_key)  # a module helper, verified
        assert ident["role"] == "pharmacy" and ident["label"] == "Corner Pharmacy"
        permit = v.query("consent_check", check(pharmacy))
        assert permit["allowed"] is True and permit["reason"].startswith("permitted by consent")
        deny = v.query("consent_check", check(other))
        assert deny["allowed"] is False and deny["reason"].startswith("denied by consent")
        with pytest.raises(RPCError) as e:  # a proven absence is the usual "not found"
            v.identity(KeyPair.generate().public_key)
        assert e.value.code == -32020
        # unverified, the same answers
        assert v.query("consent_check", check(other), verify=False) == deny

    with AlteringClient(nodes[4].ipc, timeout=60, verifier=LightVerifier.from_genesis(genesis)) as liar:
        with pytest.raises(ProofError):
            liar.query("consent_check", check(other))

    assert_same_chain(nodes)  # same headers, so the same app_hash, at every height

    # replay: an authority's chain, exported and imported into a new datadir
    nodes[3].stop(signal.SIGTERM)
    tmp = Path(tempfile.mkdtemp(prefix="mcimp-"))
    try:
        exported = export_chain(nodes[3].datadir, tmp / "chain.bin")
        fresh = tmp / "fresh"
        fresh.mkdir()
        shutil.copy(nodes[3].datadir / "genesis.json", fresh / "genesis.json")
        imported = import_chain(fresh, tmp / "chain.bin")
        assert imported["height"] == exported["to"] >= last["height"]
        header = call(nodes[0], "chain_getBlock", {"height": imported["height"]})["header"]  # type: ignore[index]
        assert imported["app_hash"] == header["app_hash"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
