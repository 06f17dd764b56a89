#!/usr/bin/env bash
# The device checks of issues #17 and #23 as one prepared run on a lent CUDA machine (see docs/performance.md):
# the CUDA capture tests, then capture against a plain forward pass on a random-init ~1B LLaMA-layout
# model in bfloat16, 8 x 1024 tokens, and the profile of one capture. Run from the repository root:
#     bash benchmarks/gpu_session.sh            # writes $OUT/gpu.json and $OUT/gpu.log when OUT is set
# The device image has torch and transformers but may lack pydantic: fetch its wheels into .whl/ here
# first (ignored by git; pass it to the device tool's carry), and they are installed when missing:
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#         pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
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
    # Issue 23: capture at 32 x 1024 on the 1B shape and 8 x 2048 on the 8B shape, then whole runs by stage.
    python3 benchmarks/capture_bench.py --device cuda --model random-llama-1b --sequences 32 --tokens 1024 --repeats ${REPEATS:-7} \
        --variants floor geomcheck --json "$OUT/gpu_1b_32.json"
    python3 benchmarks/capture_bench.py --device cuda --model random-llama-8b --sequences 8 --tokens 2048 --repeats ${REPEATS:-7} \
        --variants floor geomcheck --json "$OUT/gpu_8b.json"
    python3 benchmarks/gpu_run.py --shapes 1b 8b --device cuda --dtype bfloat16 --json "$OUT/gpu_run.json"
} 2>&1 | tee "$OUT/gpu.log"
