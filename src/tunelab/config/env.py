"""Environment knobs: where tunelab caches things and whether it may touch the network."""

from __future__ import annotations

import os
from pathlib import Path


def tunelab_home() -> Path:
    """Cache root: $TUNELAB_HOME, default ~/.cache/tunelab."""
    home = os.environ.get("TUNELAB_HOME")
    path = Path(home).expanduser() if home else Path.home() / ".cache" / "tunelab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_offline() -> bool:
    """True when the user asked Hugging Face libraries to stay offline."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False


# --- CPU threads ---------------------------------------------------------------------------
# torch's CPU kernels run on an OpenMP pool (libgomp in the Linux wheels) sized to the CPUs the
# process may run on. Two things go wrong on shared machines, CI runners and containers:
# 1. the pool ignores a cgroup CPU quota: a container limited to 2 CPUs on a 64-core host gets 64
#    threads fighting over 2 CPUs' worth of time;
# 2. a thread that finishes its share of a parallel region busy-waits (libgomp's default: 300,000
#    spins) for the next one. Alone that saves wake-up latency; with other busy processes the
#    spinning threads take the CPU from the ones doing the work: three SmolLM2 runs at once on 2
#    cores took 3.5x the time of running them one after another (docs/training.md, "Threads").
# Both are set once, before torch starts its pool (the CLI calls configure_threads first thing);
# whatever the user set in the environment wins.
SPIN_COUNT = "10000"  # spins before a waiting thread sleeps: measured in benchmarks/busy_machine.py


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup") -> float | None:
    """CPUs' worth of time the cgroup allows (quota / period), None when unlimited or unknown.
    cgroup v2 (cpu.max) and v1 (cpu.cfs_quota_us / cpu.cfs_period_us)."""
    v2 = Path(root) / "cpu.max"
    try:
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = Path(root) / "cpu"
        quota = int((v1 / "cpu.cfs_quota_us").read_text())
        period = int((v1 / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus(cgroup_root: str | Path = "/sys/fs/cgroup") -> int:
    """The CPUs this process may run on (its affinity mask), capped by the cgroup's CPU quota
    (rounded: a quota of 1.5 CPUs gives 2 threads)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        count = min(count, max(1, int(limit + 0.5)))
    return max(1, count)


def configure_threads(environ=None) -> dict:
    """Set OMP_NUM_THREADS to the usable CPUs and a short OpenMP spin before waiting threads
    sleep, unless the user set them (OMP_NUM_THREADS; OMP_WAIT_POLICY or GOMP_SPINCOUNT). Must run
    before torch is imported to take effect. Returns what it set."""
    environ = os.environ if environ is None else environ
    chosen = {}
    if not environ.get("OMP_NUM_THREADS"):
        chosen["OMP_NUM_THREADS"] = str(usable_cpus())
    if not environ.get("OMP_WAIT_POLICY") and not environ.get("GOMP_SPINCOUNT"):
        chosen["GOMP_SPINCOUNT"] = SPIN_COUNT
    environ.update(chosen)
    return chosen
