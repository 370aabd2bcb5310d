"""The ``depmin`` command, ``python -m depmin`` and the zipapp's entry point: the CLI,
after the stand-ins of depmin.compat, then a fast exit.

A run leaves tens of MB of objects behind; freeing them one by one at interpreter
exit costs 15-20 ms, more than the whole run on a small tree.  A command holds
nothing that needs finalising (its files are closed, its children reaped), so
once it has returned the output is flushed and the process leaves with
``os._exit``, as ``sys.exit`` would have left it: same streams, same status.
"""

import os
import sys


def exit_status(code: object) -> int:
    """The status ``sys.exit(code)`` gives: None is 0, an int itself, anything else printed, 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def main() -> None:
    from depmin.compat import install

    install()
    from depmin.cli import main as cli_main

    try:
        cli_main()
        status = 0
    except SystemExit as exc:
        status = exit_status(exc.code)
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        status = 120  # what the interpreter returns when stdout cannot be flushed at exit
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(status)


if __name__ == "__main__":
    main()
