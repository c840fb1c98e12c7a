#!/usr/bin/env bash
# The wheels the lent GPU machine's image lacks for `import replicate` (it has torch, transformers, accelerate,
# numpy, scipy, matplotlib, pyyaml, tqdm, sympy, pytest and hypothesis, and no network; pydantic-core needs a newer
# typing_extensions than an image may hold, so it travels too): fetched here into .whl/
# (git ignores it) for Python 3.12 on x86-64 Linux, the image's python3. The versions are this project's tested ones.
# Then, on the device: run(command="bash scripts/device_check.sh", carry=[".whl"], timeout_s=480).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY_VERSION:-3.12}
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 \
  math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2 typing-extensions==4.16.0
ls .whl
du -sh .whl
