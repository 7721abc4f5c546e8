"""Threads follow the CPUs a process may use (affinity, cgroup quota) and do not spin long:
config/env.py, set by the CLI before torch starts its pool."""

import os
import subprocess
import sys

from tunelab.config.env import SPIN_COUNT, cgroup_cpu_limit, configure_threads, usable_cpus


def test_cgroup_quota_v1_and_v2(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "v1") == 0.5
    assert usable_cpus(tmp_path / "v1") == 1  # half a CPU: one thread, never zero
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path / "v1") is None
    assert usable_cpus(tmp_path / "v1") == len(os.sched_getaffinity(0))
    assert cgroup_cpu_limit(tmp_path / "none") is None


def test_user_settings_win():
    env = {}
    assert configure_threads(env) == {"OMP_NUM_THREADS": str(usable_cpus()), "GOMP_SPINCOUNT": SPIN_COUNT}
    env = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    assert configure_threads(env) == {} and env == {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    env = {"GOMP_SPINCOUNT": "0"}
    assert configure_threads(env) == {"OMP_NUM_THREADS": str(usable_cpus())} and env["GOMP_SPINCOUNT"] == "0"


def test_the_cli_gives_torch_one_thread_per_cpu_it_may_use():
    """A process pinned to one CPU (taskset, a container's cpuset) gets one torch thread."""
    probe = ("import os; from tunelab.cli.main import main; main(['power', '--n', '50', '--discordance', '0.2']); "
             "import torch; print('THREADS', torch.get_num_threads(), os.environ['GOMP_SPINCOUNT'])")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("THREADS")[1].split() == ["1", SPIN_COUNT]
