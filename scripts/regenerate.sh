#!/usr/bin/env bash
# Regenerate the committed references of one scale (SCALE, default tiny) in dependency order (a spec whose runs
# another spec shares comes first), one spec after the other into one run store, logging each spec's wall time
# and the load. Resumable: finished runs in the store are reused and interrupted ones continue from their last
# checkpoint (--resume), so a second call picks up where the first stopped, on the same CPU kind only (the
# store's CPU_KIND file; another kind is refused).
#   bash scripts/regenerate.sh [SPEC ...]              (default: every tiny reference)
#   SCALE=small bash scripts/regenerate.sh [SPEC ...]  (default: every small reference, ~2.2 h of 2 cores on the Zen 5,
#                                                    from its parts: fig1 ~29 min (8 seeds), fig3 ~47 (8 Gemma runs;
#                                                    SmolLM2's are fig1's), lemma-lm ~4, fig11 ~50 (24 runs))
#   SCALE=all bash scripts/regenerate.sh               (tiny, then small: what a change of the code fingerprint needs)
set -uo pipefail
cd "$(dirname "$0")/.."
scale=${SCALE:-tiny}
if [ "$scale" = all ]; then
  SCALE=tiny bash "$0" "$@" && SCALE=small exec bash "$0" "$@"
  exit $?
fi
specs=("$@")
if [ ${#specs[@]} -eq 0 ] && [ "$scale" = small ]; then
  specs=(fig1 fig8 fig3 lemma-lm fig11 table2)  # fig8 and fig11's GRPO arm read fig1's runs; table2 fig11's
elif [ ${#specs[@]} -eq 0 ]; then
  specs=(fig1 fig8 lemma lemma-lm lemma-lm-copyrule fig11 table1 table2 fig12 fig9 fig10 scope fig3 fig4 fig6 fig7
         fig2 fig5 dast-levels dast-table1 dast-ablation)
fi
# A reference is bit-exact only on the CPU kind that made it, so a store is resumed only on the kind that began it.
store=${REPLICATE_STORE:-${REPLICATE_HOME:-.}/runs}
kind=$(bash scripts/cpu_kind.sh)
mkdir -p "$store"
if [ -f "$store/CPU_KIND" ] && [ "$(cat "$store/CPU_KIND")" != "$kind" ]; then
  echo "error: $store was begun on '$(cat "$store/CPU_KIND")', this CPU is '$kind'; point REPLICATE_STORE at a new store" >&2
  exit 2
fi
echo "$kind" > "$store/CPU_KIND"
logs=${REPLICATE_HOME:-.}/results
mkdir -p "$logs"
start=$(date +%s)
for s in "${specs[@]}"; do
  t0=$(date +%s)
  if python -m replicate "$s" --scale "$scale" --update-reference --resume > "$logs/regenerate-$scale-$s.log" 2>&1; then status=ok; else status=FAILED; fi
  [ "$status" = ok ] && echo "$kind" > figures/CPU_KIND  # the references' CPU kind (.ci/run gates fig1 only there)
  echo "$s $status $(( $(date +%s) - t0 ))s load $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo "total $(( $(date +%s) - start ))s"
