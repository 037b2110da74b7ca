#!/usr/bin/env bash
# Every GPU figure of the README's benchmark table, in two parts of about 5 minutes each on one H200 (a device
# session allows 10 minutes per command): run from the repository root as
#     bash benchmarks/gpu_suite.sh a      # ESD vs masking (eager and compiled), cosub+ESD vs baseline for ViT-L,
#                                         # the six Table 4 methods' step cost (ViT-L b64)
#     bash benchmarks/gpu_suite.sh b      # ViT-B b256 MFU (compiled), the engine loader-fed vs in-memory, loader
# Results go to $OUT (default benchmarks/results) as <benchmark>_cuda*.{json,md}, each with device, versions,
# date, command and machine load. A benchmark that fails or runs past its limit is reported and the next one runs.
# Needs the project's dependencies; on a machine without network, put their wheels in .whl/ (git-ignored).
set -u
OUT=${OUT:-benchmarks/results}
if [ -d .whl ]; then  # wheels carried to a bare machine without network (timm >= 1.0.31, mmengine, ...)
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/cosub-site .whl/*.whl \
        >/dev/null 2>&1 || echo "installing .whl/*.whl failed; running with the installed packages"
    export PYTHONPATH=/tmp/cosub-site:$PWD
fi
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
status=0

run() {  # run LIMIT_S NAME MODULE ARGS...
    local limit=$1 name=$2
    shift 2
    echo "== $name ($(date -u +%H:%M:%S), limit ${limit} s)"
    timeout "$limit" python3 -m "$@" || { echo "== $name FAILED (exit $?)"; status=1; }
}

case "${1:-}" in
a)
    # compiled (whole model, CUDA graphs) for ViT-B only: compiling ViT-L twice more would not fit the part
    run 150 'ESD vs masking' benchmarks.esd --models vit_l@80 vit_b@80 --rates 0.45 --repeats 5 --warmup 2 \
        --compile-rates 0.45 --compile-runs vit_b@80 --out "$OUT/esd_cuda"
    run 240 'cosub+ESD vs baseline, ViT-L b64' benchmarks.pretrain_step --models vit_l@64 --repeats 5 --warmup 2 \
        --compile-variants baseline cosub_esd --out "$OUT/pretrain_step_cuda_vitl64"
    run 100 'Table 4 methods, ViT-L b64' benchmarks.methods --device cuda --out "$OUT/methods_cuda"
    ;;
b)
    run 130 'ViT-B b256 MFU' benchmarks.pretrain_step --models vit_b@256 --repeats 3 --warmup 1 \
        --compile-variants baseline cosub_esd --out "$OUT/pretrain_step_cuda_vitb256"
    run 90 'engine, eager' benchmarks.train_throughput --device cuda --out "$OUT/train_throughput_cuda"
    run 130 'engine, compiled (CUDA graphs)' benchmarks.train_throughput --device cuda --compile \
        --out "$OUT/train_throughput_cuda_compiled"
    run 60 'data pipeline' benchmarks.data_pipeline --device cuda --workers 15 --images 150 --single 100 \
        --loader-rounds 3 --out "$OUT/data_pipeline_cuda"
    run 60 'LAMB step, timm vs ours' benchmarks.optimizer_step --models vit_l --out "$OUT/optimizer_step_cuda"
    ;;
*)
    echo "usage: bash benchmarks/gpu_suite.sh a|b" >&2
    exit 2
    ;;
esac
exit $status
