"""The documentation's shell blocks run as written, against a real node (issue 13, item 6).

Every ```` ```sh ```` block of the README (its quick start) and of
docs/records-walkthrough.md runs, in order, in one ``bash`` per document, as a reader
would type them into one shell: variables, ``cd`` and background jobs carry over from
block to block. A block preceded by ``<!-- docs-test: skip (reason) -->`` is not run
(the README's ``./scripts/dev.sh`` runs until Ctrl-C; ``./scripts/test.sh`` is the whole
suite).

What is checked, per command (a *unit*: the lines bash needs to parse one complete
command, a ``for`` loop or a here-document included):

* it exits 0, unless the comment after it states an error (``# medchain: error: ...``):
  then it must fail and print that message on stderr (``…`` elides, a key or hash of 8+
  hex digits stands for any, line breaks of the doc are spaces);
* JSON fields the comment states (``# "status": "active"``) are in its output: strings
  and booleans literally, numbers and values shortened with ``…`` by their key;
* a comment that begins with a number (``# 1: ...``) is the whole output.

"The comment" is the one after the command plus the comment lines right below it, as
long as each looks like output (``{``, ``[``, ``"`` or ``medchain: error:``); the first
line that does not (prose, a caption such as ``# the custodian printed:``) ends it, and
what follows a caption is not checked (it is another process's output).

Substitutions, the only liberties taken with the text:

* ``./scripts/bootstrap.sh`` and ``source .venv/bin/activate`` become ``true``: the
  test already runs in the installed venv, whose ``bin/`` comes first on ``PATH``;
* ``/tmp/wt`` and ``/tmp/wt-home`` point into a fresh temporary directory, and so does
  ``$HOME`` (so ``~/.medchaind`` is fresh too); ``MEDCHAIN_PASSPHRASE`` is set, so no
  command prompts, and no ``MEDCHAIND_*``/``MEDCHAIN_*`` variable of the caller leaks in;
* a shortened value ``0xPREFIX…`` in a command is replaced by the full value that an
  earlier command printed for the field the docs show with that beginning
  (``"record_id": "0xae16b001e4df…"`` binds ``0xae16…``); the docs explain this to
  readers too.

At the end the script's background jobs (nodes, watchers, custodians) are stopped with
its process group. Runs in about 40 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((.+)\)\s*-->")
FIELD = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*)":\s*("(?:[^"\\]|\\.)*"|true|false|null|-?[0-9][0-9.]*)')
SHORT = re.compile(r"0x[0-9a-f]+…")
OUTPUT_START = ("{", "[", '"', "medchain: error:", "medchaind: error:")


@dataclass
class Unit:
    """One complete command of a doc, with what the doc says it prints."""

    text: str
    line: int
    stated: list[str] = field(default_factory=list)
    #: set once a caption comment ended the stated output: later comments are not its
    closed: bool = False

    @property
    def error(self) -> str | None:
        joined = " ".join(s.strip() for s in self.stated)
        return joined if joined.startswith(("medchain: error:", "medchaind: error:")) else None


def sh_blocks(doc: Path) -> tuple[list[tuple[int, list[str]]], list[str]]:
    """``(first line number, lines)`` of every sh block to run, and the skip reasons."""
    lines = doc.read_text().splitlines()
    blocks, skipped = [], []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            m = SKIP.search(prev)
            if m:
                skipped.append(m.group(1))
            else:
                blocks.append((i + 2, lines[i + 1:j]))
            i = j
        i += 1
    return blocks, skipped


def _complete(text: str) -> bool:
    if text.rstrip().endswith("\\"):
        return False
    res = subprocess.run(["bash", "-n"], input=text + "\n", capture_output=True, text=True, timeout=30)
    return res.returncode == 0 and "here-document" not in res.stderr


def split_comment(line: str) -> tuple[str, str | None]:
    """``cmd  # comment`` -> ``("cmd", "comment")`` (a ``#`` inside quotes is not one)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line, None


