"""``python -m driftloop.mlserver_child PARENT_PID start REPOSITORY``: MLServer's own ``mlserver start``
run in this process, tied to the process that started it.

A plain ``mlserver start`` in its own session outlives a parent killed with SIGKILL for ever (nothing
tells it). Here a watchdog thread checks every half second whether this process still has
``PARENT_PID`` as its parent; once it has been re-parented (the parent died, however), it sends itself
SIGTERM (MLServer's graceful shutdown) and, if that has not ended the process group within
``GRACE_S``, SIGKILLs the group. ``PR_SET_PDEATHSIG`` is not used here: it fires when the *thread* that
forked the child ends, and ``MLServerProcess`` is started from worker threads (``asyncio.to_thread``)
that may end while the parent lives. (The fork server's children use it: they are forked from the fork
server's only thread.)
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

POLL_S = 0.5
GRACE_S = 10.0


def watch_parent(parent_pid: int, *, poll_s: float = POLL_S, grace_s: float = GRACE_S) -> threading.Thread:
    """Start the daemon thread that ends this process (and its group) when ``parent_pid`` is gone."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        print(
            f"driftloop: parent process {parent_pid} is gone; stopping MLServer",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="parent-watchdog", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: python -m driftloop.mlserver_child PARENT_PID MLSERVER_ARGS...", file=sys.stderr)
        return 2
    parent_pid = int(argv[0])
    if os.getppid() != parent_pid:  # the parent died before this process got here
        return 1
    watch_parent(parent_pid)
    sys.argv = ["mlserver", *argv[1:]]
    from mlserver.cli.main import main as mlserver_main

    try:
        mlserver_main()  # click exits through SystemExit
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
