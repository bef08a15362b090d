#!/usr/bin/env bash
# Build the sdist and a wheel (the wheel built FROM the sdist, which proves the sdist is
# complete), repair it into a manylinux wheel with the OpenMP runtime vendored
# (auditwheel + patchelf), then install that wheel into a fresh virtual environment with
# no compiler in reach (CC=false) and run the test suite against the installed wheel,
# from a directory outside the source tree.
#
#   bash tools/build_wheel.sh [OUTDIR]      (default: dist/)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PY=${PYTHON:-python3}

echo "== build sdist and wheel"
"$PY" -m venv "$WORK/tools"
"$WORK/tools/bin/pip" install -q build auditwheel patchelf
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$ROOT"
SDIST=$(ls "$WORK"/dist/fastconv-*.tar.gz)
WHEEL=$(ls "$WORK"/dist/fastconv-*.whl)

echo "== sdist contents"
"$WORK/tools/bin/python" - "$SDIST" <<'PY'
import sys, tarfile
names = tarfile.open(sys.argv[1]).getnames()
base = names[0].split("/")[0]
rel = {n[len(base) + 1:] for n in names if "/" in n}
need = ["setup.py", "pyproject.toml", "README.md", "LICENSE", "src/_conv2d.pyx",
        "src/omp_shim.h", "src/omp_shim.pxd", "src/conv/conv.h",
        "src/conv/isa_config.h", "fastconv/__init__.py",
        "fastconv/data/LICENSE-fashion-mnist.txt"]
missing = [n for n in need if n not in rel]
bad = [n for n in rel if n.endswith((".so", ".pyd", ".o", ".pyc")) or n.startswith(
    ("build/", "dist/")) or "__pycache__" in n or n.endswith(".c")]
print(f"{len(rel)} files; missing={missing}; unwanted={bad}")
sys.exit(1 if missing or bad else 0)
PY

echo "== auditwheel repair"
PATH="$WORK/tools/bin:$PATH" "$WORK/tools/bin/auditwheel" show "$WHEEL"
PATH="$WORK/tools/bin:$PATH" "$WORK/tools/bin/auditwheel" repair -w "$WORK/wheelhouse" "$WHEEL"
REPAIRED=$(ls "$WORK"/wheelhouse/fastconv-*.whl)
"$WORK/tools/bin/python" - "$REPAIRED" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
libs = [n for n in names if ".libs/" in n]
print("vendored:", libs)
if not any("gomp" in n or "omp" in n for n in libs):
    sys.exit("the repaired wheel does not vendor an OpenMP runtime")
PY

echo "== install the repaired wheel with no compiler and test it"
"$PY" -m venv "$WORK/test"
CC=false CXX=false "$WORK/test/bin/pip" install -q --only-binary=:all: "$REPAIRED" \
    -r "$ROOT/requirements-test.txt"
mkdir "$WORK/run"
cp -r "$ROOT/tests" "$WORK/run/tests"
cp -r "$ROOT/bench" "$WORK/run/bench"     # tests/test_frontier_smoke.py runs the harness
cp "$ROOT/pyproject.toml" "$WORK/run/"
cd "$WORK/run"
CC=false CXX=false "$WORK/test/bin/python" -c "
import fastconv, sys
print(fastconv.__file__)
assert 'site-packages' in fastconv.__file__, 'not testing the installed wheel'
fastconv.show_config()
sys.exit(0 if fastconv.config()['openmp'] else 'the wheel has no OpenMP')"
CC=false CXX=false "$WORK/test/bin/python" -m pytest -q tests -p no:cacheprovider

cp "$SDIST" "$REPAIRED" "$OUT/"
echo "== wheel OK: $(basename "$REPAIRED") and $(basename "$SDIST") in $OUT"
