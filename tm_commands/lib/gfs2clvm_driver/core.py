"""Errors, oned logging and ``run_main``: the one place that talks to oned.

OpenNebula >= 6 reads a driver's stderr: lines starting ``ERROR:``/``INFO:`` go to the
VM log, the other lines (joined) become the user's error message; stdout is the
success payload; a non-zero exit is a failure.  The 3.2 scripts used the
``ERROR MESSAGE --8<------`` block instead (``style="3.2"``).
"""

import sys

LEGACY_OPEN = "ERROR MESSAGE --8<------"
LEGACY_CLOSE = "ERROR MESSAGE ------>8--"


class DriverError(Exception):
    """A failure with one line of text an admin can act on."""


def one_line(text):
    """Collapse ``text`` into one line (oned shows one line per message)."""
    return " ".join(str(text).split())


def info(message):
    """Log one ``INFO:`` line to oned (stderr)."""
    sys.stderr.write(f"INFO: {one_line(message)}\n")
    sys.stderr.flush()


def error(message, style="one"):
    """Write the failure in the format of ``style`` (``one`` or ``3.2``)."""
    message = one_line(message) or "unknown error"
    if style == "3.2":
        sys.stderr.write(f"{LEGACY_OPEN}\n{message}\n{LEGACY_CLOSE}\n")
    else:
        sys.stderr.write(f"ERROR: {message}\n")
    sys.stderr.flush()


def output(text):
    """Print the success payload on stdout (nothing when ``text`` is empty/None)."""
    if text is None or text == "":
        return
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def run_main(main, argv=None, style="one"):
    """Run ``main(argv)`` and exit: 0 on success, 1 with one error line otherwise.

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