def units_of(blocks: list[tuple[int, list[str]]]) -> list[Unit]:
    units: list[Unit] = []
    for first, lines in blocks:
        pending: list[str] = []
        start = first
        last: Unit | None = None
        for n, raw in enumerate(lines, first):
            if not pending:
                stripped = raw.strip()
                if not stripped:
                    last = None
                    continue
                if stripped.startswith("#"):
                    comment = stripped[1:].strip()
                    if last is not None and not last.closed:
                        if comment.startswith(OUTPUT_START) or (last.stated and raw.startswith("#  ")):
                            last.stated.append(comment)
                        else:
                            last.closed = True
                    continue
                start = n
            pending.append(raw)
            text = "\n".join(pending)
            if _complete(text):
                command, comment = split_comment(pending[-1])
                unit = Unit("\n".join([*pending[:-1], command]), start)
                if comment:
                    unit.stated.append(comment)
                    if not comment.startswith(OUTPUT_START) and not re.match(r"\d+\b", comment):
                        unit.closed = True  # prose: "the Observation, decrypted"
                units.append(unit)
                last = unit
                pending = []
        assert not pending, f"line {start}: an incomplete command at the end of a block: {pending}"
    return units


def _find(doc: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in a JSON document."""
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        for v in doc.values():
            found = _find(v, key)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for v in doc:
            found = _find(v, key)
            if found is not None:
                return found
    return None


class Session:
    """Runs the units of one document in one bash, each unit's output kept apart."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.home = work / "home"
        self.home.mkdir()
        self.bindings: dict[str, str] = {}
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MEDCHAIND_", "MEDCHAIN_")) and k != "STATE_DIRECTORY"}
        env.update(HOME=str(self.home), MEDCHAIN_PASSPHRASE="correct horse battery staple",
                   PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=work, env=env, text=True, start_new_session=True,
        )
        self.n = 0

    def substitute(self, text: str) -> str:
        text = text.replace("./scripts/bootstrap.sh", "true").replace("source .venv/bin/activate", "true")
        text = re.sub(r"/tmp/wt(?=[-/\s'\"]|$)", str(self.work / "wt"), text)
        for short in SHORT.findall(text):
            prefix = short[:-1]
            full = next((v for k, v in self.bindings.items() if k.startswith(prefix) or prefix.startswith(k)), None)
            assert full is not None, f"{short} in {text!r}: no earlier command printed a value shown as {prefix}…"
            text = text.replace(short, full)
        return text

    def run(self, unit: Unit, timeout: float = 120.0) -> tuple[int, str, str, str]:
        """``(exit status, stdout, stderr, failed commands)``: a command that fails inside
        a loop or a list counts too (an ERR trap notes it), and pipelines fail as a whole
        (``pipefail``)."""
        self.n += 1
        out, err, rc, failed = (self.work / f".u{self.n}.{x}" for x in ("out", "err", "rc", "failed"))
        script = (f"set -o pipefail; trap 'echo \"$BASH_COMMAND\" >> {failed}' ERR\n"
                  f"{{\n{self.substitute(unit.text)}\n}} > {out} 2> {err} < /dev/null\n"
                  f"status=$?; trap - ERR; echo $status > {rc}.tmp && mv {rc}.tmp {rc}\n")
        assert self.proc.stdin is not None
        self.proc.stdin.write(script)
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while not rc.exists():
            assert self.proc.poll() is None, f"the shell exited while running: {unit.text}"
            assert time.monotonic() < deadline, f"line {unit.line}: still running after {timeout:.0f} s: {unit.text}"
            time.sleep(0.02)
        failures = failed.read_text() if failed.exists() else ""
        return int(rc.read_text()), out.read_text(errors="replace"), err.read_text(errors="replace"), failures

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the shell's own group: its jobs
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def error_pattern(stated: str) -> re.Pattern[str]:
    """The docs' error message as a pattern: ``…`` elides anything, a key or hash (8 or
    more hex digits) is any hex, whitespace is as the doc wraps it."""
    parts = []
    for piece in re.split(r"(…|(?:0x)?[0-9a-f]{8,})", " ".join(stated.split())):
        if piece == "…":
            parts.append(".*?")
        elif re.fullmatch(r"(?:0x)?[0-9a-f]{8,}", piece):
            parts.append("(?:0x)?[0-9a-f]+")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def check(session: Session, unit: Unit) -> None:
    rc, out, err, failures = session.run(unit)
    where = f"line {unit.line}: {unit.text!r}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
    error = unit.error
    if error is not None:
        assert rc != 0, f"the docs say this fails, it exited 0: {where}"
        assert error_pattern(error).search(" ".join(err.split())), f"not the docs' error {error!r}: {where}"
        return
    assert rc == 0 and not failures, f"exit status {rc}, failed: {failures!r}: {where}"
    stated = " ".join(unit.stated)
    if re.match(r"\d+\b", stated):
        assert out.strip() == re.match(r"\d+", stated).group(), f"the docs say it prints {stated!r}: {where}"  # type: ignore[union-attr]
        return
    if unit.closed and not unit.stated[1:] and not stated.startswith(OUTPUT_START):
        return  # prose only
    parsed: Any = None
    try:
        parsed = json.loads(out)
    except ValueError:
        pass
    for key, value in FIELD.findall(stated):
        if "…" in value:
            assert f'"{key}"' in out, f"the docs show a field {key}: {where}"
            shown = value.strip('"').rstrip("…")
            actual = _find(parsed, key)
            if isinstance(actual, str) and shown.startswith("0x"):
                session.bindings.setdefault(shown, actual)
        elif value.startswith('"') or value in ("true", "false", "null"):
            assert f'"{key}": {value}' in out, f"the docs show {key}: {value}: {where}"
        else:
            assert f'"{key}"' in out, f"the docs show a field {key}: {where}"


DOCUMENTS = ["README.md", "docs/records-walkthrough.md"]


@pytest.fixture
def work() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="mcdocs-"))  # short: sockets live under it
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_shell_block_runs_as_written(document: str, work: Path) -> None:
    blocks, skipped = sh_blocks(ROOT / document)
    assert blocks, f"{document} has no sh block to run"
    assert len(skipped) <= 2, f"{document}: more blocks skipped than run-forever ones: {skipped}"
    units = units_of(blocks)
    session = Session(work)
    try:
        for unit in units:
            check(session, unit)
    finally:
        session.close()


