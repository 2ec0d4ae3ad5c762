"""A client process running as another uid, for tests of IPC access control and of the
connection slots reserved for the node's own user.

``os.fork`` + ``os.setuid`` in the child (the venv's interpreter may not be readable by
the other user, so a fresh subprocess could not start). The child touches nothing of the
parent's trio run: it serves a tiny line protocol on two pipes with blocking stdlib
calls, so the test drives it step by step and sees exactly what that uid gets:

* ``{"op": "connect", "path": p}`` -> ``{"conn": i}`` or ``{"error": "..."}``;
* ``{"op": "call", "conn": i, "msg": {...}}`` -> ``{"reply": <the node's line as JSON>}``
  (notifications before the reply are skipped);
* ``{"op": "read", "conn": i}`` -> ``{"reply": ...}`` or ``{"eof": true}``;
* EOF on its command pipe -> it exits (its connections close with it).

Only possible as root; tests skip otherwise (:data:`SKIP_REASON`).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import trio

#: uid/gid of ``nobody``/``nogroup`` on Debian; any unprivileged ids work.
NOBODY = 65534
NOGROUP = 65534
SKIP_REASON = "needs root: the test runs a client as a second uid (os.setuid)"
_CHILD_TIMEOUT = 10.0


def can_switch_uid() -> bool:
    return hasattr(os, "fork") and os.geteuid() == 0


def _child(cmd_fd: int, out_fd: int, uid: int, gid: int, groups: list[int]) -> None:
    """Runs in the forked child; never returns."""
    code = 0
    try:
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
        conns: list[tuple[socket.socket, bytearray]] = []
        cmds = os.fdopen(cmd_fd, "rb")
        out = os.fdopen(out_fd, "wb", buffering=0)

        def read_line(i: int) -> bytes | None:
            sock, buf = conns[i]
            while b"\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                buf += chunk
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            return line

        for raw in cmds:
            cmd = json.loads(raw)
            answer: dict[str, Any]
            try:
                if cmd["op"] == "connect":
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(_CHILD_TIMEOUT)
                    sock.connect(cmd["path"])
                    conns.append((sock, bytearray()))
                    answer = {"conn": len(conns) - 1}
                elif cmd["op"] == "call":
                    conns[cmd["conn"]][0].sendall(json.dumps(cmd["msg"]).encode() + b"\n")
                    while True:
                        line = read_line(cmd["conn"])
                        if line is None:
                            answer = {"eof": True}
                            break
                        msg = json.loads(line)
                        if "id" in msg:
                            answer = {"reply": msg}
                            break
                else:  # read
                    line = read_line(cmd["conn"])
                    answer = {"eof": True} if line is None else {"reply": json.loads(line)}
            except OSError as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(answer).encode() + b"\n")
    except BaseException as exc:  # noqa: BLE001 - report anything, never return into pytest
        os.write(2, f"other-user client failed: {exc!r}\n".encode())
        code = 1
    finally:
        os._exit(code)


class OtherUser:
    """A forked client process running as ``uid``/``gid`` with supplementary ``groups``."""

    def __init__(self, pid: int, cmd: trio.lowlevel.FdStream, out: trio.lowlevel.FdStream) -> None:
        self.pid = pid
        self._cmd = cmd
        self._out = out
        self._buf = bytearray()

    @classmethod
    def start(cls, uid: int = NOBODY, gid: int = NOGROUP, groups: tuple[int, ...] = ()) -> OtherUser:
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(cmd_w)
            os.close(out_r)
            _child(cmd_r, out_w, uid, gid, list(groups))
        os.close(cmd_r)
        os.close(out_w)
        return cls(pid, trio.lowlevel.FdStream(cmd_w), trio.lowlevel.FdStream(out_r))

    async def _ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        await self._cmd.send_all(json.dumps(cmd).encode() + b"\n")
        with trio.fail_after(_CHILD_TIMEOUT + 5):
            while b"\n" not in self._buf:
                chunk = await self._out.receive_some(65536)
                assert chunk, "the other-user client process died"
                self._buf += chunk
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf[:] = rest
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def connect(self, path: os.PathLike[str] | str) -> int:
        answer = await self._ask({"op": "connect", "path": os.fspath(path)})
        assert "conn" in answer, answer
        return int(answer["conn"])

    async def call(self, conn: int, method: str, params: Any = None, id: int = 1) -> dict[str, Any]:  # noqa: A002
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            msg["params"] = params
        answer = await self._ask({"op": "call", "conn": conn, "msg": msg})
        assert "reply" in answer, answer
        reply: dict[str, Any] = answer["reply"]
        return reply

    async def read(self, conn: int) -> dict[str, Any] | None:
        answer = await self._ask({"op": "read", "conn": conn})
        return None if answer.get("eof") else answer["reply"]

    async def aclose(self) -> None:
        await self._cmd.aclose()
        await self._out.aclose()
        _, status = await trio.to_thread.run_sync(os.waitpid, self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the other-user client process failed"


def open_to_group(directory: os.PathLike[str] | str, gid: int = NOGROUP) -> None:
    """Let ``gid`` reach sockets in ``directory`` (the test's temp dir is 0700 root)."""
    os.chmod(directory, 0o710)
    os.chown(directory, -1, gid)
