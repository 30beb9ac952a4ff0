"""Errors, oned logging and ``run_main``: the one place that talks to oned.

How oned reads an action's output (OpenNebula ``src/mad/ruby/DriverExecHelper.rb``,
``get_info_from_execution``): stdout and stderr are read after the action exits.

* 7.x (release-7.4.0 DriverExecHelper.rb:175-205): every stderr line matching
  ``^(ERROR|INFO|WARN|DEBUG):\\s+(\\d+)?\\s*(.*)$`` is a LOG message -- for VM ``\\1``'s
  number when one follows the prefix (line 178-189), else for oned.log only; on failure
  the *other* lines, stripped and joined (line 180, 204), are the reason the user sees
  (``onevm show`` ERROR, an image's error); none -> ``-`` (line 207).
* 6.10 (release-6.10.5 DriverExecHelper.rb:153-165, CommandManager.rb:96-101): on
  failure the whole stderr, newlines turned into spaces, is the reason; stderr is
  logged line by line (CommandManager.rb:76-79) only on failure.

So a failure prints, like OpenNebula's own ``log_error`` + ``error_message``
(``src/mad/sh/scripts_common.sh:105-120`` in 7.4.0): one ``ERROR: <message>`` line
(logged) and one plain ``<message>`` line (the reason).  7.x shows ``<message>``;
6.x shows ``ERROR: <message> <message>`` (all of stderr).

Never ``INFO: <number> ...`` unless the number is the VM's id: oned routes the line to
that VM, and oned 7.4.0 crashes on an id that does not exist
(../shared/real-oned/README.md): ``log_line`` keeps a message off a leading number.

The 3.2 scripts used the ``ERROR MESSAGE --8<------`` block instead (``style="3.2"``).
"""

import os
import re
import sys

LEGACY_OPEN = "ERROR MESSAGE --8<------"
LEGACY_CLOSE = "ERROR MESSAGE ------>8--"
# DriverExecHelper.rb:178 (7.x): what oned takes for a log line, and its VM id
ONED_LOG_LINE = re.compile(r"^(ERROR|INFO|WARN|DEBUG):\s+(\d+)?\s*(.*)$")
SEVERITIES = ("ERROR", "INFO", "WARN", "DEBUG")


class DriverError(Exception):
    """A failure with one line of text an admin can act on."""


def one_line(text):
    """Collapse ``text`` into one line (oned shows one line per message)."""
    return " ".join(str(text).split())


def _program():
    name = os.path.basename(sys.argv[0] or "") if sys.argv else ""
    return name if re.fullmatch(r"[A-Za-z_][\w.-]*", name or "") else "gfs2clvm"


def log_line(severity, message, vmid=None):
    """One oned log line ``<SEVERITY>: [<vmid> ]<message>``.

    A message that would start with a number is prefixed with the program's name
    (as OpenNebula's ``log_function`` always does): oned would read that number as a
    VM id (DriverExecHelper.rb:178).  ``vmid``: route the line to that VM's log.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}")
    message = one_line(message) or "-"
    if message[0].isdigit():
        message = f"{_program()}: {message}"
    if vmid is not None:
        if isinstance(vmid, bool) or not str(vmid).isdigit():
            raise ValueError(f"vmid must be a VM id, not {vmid!r}")
        return f"{severity}: {int(vmid)} {message}"
    return f"{severity}: {message}"


def reason_line(message):
    """The plain line oned makes the failure reason: never one it would take for a log line."""
    message = one_line(message) or "unknown error"
    while ONED_LOG_LINE.match(message):
        message = one_line(message.split(":", 1)[1]) or "unknown error"
    return message


def info(message, vmid=None):
    """Log one ``INFO:`` line to oned (stderr); oned shows it when the action has ended."""
    sys.stderr.write(log_line("INFO", message, vmid) + "\n")
    sys.stderr.flush()


def error(message, style="one"):
    """Write the failure in the format of ``style`` (``one`` or ``3.2``).

    ``one``: ``ERROR: <message>`` (logged) then the plain reason line ``<message>``.
    """
    message = one_line(message) or "unknown error"
    if style == "3.2":
        sys.stderr.write(f"{LEGACY_OPEN}\n{message}\n{LEGACY_CLOSE}\n")
    else:
        sys.stderr.write(f"{log_line('ERROR', message)}\n{reason_line(message)}\n")
    sys.stderr.flush()


def oned_reason(stderr, version=7):
    """The failure reason oned shows for ``stderr`` (7.x or 6.x rules, see above)."""
    if version < 7:
        return str(stderr).replace("\n", " ").strip() or "-"
    reason = "".join(line.strip() for line in str(stderr).splitlines()
                     if not ONED_LOG_LINE.match(line.strip()))
    return reason.strip() or "-"


def output(text):
    """Print the success payload on stdout (nothing when ``text`` is empty/None)."""
    if text is None or text == "":
        return
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def run_main(main, argv=None, style="one"):
    """Run ``main(argv)`` and exit: 0 on success, 1 with one error (see ``error``) otherwise.

    Never lets a traceback reach oned: every exception becomes one line.
    ``main`` returns the stdout payload (str) or None.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        payload = main(argv)
    except DriverError as err:
        error(str(err), style)
        sys.exit(1)
    except KeyboardInterrupt:
        error("interrupted", style)
        sys.exit(1)
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 -- the contract: no traceback to oned
        error(f"internal error: {type(err).__name__}: {err}", style)
        sys.exit(1)
    output(payload)
    sys.exit(0)
