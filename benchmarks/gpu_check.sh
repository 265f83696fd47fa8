#!/usr/bin/env bash
# One prepared GPU check (under 9 minutes on an H100/H200): the CUDA tests of igos (at most 90 s), then the iGOS++
# ResNet-50 throughput benchmark (fp32 batch 1 vs 32, bf16, channels-last, torch.compile if the budget allows;
# at most 420 s, its report rewritten after every setting). Results go to $OUT (default /tmp/gpu-check).
set -u
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/igos -k cuda 2>&1 | tail -n 15 | tee "$out/cuda_tests.log"
timeout 420 python3 -m benchmarks.igos_gpu --budget-seconds 330 --out "$out/igos_gpu.md" 2>&1 \
  | tail -n 60 | tee "$out/igos_gpu.log"
