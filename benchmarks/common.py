"""Measurement helpers shared by the benchmarks (and the tests' FLOP counts): FLOPs, bytes saved for backward,
aten ops dispatched (the host's work in eager mode), host vs GPU time, the device's measured matmul peak (the
denominator of MFU), compiled copies of a model, device description."""
from __future__ import annotations

import collections
import copy
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def flop_counter() -> FlopCounterMode:
    """torch's counter, plus the CPU fused-attention kernels it does not know (same cost as the GPU ones)."""
    return FlopCounterMode(display=False, custom_mapping={  # the counter passes shapes to these
        aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, **__: sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda grad, q, k, v, *_, **__: sdpa_backward_flop_count(grad, q, k, v)})


class SavedForBackward:
    """Bytes of the distinct storages autograd keeps for backward, parameters excluded."""

    def __init__(self, model: nn.Module):
        self.parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: Dict[int, int] = {}
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        # saved tensors stay alive until backward, so their addresses are unique during the forward pass
        if storage.data_ptr() not in self.parameters:
            self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def __enter__(self):
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self.hooks.__exit__(*exc)


def resolve_device(parser, requested: str) -> str:
    """--device: 'auto' is the GPU when one is visible, else the CPU; 'cuda' without a GPU is a usage error."""
    device = ('cuda' if torch.cuda.is_available() else 'cpu') if requested == 'auto' else requested
    if device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA GPU is visible')
    return device


def options_for(args, device: str, gpu_defaults: dict, cpu_defaults: dict) -> dict:
    """The benchmark's sizes: each flag given on the command line, else the device's default."""
    defaults = gpu_defaults if device.startswith('cuda') else cpu_defaults
    return {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()}


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), model)
    except OSError:
        pass
    return f'CPU: {model}, {os.cpu_count()} cores, {torch.get_num_threads()} threads used'


class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched below autograd, forward and backward: in eager mode each is a host
    round of dispatch and (on a GPU) at least one kernel launch, so it measures the host's work per step on any
    device."""

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def load_note() -> str:
    """The machine's load average (1, 5, 15 min) against its cores: timings on a shared machine are noisy."""
    try:
        load = os.getloadavg()
    except OSError:
        return 'load average unknown'
    return f'load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) on {os.cpu_count()} cores'


def counted(model: nn.Module, step: Callable[[], None]) -> dict:
    """FLOPs, bytes saved for backward and aten ops of one call of `step` (forward + backward of `model`)."""
    with flop_counter() as flops, SavedForBackward(model) as saved, OpCounter() as ops:
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return dict(flops=flops.get_total_flops(), activation_bytes=saved.bytes, aten_ops=ops.total)


def host_and_kernel_time(step: Callable[[], None]) -> dict:
    """CUDA only: how long the host takes to issue one `step` (it returns before the GPU is done, unless a sync
    or a full launch queue holds it) and the summed duration of the GPU kernels it ran (torch.profiler). Host
    time above kernel time means the step is bound by the host launching kernels."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    host = time.perf_counter() - start
    torch.cuda.synchronize()
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kernels = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type == DeviceType.CUDA)
    return dict(host_s=host, kernel_s=kernels / 1e6, host_ops=host_ops(step))


def host_ops(step: Callable[[], None], top: int = 8) -> List[dict]:
    """Where the host spends one `step`: the `top` operators by self CPU time (torch.profiler, CPU activity
    only: aten ops, autograd nodes and CUDA runtime calls such as cudaLaunchKernel), with their call counts."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [dict(name=e.key, self_ms=round(e.self_cpu_time_total / 1e3, 3), calls=e.count) for e in ops]


