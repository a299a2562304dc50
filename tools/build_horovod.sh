#!/usr/bin/env bash
# Build Horovod 0.28.1 (PyTorch + Gloo, no MPI/TensorFlow/MXNet) against the torch in $PYTHON's env,
# and cache the wheel outside the repo, keyed by the horovod, torch and Python versions.
#
# Why a fix is needed: Horovod 0.28.1's build forces -std=c++14, but torch >= 2.1's headers require
# C++17 ("C++17 or later compatible compiler is required"); CXXFLAGS / CMAKE_CXX_STANDARD do not help
# because the build appends its own flag after them. The fix: build with a compiler wrapper that
# rewrites -std=c++14 into -std=c++17 and passes everything else through untouched.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
HOROVOD_VERSION=${HOROVOD_VERSION:-0.28.1}
CACHE=${LAUNCHDECK_WHEEL_CACHE:-$HOME/.cache/launchdeck/wheels}
torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__.replace("+", "_"))')
py_tag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
key="horovod-${HOROVOD_VERSION}-torch-${torch_version}-${py_tag}"
mkdir -p "$CACHE/$key"

wheel=$(ls "$CACHE/$key"/horovod-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir "$work/bin"
  for compiler in c++ g++; do
    cat > "$work/bin/$compiler" <<WRAP
#!/bin/sh
for a do
  shift
  case \$a in -std=c++14|-std=gnu++14) a=-std=c++17;; esac
  set -- "\$@" "\$a"
done
exec /usr/bin/$compiler "\$@"
WRAP
    chmod +x "$work/bin/$compiler"
  done
  "$PYTHON" -m pip install -q cmake  # Horovod's build needs CMake >= 3.13
  echo "building $key (a few minutes; cached afterwards in $CACHE/$key)" >&2
  PATH="$work/bin:$(dirname "$PYTHON"):$PATH" CC=/usr/bin/gcc CXX="$work/bin/g++" \
    HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
    HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=-j2 \
    "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation --no-binary horovod \
      -w "$work/dist" "horovod==${HOROVOD_VERSION}"
  cp "$work/dist"/horovod-*.whl "$CACHE/$key/"
  wheel=$(ls "$CACHE/$key"/horovod-*.whl | head -n1)
fi
"$PYTHON" -m pip install -q --no-deps --force-reinstall "$wheel"
"$PYTHON" -m pip install -q cffi cloudpickle psutil pyyaml packaging  # its runtime deps (no torch pulled in)
"$PYTHON" -c 'import sys, horovod, horovod.torch as hvd; assert hvd.gloo_built(), "built without Gloo"; print("horovod", horovod.__version__, "with PyTorch + Gloo, wheel", sys.argv[1])' "$wheel"
