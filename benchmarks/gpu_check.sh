#!/usr/bin/env bash
# One prepared GPU check (about 4 minutes on an H100): the CUDA tests of igos, then the speed benchmark
# at batch 1 and 16 with the batch-1-vs-32 throughput. Results go to $OUT (default /tmp/gpu-check).
set -u
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/igos/test_batching_and_shapes.py -k cuda 2>&1 \
  | tail -n 15 | tee "$out/cuda_tests.log"
timeout 420 python3 benchmarks/igos_speed.py --device cuda --batch-sizes 1,16 --images 16 --gpu-throughput \
  --out "$out/igos_speed_cuda.md" 2>&1 | tail -n 40