def matmul_peak(device: torch.device, size: Optional[int] = None, repeats: Optional[int] = None) -> dict:
    """The device's dense matmul throughput, measured now: bf16 on CUDA (size 8192), float32 on CPU (size
    2048, the dtype the CPU benchmarks run in), timed after a warm-up. MFU = model FLOP/s over this."""
    cuda = device.type == 'cuda'
    dtype = torch.bfloat16 if cuda else torch.float32
    size = size or (8192 if cuda else 2048)
    repeats = repeats or (50 if cuda else 5)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    out = torch.empty(size, size, device=device, dtype=dtype)
    for _ in range(max(2, repeats // 5)):
        torch.mm(a, b, out=out)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b, out=out)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return dict(flops_per_s=2 * size ** 3 * repeats / elapsed, dtype=str(dtype).removeprefix('torch.'), size=size)


COMPILE_SCOPES = ('model', 'blocks')


def compiled_copy(model: nn.Module, scope: str = 'model', mode: Optional[str] = None,
                  fullgraph: bool = True) -> nn.Module:
    """A compiled copy of `model` with the same weights; `model` itself stays eager.

    scope 'model' compiles the whole forward (as the training engine's `train.compile=True`); 'blocks' compiles
    each of `model.blocks` (torch's "regional compilation": the blocks hold nearly all the FLOPs, and identical
    blocks share one compiled graph, so it compiles in about a third of the time; but each block is a call with
    its own host overhead: on an H200, ViT-B batch 80, forward + backward took 30 ms against 21 ms for 'model').
    Shapes are static (dynamic=False): a benchmark step always has the same batch. fullgraph=True makes a graph
    break an error. Modes with CUDA graphs (reduce-overhead, max-autotune) need scope 'model'.
    """
    if scope not in COMPILE_SCOPES:
        raise ValueError(f'compile scope {scope!r}: expected one of {COMPILE_SCOPES}')
    if scope == 'blocks' and mode in ('reduce-overhead', 'max-autotune'):
        # seen on an H200 (torch 2.11): the blocks share one compiled function, and the CUDA-graph replay of one
        # block overwrites the output the next block still needs ("accessing tensor output of CUDAGraphs that has
        # been overwritten")
        raise ValueError(f'compile mode {mode!r} uses CUDA graphs, which need compile scope "model", not "blocks"')
    # every variant and shape is one more compiled entry of the same forward code: keep them all
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    model = copy.deepcopy(model)
    mode = None if mode in (None, 'default') else mode
    if scope == 'model':
        return torch.compile(model, mode=mode, dynamic=False, fullgraph=fullgraph)
    for block in model.blocks:
        block.compile(mode=mode, dynamic=False, fullgraph=fullgraph)
    return model


def timed(step: Callable[[], None], cuda: bool) -> dict:
    """Wall time of one call of `step`; on CUDA also its peak memory above what was allocated before."""
    if cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize()
    out = dict(time=time.perf_counter() - start)
    if cuda:
        out['peak_bytes'] = torch.cuda.max_memory_allocated() - before
    return out


def write_results(out: Path, data: dict, text: str) -> None:
    """`<out>.json` and `<out>.md`, each written to a temporary file first and renamed: a killed run leaves the
    previous results whole."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix, content in (('.json', json.dumps(data, indent=1) + '\n'), ('.md', text)):
        path = Path(f'{out}{suffix}')
        tmp = path.with_name(path.name + '.tmp')
        tmp.write_text(content)
        os.replace(tmp, path)


def report(out: Path, meta: dict, rows: list, markdown: Callable[[dict, list], str], started: float,
           load_at_start: str) -> dict:
    """The end of a benchmark run: its wall time and the machine load into `meta`, the markdown report printed,
    `<out>.json` and `<out>.md` written (write_results)."""
    meta['wall_s'] = round(time.perf_counter() - started, 1)
    meta['notes'].append(f'machine load: at the start {load_at_start}; at the end {load_note()}')
    text = markdown(meta, rows)
    print('\n' + text)
    write_results(out, dict(meta=meta, results=rows), text)
    print(f'wrote {out}.json and {out}.md')
    return dict(meta=meta, results=rows)
