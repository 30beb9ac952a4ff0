# SPDX-License-Identifier: Apache-2.0
"""Run the real driver executables the way oned's drivers do.

``one_tm.rb`` runs ``remotes/tm/<tm_mad>/<action> args...`` (action lower-cased,
``delete.ssh`` falls back to ``delete``); ``one_datastore.rb`` runs
``remotes/datastore/<ds_mad>/<action> <id>`` with the base64
``<DS_DRIVER_ACTION_DATA>`` on stdin. Non-zero exit = failure, stdout = payload.
"""
from __future__ import annotations

import base64
import dataclasses
import os
import re
import subprocess
import time
from pathlib import Path

# src/mad/ruby/DriverExecHelper.rb:178 (release-7.4.0): a log line, and the VM id after it
ONED_LOG_LINE = re.compile(r"^(ERROR|INFO|WARN|DEBUG):\s+(\d+)?\s*(.*)$")


@dataclasses.dataclass
class Call:
    """One driver execution."""

    kind: str  # "tm" or "datastore"
    action: str
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float
    stdin: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def short(self) -> str:
        """``tm/clone`` style name."""
        return f"{'ds' if self.kind == 'datastore' else 'tm'}/{self.action}"

    def error_line(self) -> str:
        """The driver's logged line: stderr ``ERROR:`` line, else the last stderr line."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        for line in lines:
            if line.startswith("ERROR:"):
                return line
        return lines[-1] if lines else f"exit {self.rc}"

    def reason(self, version: int = 7) -> str:
        """The failure reason oned shows the user (``onevm show`` ERROR, an image's error).

        7.x (src/mad/ruby/DriverExecHelper.rb:175-207, release-7.4.0): stderr lines
        matching ``^(ERROR|INFO|WARN|DEBUG):\\s+`` are LOG messages; the other lines,
        stripped and joined with no separator, are the reason; none -> ``-``.
        6.x (release-6.10.5 DriverExecHelper.rb:153-165 + CommandManager.rb:96-101): the
        whole stderr, newlines turned into spaces, stripped; empty -> ``-``.
        """
        if version < 7:
            return self.stderr.replace("\n", " ").strip() or "-"
        text = "".join(ln.strip() for ln in self.stderr.splitlines() if not ONED_LOG_LINE.match(ln.strip()))
        return text.strip() or "-"

    def logged_vm_ids(self) -> list[int]:
        """VM ids oned 7.x would route this call's log lines to (``INFO: <n> ...``,
        DriverExecHelper.rb:178-189); oned 7.4.0 crashes on an id that does not exist."""
        ids = []
        for line in self.stderr.splitlines():
            match = ONED_LOG_LINE.match(line.strip())
            if match and match.group(2) is not None:
                ids.append(int(match.group(2)))
        return ids


class DriverError(RuntimeError):
    """A driver call failed; oned would move the VM/image to a failure state."""

    def __init__(self, call: Call):
        reason = call.reason()
        detail = "" if reason != "-" else f" (oned shows no reason; stderr: {call.error_line()})"
        super().__init__(f"{call.short} exited {call.rc}: {reason}{detail}")
        self.call = call


class DriverRunner:
    """Executes ``<root>/tm/<mad>/<action>`` and ``<root>/datastore/<mad>/<action>``.

    ``root`` is the repository's ``tm_commands/`` (or a fake one in tests);
    ``conf`` is exported as ``GFS2CLVM_CONF``. Every call is appended to
    ``calls`` and passed to ``on_call`` (e.g. for live progress output).
    """

    def __init__(self, root, conf=None, env=None, timeout=900, on_call=None):
        self.root = Path(root)
        self.env = dict(os.environ if env is None else env)
        if conf is not None:
            self.env["GFS2CLVM_CONF"] = str(conf)
        self.timeout = timeout
        self.calls: list[Call] = []
        self.on_call = on_call

    def _exe(self, kind: str, mad: str, action: str) -> Path:
        path = self.root / kind / mad / action
        if not path.exists() and "." in action:
            path = self.root / kind / mad / action.split(".", 1)[0]
        return path

    def _run(self, kind: str, action: str, exe: Path, args: list[str], stdin: bytes | None) -> Call:
        argv = [str(exe), *[str(a) for a in args]]
        start = time.monotonic()
        if not exe.exists():
            call = Call(kind, action, argv, 127, "", f"ERROR: driver path {exe} does not exist", 0.0, stdin)
        else:
            try:
                proc = subprocess.run(
                    argv, input=stdin if stdin is not None else b"", capture_output=True,
                    env=self.env, timeout=self.timeout, check=False,
                )
                call = Call(kind, action, argv, proc.returncode,
                            proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"),
                            time.monotonic() - start, stdin)
            except subprocess.TimeoutExpired as err:
                call = Call(kind, action, argv, 124, "", f"ERROR: timed out after {err.timeout} s",
                            time.monotonic() - start, stdin)
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        return call

    def tm(self, tm_mad: str, action: str, args, stdin: bytes | None = None, check=True) -> Call:
        """``remotes/tm/<tm_mad>/<action> args`` (one line of a transfer script)."""
        action = action.lower()
        call = self._run("tm", action, self._exe("tm", tm_mad, action), list(args), stdin)
        if check and not call.ok:
            raise DriverError(call)
        return call

    def ds(self, ds_mad: str, action: str, obj_id: int, xml: str, check=True) -> Call:
        """``remotes/datastore/<ds_mad>/<action> <id>`` with the base64 action data on stdin."""
        stdin = base64.b64encode(xml.encode())
        call = self._run("datastore", action, self._exe("datastore", ds_mad, action), [str(obj_id)], stdin)
        if check and not call.ok:
            raise DriverError(call)
        return call
