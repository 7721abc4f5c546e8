"""Run `tunelab ARGS...` and inject one fault at an exact point, for real (imported by no product code).

    python kill_at.py step N ARGS...        SIGKILL this process right after step N is logged
    python kill_at.py save N ARGS...        SIGKILL it during the N-th safetensors write of a
                                            checkpoint, after half of that file's bytes are on disk
    python kill_at.py enospc N ARGS...      the N-th safetensors write of a checkpoint fails with
                                            ENOSPC (a full disk) after half of its bytes are written

A kill -9 gives the process no chance to clean up: what it leaves is what a crash, an OOM kill or
a pre-empted node leaves.
"""

from __future__ import annotations

import errno
import os
import signal
import sys


def kill_after_step(n: int) -> None:
    import tunelab.train.loop as loop

    real = loop.log_step

    def log_then_die(state, event):
        real(state, event)
        if event["step"] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    loop.log_step = log_then_die


def fail_in_save(n: int, how: str) -> None:
    import tunelab.train.checkpoint as ckpt

    real = ckpt.save_file
    calls = [0]

    def half_then_fail(tensors, path, *args, **kwargs):
        calls[0] += 1
        real(tensors, path, *args, **kwargs)
        if calls[0] == n:
            with open(path, "r+b") as f:  # only the first half reached the disk
                f.truncate(os.path.getsize(path) // 2)
            if how == "save":
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    ckpt.save_file = half_then_fail


def main() -> int:
    mode, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if mode == "step":
        kill_after_step(n)
    else:
        fail_in_save(n, mode)
    from tunelab.cli.main import main as tunelab_main

    return tunelab_main(argv)


if __name__ == "__main__":
    sys.exit(main())