def test_the_parser_reads_the_conventions() -> None:
    """The rules above, on a small document (no node needed)."""
    blocks = [(1, [
        "export A=1   # prose",
        "medchain identity register --key a   # \"status\": \"active\"",
        "medchain records read --key b 0xae16…      # medchain: error: node refused: not permitted",
        "medchain rpc x '{\"a\": \"#not-a-comment\"}'",
        "# medchain: error: node refused: signature required: a record's",
        "#   released only to …",
        "for k in a b; do",
        "  echo $k",
        "done",
        "cat > f <<'J'",
        "{\"x\": 1}",
        "J",
        "ls | wc -l     # 1: one file",
        "medchain watch &",
        "# the watcher printed:",
        "# {\"height\": 3}",
    ])]
    units = units_of(blocks)
    assert [u.text.split()[0] for u in units] == ["export", "medchain", "medchain", "medchain", "for", "cat", "ls",
                                                   "medchain"]
    assert units[0].stated == ["prose"] and units[0].closed
    assert units[1].stated == ['"status": "active"']
    assert units[2].error == "medchain: error: node refused: not permitted"
    assert units[3].text.endswith("'{\"a\": \"#not-a-comment\"}'")
    assert units[3].error == "medchain: error: node refused: signature required: a record's released only to …"
    assert units[6].stated == ["1: one file"]
    assert units[7].stated == [] and units[7].closed  # a caption: the lines after it are another process's
