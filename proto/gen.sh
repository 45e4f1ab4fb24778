#!/usr/bin/env bash
# Regenerates the Python code for proto/ into proto/src (committed). Run through `make proto`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/src}
python=${PYTHON:-python}; case "$python" in /*) ;; */*) python="$PWD/$python" ;; esac
find "$out/meshplane/proto" -name '*_pb2*.py*' -delete 2>/dev/null || true
mkdir -p "$out"
cd "$here"
protos=$(find meshplane -name '*.proto' | sort)
"$python" -m grpc_tools.protoc -I . \
  --python_out="$out" --mypy_out="$out" \
  --grpc_python_out="$out" --mypy_grpc_out="$out" \
  $protos
