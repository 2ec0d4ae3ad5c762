"""Trials' client helpers (sans-IO flows; :mod:`medchaind.flows`).

Each helper becomes a method of :class:`~medchaind.client.Client` and
:class:`~medchaind.client.AsyncClient` (``chain_id`` is filled in by the client). Tx
helpers take ``**kw`` (``nonce``, ``wait``, ``timeout_ms``) as ``send`` does and return
the tx status with its receipt.

* sponsor: :func:`register_trial` (a body, e.g. from :mod:`.ctgov`), :func:`trial_ethics`,
  :func:`amend_trial`, :func:`trial_commit`, :func:`commit_randomisation`,
  :func:`trial_status`, :func:`unblind_trial`, :func:`report_trial`;
* participant (a per-trial pseudonymous key, see :func:`new_participant`):
  :func:`join_trial` (register the pseudonym if needed, then consent to the site),
  :func:`consent_to_trial`;
* site: :func:`enroll_participant` (finds the participant's trial consent if no grant id
  is given), :func:`reconsent_participant`, :func:`trial_event`, :func:`withdraw_participant`
  (also the participant's);
* anyone: :func:`trial`, :func:`trial_outcomes`, :func:`trial_amendments`,
  :func:`trial_participants`, :func:`trial_coverage`, :func:`trial_switching`.

Secrets stay here: the randomisation list and its salt are hashed in this process; the
chain sees only the commitment, and at unblinding the salt and the list's hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ... import crypto
from ...crypto import KeyPair, SigningKey
from ...flows import Call, Flow, helper, hexstr, ok, send_flow
from ...types.merkle import merkle_root
from .machine import consent_purpose, randomisation_commitment


def new_participant() -> KeyPair:
    """A fresh key pair to be one participant's pseudonym in one trial (never reused)."""
    return KeyPair.generate()


def list_hash(allocation_list: bytes) -> bytes:
    """The hash of a randomisation list document (its exact bytes)."""
    return crypto.sha256(allocation_list)


def data_lock_root(file_hashes: Sequence[bytes]) -> bytes:
    """The data-lock commitment: the RFC 6962 Merkle root over the data files' SHA-256s
    (in the order given; the CLI sorts by file name), so one file's inclusion is provable."""
    return merkle_root(list(file_hashes))


def _event(st: dict[str, Any], kind: str, field: str) -> Any:
    for ev in (st.get("receipt") or {}).get("events", []):
        if ev.get("type") == kind:
            return ev.get(field)
    return None


# ------------------------------------------------------------------ sponsor


@helper
def register_trial(chain_id: str, sponsor: SigningKey, body: dict[str, Any], **kw: Any) -> Flow[dict[str, Any]]:
    """``trials.register``: register a trial (a body from :meth:`.ctgov.Study.registration`
    or built by hand; bytes as bytes)."""
    return (yield from send_flow(chain_id, sponsor, "trials.register", body, **kw))


@helper
def trial_ethics(chain_id: str, sponsor: SigningKey, trial: str, ref: str, document_hash: bytes,
                 **kw: Any) -> Flow[dict[str, Any]]:
    """``trials.ethics``: record the ethics (IRB/IEC) approval: its reference and document hash."""
    body = {"trial": trial, "approval": {"ref": ref, "document_hash": document_hash}}
    return (yield from send_flow(chain_id, sponsor, "trials.ethics", body, **kw))


@helper
def amend_trial(
    chain_id: str, sponsor: SigningKey, trial: str, *, effective_version: int, protocol_hash: bytes,
    changes: Sequence[str], reason: str, reconsent: bool, approval: tuple[str, bytes] | None = None,
    urgent_safety: bool = False, outcomes: Sequence[dict[str, Any]] | None = None,
    target_enrollment: int | None = None, add_sites: Sequence[bytes] | None = None, **kw: Any,
) -> Flow[dict[str, Any]]:
    """``trials.amend``: a new protocol version with what changed, why, its approval and
    whether participants must re-consent."""
    body: dict[str, Any] = {"trial": trial, "effective_version": effective_version, "protocol_hash": protocol_hash,
                            "changes": list(changes), "reason": reason, "reconsent": reconsent}
    if approval is not None:
        body["approval"] = {"ref": approval[0], "document_hash": approval[1]}
    if urgent_safety:
        body["urgent_safety"] = True
    if outcomes is not None:
        body["outcomes"] = list(outcomes)
    if target_enrollment is not None:
        body["target_enrollment"] = target_enrollment
    if add_sites is not None:
        body["add_sites"] = list(add_sites)
    return (yield from send_flow(chain_id, sponsor, "trials.amend", body, **kw))


@helper
def trial_commit(chain_id: str, sponsor: SigningKey, trial: str, kind: str, digest: bytes, *,
                 label: str | None = None, **kw: Any) -> Flow[dict[str, Any]]:
    """``trials.commit``: commit the hash of the SAP, the data lock (a Merkle root, see
    :func:`data_lock_root`), the analysis code, or a randomisation commitment."""
    body: dict[str, Any] = {"trial": trial, "kind": kind, "hash": digest}
    if label is not None:
        body["label"] = label
    return (yield from send_flow(chain_id, sponsor, "trials.commit", body, **kw))


