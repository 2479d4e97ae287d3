#!/usr/bin/env bash
# Run benchmarks/gpu_qlora.py on a lent GPU machine that cannot reach the package index.
#
# The device image has python3 with torch, transformers, accelerate, peft, tokenizers, pyarrow and
# pandas, but not bitsandbytes, trl or datasets. So:
#
#   here:   bash benchmarks/gpu_on_device.sh fetch      # wheels -> .device-wheels/ (~46 MB, gitignored)
#   there:  bash benchmarks/gpu_on_device.sh run [gpu_qlora.py options]   # .device-wheels carried along
#
# `run` installs the carried wheels into a scratch directory (no dependency resolution, nothing
# fetched), puts it and the repository first on PYTHONPATH, prints the versions it runs with, then
# runs the GPU benchmark with a time budget that fits one 10-minute device command, writing
# gpu_qlora.json to $OUT (the device tool's output folder) or benchmark-results/.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.device-wheels
# the device's python3 is 3.12; versions are the ones pyproject.toml was tested with
PACKAGES=(bitsandbytes==0.50.2 trl==1.16.0 datasets==4.8.5 "dill<0.4.2" "multiprocess<0.70.20" peft==0.21.2)

case "${1:-}" in
  fetch)
    mkdir -p "$WHEELS"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64 \
      --dest "$WHEELS" "${PACKAGES[@]}"
    ls -la "$WHEELS"
    du -sh "$WHEELS"
    ;;
  run)
    shift
    site=$(mktemp -d /tmp/playpen-site.XXXX)
    python3 -m pip install --quiet --no-index --no-deps --target "$site" "$WHEELS"/*.whl
    export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
    python3 - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "bitsandbytes"):
    module = importlib.import_module(name)
    print(f"{name} {module.__version__} ({module.__file__})")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
    out="${OUT:-benchmark-results}"
    mkdir -p "$out"
    python3 benchmarks/gpu_qlora.py --time_budget "${TIME_BUDGET:-420}" --out "$out/gpu_qlora.json" "$@"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_on_device.sh fetch | run [gpu_qlora.py options]" >&2
    exit 2
    ;;
esac
