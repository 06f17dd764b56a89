#!/usr/bin/env bash
# The device checks of issue #17 as one prepared run on a lent CUDA machine (see docs/performance.md):
# the CUDA capture tests, then capture against a plain forward pass on a random-init ~1B LLaMA-layout
# model in bfloat16, 8 x 1024 tokens, and the profile of one capture. Run from the repository root:
#     bash benchmarks/gpu_session.sh            # writes $OUT/gpu.json and $OUT/gpu.log when OUT is set
# Wheels in .whl/ (pydantic and its parts) are installed first when the machine lacks them.
set -u
OUT=${OUT:-/tmp/geomcheck-gpu}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import pydantic" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
    python3 -m pytest -q -p no:geomcheck -p no:cacheprovider tests/test_capture_device.py tests/test_capture.py 2>&1 | tail -12
    python3 benchmarks/capture_bench.py --device cuda --model random-llama-1b --sequences 8 --tokens 1024 --repeats ${REPEATS:-15} \
        --variants floor geomcheck geomcheck_no_means geomcheck_norms naive --json "$OUT/gpu.json" --profile geomcheck
} 2>&1 | tee "$OUT/gpu.log"