@helper
def commit_randomisation(chain_id: str, sponsor: SigningKey, trial: str, allocation_list: bytes, salt: bytes,
                         **kw: Any) -> Flow[dict[str, Any]]:
    """Commit to a randomisation list (its bytes) under a secret 32-byte ``salt``; keep
    both until unblinding (:func:`unblind_trial` reveals the salt and the list's hash)."""
    if len(salt) != 32:
        raise ValueError("the salt is 32 bytes")
    commitment = randomisation_commitment(salt, list_hash(allocation_list))
    return (yield from trial_commit(chain_id, sponsor, trial, "randomisation", commitment, **kw))


@helper
def trial_status(chain_id: str, sponsor: SigningKey, trial: str, action: str, **kw: Any) -> Flow[dict[str, Any]]:
    """``trials.status``: close_recruitment, suspend, resume, primary_completion, complete,
    terminate or withdraw (the block's time becomes the date)."""
    return (yield from send_flow(chain_id, sponsor, "trials.status", {"trial": trial, "action": action}, **kw))


@helper
def unblind_trial(chain_id: str, sponsor: SigningKey, trial: str, *, allocation_list: bytes | None = None,
                  salt: bytes | None = None, **kw: Any) -> Flow[dict[str, Any]]:
    """``trials.unblind``: after the SAP and the data lock; reveals the randomisation
    commitment (give the list's bytes and the salt) if one was made."""
    body: dict[str, Any] = {"trial": trial}
    if (allocation_list is None) != (salt is None):
        raise ValueError("give both the allocation list and the salt, or neither")
    if allocation_list is not None and salt is not None:
        body.update(randomisation_salt=salt, randomisation_list_hash=list_hash(allocation_list))
    return (yield from send_flow(chain_id, sponsor, "trials.unblind", body, **kw))


@helper
def report_trial(chain_id: str, sponsor: SigningKey, body: dict[str, Any], **kw: Any) -> Flow[dict[str, Any]]:
    """``trials.report``: the results report (a body from :meth:`.ctgov.Study.report` or by
    hand); ``trial_switching`` then classifies its outcomes."""
    return (yield from send_flow(chain_id, sponsor, "trials.report", body, **kw))


# ------------------------------------------------------------------ participant


def consent_body(trial: str, site: bytes, version: int) -> dict[str, Any]:
    """The ``consent.grant`` body of a trial consent: permit ``site`` to read and write the
    participant's trial data, for purpose ``CLINTRCH.<trial>.v<version>``."""
    return {"actions": ["read", "write"], "decision": "permit", "actor": site,
            "purposes": [consent_purpose(trial, version)]}


@helper
def consent_to_trial(chain_id: str, participant: KeyPair, trial: str, site: bytes, version: int,
                     **kw: Any) -> Flow[dict[str, Any]]:
    """The participant consents to ``version`` of the trial's consent form, given to ``site``;
    the returned status carries ``grant_id`` once committed."""
    st = yield from send_flow(chain_id, participant.signing, "consent.grant", consent_body(trial, site, version), **kw)
    gid = _event(st, "consent.granted", "grant_id")
    if gid is not None:
        st["grant_id"] = gid
    return st


@helper
def join_trial(chain_id: str, participant: KeyPair, trial: str, site: bytes, version: int,
               **kw: Any) -> Flow[dict[str, Any]]:
    """Register the participant's pseudonym as a patient identity (unless it is), then
    consent to the trial (:func:`consent_to_trial`)."""
    from ...flows import RPCError

    try:
        yield Call("identity_get", {"public_key": hexstr(participant.public_key)})
    except RPCError:
        body = {"role": "patient", "enc_key": participant.encryption.public_key}
        st = yield from send_flow(chain_id, participant.signing, "identity.register", body)
        if not ok(st):
            return st
    return (yield from consent_to_trial(chain_id, participant, trial, site, version, **kw))


# ------------------------------------------------------------------ site


def find_trial_consent(grants: Sequence[dict[str, Any]], trial: str, site: bytes) -> str | None:
    """The id (0x-hex) of the participant's unrevoked permit to ``site`` naming the highest
    version of ``trial`` (the chain checks validity; this only picks the candidate)."""
    prefix = f"CLINTRCH.{trial}.v"
    best: tuple[int, str] | None = None
    for g in grants:
        if g["revoked_height"] is not None or g["decision"] != "permit" or g["actor"] != hexstr(site):
            continue
        for p in g["purposes"] or ():
            if p.startswith(prefix) and p[len(prefix):].isdigit():
                cand = (int(p[len(prefix):]), g["grant_id"])
                best = cand if best is None or cand > best else best
    return None if best is None else best[1]


