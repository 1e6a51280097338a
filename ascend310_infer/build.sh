#!/bin/bash
# Builds ascend310_infer/out/main against the installed MindSpore Ascend package.
set -e
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
ms_path=$($PYTHON -c "import os, mindspore; print(os.path.dirname(mindspore.__file__))" 2>/dev/null) || true
if [ -z "$ms_path" ]; then
    echo "error: cannot import mindspore with $PYTHON (set PYTHON to the interpreter of the MindSpore install)" >&2
    exit 1
fi
if [ ! -f "$ms_path/lib/libmindspore.so" ]; then
    echo "error: $ms_path/lib/libmindspore.so not found: the C++ app needs the MindSpore Ascend package" >&2
    exit 1
fi

rm -rf build out
mkdir -p build out
cd build
cmake .. -DMINDSPORE_PATH="$ms_path"
make -j"$(nproc)"
