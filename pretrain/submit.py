"""Launch pretraining on SLURM with submitit, requeued on preemption or time-out (fine-tuning: transfer/submit.py,
this launcher with transfer's configs; pretrain does not import transfer, which is built on it).

    python -m pretrain.submit --cfg vit_l --nodes 4 --gpus-per-node 8 --partition P --timeout-min 4320 \
        --data-path /datasets/imagenet --output-dir runs/vit_l
    python -m transfer.submit --dataset inat18 --nodes 1 --gpus-per-node 8 --partition P ...

One task per GPU runs the same engine as pretrain/train.py (torch.distributed from submitit's JobEnvironment).
Every launch passes --resume, so a first start, a requeue after preemption and a requeue after the time limit are
the same command: it continues from <output-dir>/checkpoint.pth when there is one. Before the time limit SLURM
sends SIGUSR2 (`--signal-delay-s` ahead); on it, or on SIGTERM/SIGUSR1, the engine finishes the current step,
writes checkpoint.pth with its position in the epoch, and submitit requeues the job (as the official DeiT
run_with_submitit.py does, but without losing the epoch in progress). Any other flag is pretrain/train.py's.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Callable, List, Optional

# task -> (the flag that names its config, the entry point whose other flags it takes)
TASKS = {'pretrain': ('--cfg', 'pretrain/train.py'), 'transfer': ('--dataset', 'transfer/finetune.py')}


def prepare_pretraining(cfg) -> None:
    """How pretraining prepares a run (pretrain/train.py's): the default output folder."""
    from pretrain.train import default_output_dir
    default_output_dir(cfg)


class Training:
    """The submitted callable: runs the engine on this task's rank; `checkpoint()` makes submitit requeue it.
    `prepare(cfg)` is the task's preparation before the run (transfer: transfer.finetune.prepare)."""

    def __init__(self, argv: List[str], task: str = 'pretrain', prepare: Callable = prepare_pretraining):
        self.argv, self.task, self.prepare = list(argv), task, prepare

    def __call__(self) -> dict:
        import submitit
        from pretrain.config import parse
        from pretrain.engine.command import run_command
        from pretrain.engine.preemption import also_stop_on

        env = submitit.JobEnvironment()
        job = env.job_id.split('_')[0]  # array jobs: <job>_<task>
        port = 20000 + int(job) % 20000 if job.isdigit() else 29500  # one port per job on shared nodes
        os.environ.update(RANK=str(env.global_rank), LOCAL_RANK=str(env.local_rank), WORLD_SIZE=str(env.num_tasks),
                          MASTER_ADDR=env.hostnames[0], MASTER_PORT=str(port))
        requeue = signal.getsignal(env._usr_sig())  # submitit's: checkpoint() + requeue, on rank 0
        also_stop_on(env._usr_sig())  # ... called below once the engine has saved its position
        resume = [] if '--resume' in self.argv else ['--resume']  # a first start or a requeue: the same command
        cfg = parse(self.argv + resume, task=self.task, name_flag=TASKS[self.task][0])

        def on_preempted(e):
            if callable(requeue) and e.signum != signal.SIGINT:
                requeue(e.signum, None)  # rank 0 requeues and exits; the others end here
        # the job's failures end in one line in its log, as pretrain/train.py's do (backbones/errors.py)
        return run_command(cfg, self.prepare, on_preempted=on_preempted)

    def checkpoint(self):
        import submitit
        return submitit.helpers.DelayedSubmission(Training(self.argv, self.task, self.prepare))


def build_executor(args, folder: Path):
    import submitit
    try:  # SLURM only: submitit would otherwise run all of it on this machine
        executor = submitit.AutoExecutor(folder=str(folder), cluster='slurm', slurm_max_num_timeout=args.max_requeues)
    except RuntimeError as e:
        sys.exit(f'error: {e} (pretrain.submit launches on SLURM; here use pretrain/train.py or torchrun)')
    extra = {}
    if args.constraint:
        extra['constraint'] = args.constraint
    executor.update_parameters(
        name=args.job_name, nodes=args.nodes, gpus_per_node=args.gpus_per_node, tasks_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb_per_gpu * args.gpus_per_node,
        timeout_min=args.timeout_min, slurm_partition=args.partition, slurm_signal_delay_s=args.signal_delay_s,
        slurm_additional_parameters=extra)
    return executor


def main(argv: Optional[List[str]] = None, task: str = 'pretrain', prepare: Callable = prepare_pretraining,
         description: str = __doc__.splitlines()[0]) -> None:
    """The launcher of `task`: pretraining here, fine-tuning with transfer/submit.py's task and prepare."""
    name_flag, entry = TASKS[task]
    from backbones.errors import one_line_errors
    from pretrain.config import OneLineErrorParser, check_flag_minimums, parse
    p = OneLineErrorParser(description=description,
                                epilog=f'Other flags ({name_flag}, --data-path, --output-dir, --cfg-options ...) are '
                                       f"{entry}'s.")
    p.add_argument('--task', choices=list(TASKS), default=task, help=argparse.SUPPRESS)  # only to say where it went
    p.add_argument('--nodes', type=int, default=1)
    p.add_argument('--gpus-per-node', type=int, default=8)
    p.add_argument('--cpus-per-task', type=int, default=10)
    p.add_argument('--mem-gb-per-gpu', type=int, default=40)
    p.add_argument('--partition', required=True, help='SLURM partition')
    p.add_argument('--constraint', default='', help='SLURM constraint, e.g. volta32gb')
    p.add_argument('--timeout-min', type=int, default=4320, help='time limit of each allocation (minutes)')
    p.add_argument('--signal-delay-s', type=int, default=120,
                   help='SIGUSR2 this many seconds before the time limit: time to finish a step and save')
    p.add_argument('--max-requeues', type=int, default=20, help='how many time-outs to requeue after')
    p.add_argument('--job-dir', help="submitit's logs and pickles (default: <output-dir>/submitit)")
    p.add_argument('--job-name', default='cosub')
    args, rest = p.parse_known_args(argv)
    if args.task != task:
        p.error(f'--task {args.task}: use python -m {args.task}.submit (the same flags, without --task)')
    # sbatch would refuse these later, or (--nodes 0) submitit with a traceback
    check_flag_minimums(p, args, nodes=1, gpus_per_node=1, cpus_per_task=1, mem_gb_per_gpu=1, timeout_min=1,
                        signal_delay_s=0, max_requeues=0)
    if not args.partition.strip():
        p.error('--partition: expected the name of a SLURM partition')
    cfg, flags = parse(rest, task=task, name_flag=name_flag, return_args=True)  # bad: exit 2 first
    with one_line_errors():  # what prepare refuses (no data, a missing checkpoint) ends here, before submitting
        prepare(cfg)
        if flags.dry_run:  # what the job would run (method, LR, batches, GPU-hours), nothing submitted
            from pretrain.dry_run import dry_run
            cfg.dry_run.gpus = args.nodes * args.gpus_per_node  # the job's world size, not the config's guess
            print(dry_run(cfg, gpus_from='--nodes x --gpus-per-node'))
            return
        folder = Path(args.job_dir or Path(cfg.output_dir) / 'submitit')
        job = build_executor(args, folder).submit(Training(rest, task, prepare))
    print(f'submitted job {job.job_id}: {args.nodes} node(s) x {args.gpus_per_node} GPU(s), output {cfg.output_dir}, '
          f'logs {folder}')


if __name__ == '__main__':
    main()
