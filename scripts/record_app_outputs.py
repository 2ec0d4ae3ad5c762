"""A pytest plugin that records what the state machine produced in every test, to compare trees.

For a change that must keep every hashed and executed byte (a faster handler, decoder or
trie), run the same tests on the tree before it and on the tree after it, each recording a
digest of every :meth:`App.execute` (the write-set in insertion order, the receipts with
their events, ``app_hash``, ``results_hash``, the trie records put and deleted and their
values) and every :meth:`App.check_tx` outcome (ok, or the refusal), per test; then
compare the two recordings. Run each tree from its own root (``python -m pytest`` imports
the tree in the current directory) with a fixed hypothesis seed and without xdist (the
test kits number their events with module-level counters, so which worker runs which test
changes the bytes); tests that draw random keys or nonces (the client-flow tests) differ
between two runs of the *same* tree too, so record one tree twice to leave those out.

Usage::

    cd TREE && rm -rf .hypothesis && REC_OUT=/tmp/rec_before PYTHONPATH=/work/main/scripts \\
        /work/main/.venv/bin/python -m pytest -q -p no:cacheprovider -p record_app_outputs \\
        --hypothesis-seed=0 tests/claims tests/supply tests/trials tests/records tests/app
    # the same in the other tree with REC_OUT=/tmp/rec_after, then:
    python scripts/record_app_outputs.py /tmp/rec_before /tmp/rec_after [/tmp/rec_before_again]

The run writes ``$REC_OUT.main.json``. The comparison prints how many
executions and checks were compared and the tests whose records differ (exit status 1),
leaving out those that differ between the first and the optional third recording.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

_records: dict[str, list[str]] = {}
_current: list[str | None] = [None]


def _digest_execution(ex: Any) -> str:
    h = hashlib.sha256()
    for (m, k), v in ex.writes.items():
        h.update(repr((m, k, v)).encode())
    for r in ex.receipts:
        h.update(repr((r.code, r.reason, r.events)).encode())
    h.update(ex.app_hash + ex.results_hash)
    if ex.trie is not None:
        h.update(repr(sorted(ex.trie.puts.items())).encode())
        h.update(repr(sorted(ex.trie.deletes)).encode())
        h.update(repr(sorted(ex.trie.values.items())).encode())
    return "exec:" + h.hexdigest()[:24]


def pytest_configure(config: Any) -> None:
    from medchaind.app import app as appmod

    execute, check_tx = appmod.App.execute, appmod.App.check_tx

    def recording_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        ex = execute(self, *args, **kwargs)
        if _current[0] is not None:
            _records[_current[0]].append(_digest_execution(ex))
        return ex

    def recording_check_tx(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            check_tx(self, *args, **kwargs)
        except Exception as exc:
            if _current[0] is not None:
                _records[_current[0]].append(f"check:{type(exc).__name__}:{exc}")
            raise
        if _current[0] is not None:
            _records[_current[0]].append("check:ok")

    appmod.App.execute = recording_execute  # type: ignore[method-assign]
    appmod.App.check_tx = recording_check_tx  # type: ignore[method-assign]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: Any) -> Iterator[None]:
    _current[0] = item.nodeid
    _records[item.nodeid] = []
    yield
    _current[0] = None


def pytest_sessionfinish(session: Any) -> None:
    out = os.environ["REC_OUT"] + "." + os.environ.get("PYTEST_XDIST_WORKER", "main") + ".json"
    with open(out, "w") as f:
        json.dump(_records, f)


def load(prefix: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in glob.glob(prefix + ".*.json"):
        with open(path) as f:
            out.update(json.load(f))
    return out


def main() -> None:
    a, b = load(sys.argv[1]), load(sys.argv[2])
    noisy: set[str] = set()
    if len(sys.argv) > 3:
        again = load(sys.argv[3])
        noisy = {t for t in set(a) & set(again) if a[t] != again[t]}
    common = sorted((set(a) & set(b)) - noisy)
    diff = [t for t in common if a[t] != b[t]]
    n_exec = sum(sum(r.startswith("exec:") for r in a[t]) for t in common)
    n_check = sum(sum(r.startswith("check:") for r in a[t]) for t in common)
    print(f"tests compared: {len(common)} ({len(noisy)} left out as differing between two runs of one tree; "
          f"only in the first: {len(set(a) - set(b))}, only in the second: {len(set(b) - set(a))})")
    print(f"block executions: {n_exec}, check_tx outcomes: {n_check}; tests whose records differ: {len(diff)}")
    for t in diff[:20]:
        first = next(((x, y) for x, y in zip(a[t], b[t], strict=False) if x != y), (len(a[t]), len(b[t])))
        print(f"  {t}: {first}")
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
