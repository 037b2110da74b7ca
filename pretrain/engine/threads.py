"""The main process's CPU threads, budgeted beside the data loader's workers.

On a CPU the main process runs the model on torch's intra-op (OpenMP) threads while `data.num_workers` loader
processes decode and augment images, one thread each (torch's DataLoader calls torch.set_num_threads(1) in every
worker). Left alone, torch starts one OpenMP thread per core: with the workers that is more busy threads than cores,
and beside any other work a parallel region waits for its slowest thread, while the others spin on cores the workers
or the other process need (libgomp spins before it sleeps). The demo's pretraining took 2.8x its quiet time beside
one busy process (issue 21; benchmarks/cpu_threads.py measures it). The plan:

    intra-op threads  max(1, cores - data.num_workers): the workers keep a core each, the model the rest
    OMP_WAIT_POLICY   PASSIVE: a waiting OpenMP thread sleeps instead of spinning on a core someone else needs

`cores` are those this process may run on (os.sched_getaffinity: a SLURM or taskset mask, not the machine's count).
An OMP_NUM_THREADS or OMP_WAIT_POLICY the user set wins; COSUB_CPU_THREADS=off leaves both as torch sets them
(benchmarks/cpu_threads.py compares the two). GPU runs are left alone: their main process hardly computes.

When each takes effect. torch.set_num_threads works at any time: the Trainer applies it once, at its start, on CPU
(`budget_cpu_threads`). OMP_WAIT_POLICY does not: libgomp, torch's OpenMP, reads it once, when `import torch` loads
the library (setting it in os.environ after that import changes nothing: measured). So `set_wait_policy()` must run
before the process's first `import torch`, in the entry point's package before anything else: this module imports
nothing but `os` for that reason. No re-exec: what torch loaded before it is left as it is, and the threads'
count (the part that matters most when the workers take every core) still applies.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping, NamedTuple, Optional

logger = logging.getLogger('cosub')

OFF = 'COSUB_CPU_THREADS'  # =off: torch's own thread settings, for comparison
WAIT_POLICY = 'PASSIVE'


class ThreadPlan(NamedTuple):
    threads: Optional[int]  # torch.set_num_threads(threads); None: leave torch's count (the user's OMP_NUM_THREADS)
    wait_policy: Optional[str]  # OMP_WAIT_POLICY to set before torch loads; None: leave it
    why: str


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1


def plan_cpu_threads(cores: int, workers: int, environ: Mapping[str, str]) -> ThreadPlan:
    """The main process's threads and wait policy for `cores` usable cores and `workers` loader processes."""
    if environ.get(OFF, '').lower() == 'off':
        return ThreadPlan(None, None, f'{OFF}=off: torch sets its own threads')
    threads = None if environ.get('OMP_NUM_THREADS') else max(1, cores - workers)
    wait_policy = None if environ.get('OMP_WAIT_POLICY') else WAIT_POLICY
    why = (f'OMP_NUM_THREADS={environ["OMP_NUM_THREADS"]} (set by you)' if threads is None else
           f'{threads} thread(s): {cores} core(s) less {workers} loader worker(s)')
    return ThreadPlan(threads, wait_policy, why)


def set_wait_policy(environ=os.environ) -> None:
    """OMP_WAIT_POLICY=PASSIVE in the environment unless the user set one: call before the first `import torch`."""
    wait_policy = plan_cpu_threads(1, 0, environ).wait_policy
    if wait_policy:
        environ['OMP_WAIT_POLICY'] = wait_policy


def budget_cpu_threads(workers: int) -> None:
    """Set the main process's intra-op threads for a CPU run with `workers` loader processes (once, at start)."""
    import torch
    plan = plan_cpu_threads(available_cores(), workers, os.environ)
    if plan.threads is not None:
        torch.set_num_threads(plan.threads)
    logger.info('CPU threads: %s; OMP_WAIT_POLICY=%s', plan.why, os.environ.get('OMP_WAIT_POLICY', 'unset'))
