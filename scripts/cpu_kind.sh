#!/usr/bin/env bash
# The CPU kind, one line: model name, family, model and stepping (lscpu). A reference is bit-exact only on the kind
# that made it; regenerate.sh stamps its store and figures/CPU_KIND with this line, and .ci/run gates fig1 only here.
lscpu | grep -E '^(Model name|CPU family|Model|Stepping):' | tr -s ' ' | tr '\n' ';'
echo
