#!/usr/bin/env bash
# Exit 0 where .ci/run's fig1 gate holds: on the references' CPU kind (figures/CPU_KIND) or on one that a committed
# record showed to reproduce them (figures/cross-cpu/EQUAL_KINDS: '#' comments, then '<kind line><TAB><record>');
# exit 1 elsewhere, and where the kind cannot be read. KIND (default: scripts/cpu_kind.sh's line) and ROOT (default:
# this repository) are for tests.
set -u
root=${ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
kind=${KIND-$(bash "$(dirname "$0")/cpu_kind.sh")}
[ -n "$kind" ] || exit 1
[ "$kind" = "$(cat "$root/figures/CPU_KIND" 2>/dev/null)" ] && exit 0
grep -v '^#' "$root/figures/cross-cpu/EQUAL_KINDS" 2>/dev/null | cut -f1 | grep -qxF -- "$kind"
