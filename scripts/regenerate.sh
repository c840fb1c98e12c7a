#!/usr/bin/env bash
# Regenerate the committed tiny-tier references in dependency order (a spec whose runs another spec shares comes
# first), one spec after the other into one run store, logging each spec's wall time and the load. Resumable:
# finished runs in the store are reused, so a second call picks up where the first stopped.
#   bash scripts/regenerate.sh [SPEC ...]     (default: every tiny reference)
set -uo pipefail
cd "$(dirname "$0")/.."
specs=("$@")
if [ ${#specs[@]} -eq 0 ]; then
  specs=(fig1 fig8 lemma lemma-lm fig11 table1 table2 fig12 fig9 fig10 scope fig3 fig4 fig6 fig7 fig2 fig5
         dast-levels dast-table1 dast-ablation)
fi
start=$(date +%s)
for s in "${specs[@]}"; do
  t0=$(date +%s)
  if python -m replicate "$s" --update-reference > "results/regenerate-$s.log" 2>&1; then status=ok; else status=FAILED; fi
  echo "$s $status $(( $(date +%s) - t0 ))s load $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo "total $(( $(date +%s) - start ))s"