def _grant_or_find(participant: bytes, trial: str, site: bytes, grant_id: bytes | None) -> Flow[bytes]:
    if grant_id is not None:
        return grant_id
    grants = yield Call("consent_list", {"patient": hexstr(participant), "include_revoked": False})
    found = find_trial_consent(grants, trial, site)
    if found is None:
        from ...flows import RPCError

        raise RPCError(-32020, f"the participant has no consent to {trial} for this site", {"code": "no_consent"})
    return bytes.fromhex(found[2:])


@helper
def enroll_participant(chain_id: str, site: SigningKey, trial: str, participant: bytes, *,
                       grant_id: bytes | None = None, **kw: Any) -> Flow[dict[str, Any]]:
    """``trials.enroll``: enrol a participant (pseudonym) under its trial consent
    (``grant_id``, or found in the participant's grants); the status carries ``seq``,
    the randomisation number."""
    gid = yield from _grant_or_find(participant, trial, site.public_key, grant_id)
    body = {"trial": trial, "participant": participant, "consent_grant": gid}
    st = yield from send_flow(chain_id, site, "trials.enroll", body, **kw)
    seq = _event(st, "trials.enrolled", "seq")
    if seq is not None:
        st["seq"] = seq
    return st


@helper
def reconsent_participant(chain_id: str, site: SigningKey, trial: str, participant: bytes, *,
                          grant_id: bytes | None = None, **kw: Any) -> Flow[dict[str, Any]]:
    """``trials.reconsent``: record the participant's consent to the new version."""
    gid = yield from _grant_or_find(participant, trial, site.public_key, grant_id)
    body = {"trial": trial, "participant": participant, "consent_grant": gid}
    return (yield from send_flow(chain_id, site, "trials.reconsent", body, **kw))


@helper
def trial_event(chain_id: str, site: SigningKey, trial: str, participant: bytes, kind: str, *,
                data_hash: bytes | None = None, **kw: Any) -> Flow[dict[str, Any]]:
    """``trials.event``: a study event (visit, dose, CRF...) with the hash of its data
    (encrypted elsewhere); refused without current consent."""
    body: dict[str, Any] = {"trial": trial, "participant": participant, "kind": kind}
    if data_hash is not None:
        body["data_hash"] = data_hash
    return (yield from send_flow(chain_id, site, "trials.event", body, **kw))


@helper
def withdraw_participant(chain_id: str, key: SigningKey, trial: str, participant: bytes,
                         **kw: Any) -> Flow[dict[str, Any]]:
    """``trials.withdraw``: the participant (its own key) or the enrolling site ends participation."""
    return (yield from send_flow(chain_id, key, "trials.withdraw", {"trial": trial, "participant": participant}, **kw))


# ------------------------------------------------------------------ queries


@helper
def trial(trial: str) -> Flow[dict[str, Any]]:
    """A trial's status, dates, versions, commitments, counts and flags."""
    t: dict[str, Any] = yield Call("trials_get", {"trial": trial})
    return t


@helper
def trial_outcomes(trial: str, version: int | None = None) -> Flow[dict[str, Any]]:
    """The outcomes in force at a protocol version (default: the current one)."""
    params: dict[str, Any] = {"trial": trial}
    if version is not None:
        params["version"] = version
    outs: dict[str, Any] = yield Call("trials_outcomes", params)
    return outs


@helper
def trial_amendments(trial: str) -> Flow[list[dict[str, Any]]]:
    """A trial's amendments in version order."""
    out: list[dict[str, Any]] = yield Call("trials_amendments", {"trial": trial})
    return out


@helper
def trial_participants(trial: str, *, site: bytes | None = None, limit: int = 100,
                       offset: int = 0) -> Flow[list[dict[str, Any]]]:
    """Enrolled participants (pseudonyms) in randomisation order, with their consent state."""
    params: dict[str, Any] = {"trial": trial, "limit": limit, "offset": offset}
    if site is not None:
        params["site"] = hexstr(site)
    out: list[dict[str, Any]] = yield Call("trials_participants", params)
    return out


@helper
def trial_coverage(trial: str) -> Flow[dict[str, Any]]:
    """Consent coverage per site at the tip: current, awaiting re-consent, withdrawn."""
    out: dict[str, Any] = yield Call("trials_coverage", {"trial": trial})
    return out


@helper
def trial_switching(trial: str, report: int | None = None) -> Flow[dict[str, Any]]:
    """The outcome-switching report of a results report (default: the latest)."""
    params: dict[str, Any] = {"trial": trial}
    if report is not None:
        params["report"] = report
    out: dict[str, Any] = yield Call("trials_switching", params)
    return out


HELPERS = [
    register_trial, trial_ethics, amend_trial, trial_commit, commit_randomisation, trial_status, unblind_trial,
    report_trial, consent_to_trial, join_trial, enroll_participant, reconsent_participant, trial_event,
    withdraw_participant, trial, trial_outcomes, trial_amendments, trial_participants, trial_coverage,
    trial_switching,
]
