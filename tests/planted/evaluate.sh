#!/usr/bin/env bash
# Planted-bug evaluation (issue 10): for each tests/planted/NAME.patch, build `fathom` from a
# copy of this commit with the patch applied, explore `scenarios/swarm.toml` seeds 1..500 until
# the first violation (then, if swarm missed, the shipped scenario aimed at the bug's class),
# shrink that seed's fault schedule and print one line per bug:
#
#   bug  found-at  scenario  violated-bounds  faults-before->after-shrink
#
# A seed counts only if the unpatched build passes it: a violation both builds share (a
# throughput bound too tight for a seed's drawn disk, say) says nothing about the planted bug,
# and the exploration goes on after it. The unpatched build is made first, from HEAD.
# Usage: tests/planted/evaluate.sh [NAME...]   (default: every patch, most-judged classes first)
# Environment: SEEDS (default 500), JOBS (default 2), SEED_TIMEOUT_S (per-seed wall limit,
# default 60), BASE_FATHOM (an unpatched `fathom` of this commit; default: built first and
# kept as OUT/fathom-base), PLANTED_TARGET (cargo target dir shared by the builds, default target/planted),
# PLANTED_TREE (where the patched copy is checked out, default $TMPDIR/fathom-planted-tree),
# OUT (run folders and logs, default target/planted-runs).
#
# The working tree is never touched: the patch goes into a detached `git worktree` of HEAD,
# removed on exit. Commit (or stash) first: uncommitted changes are not in the copy.
set -euo pipefail

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
seeds=${SEEDS:-500}
jobs=${JOBS:-2}
seed_timeout_s=${SEED_TIMEOUT_S:-60}
target=${PLANTED_TARGET:-$repo/target/planted}
tree=${PLANTED_TREE:-${TMPDIR:-/tmp}/fathom-planted-tree}
out=${OUT:-$repo/target/planted-runs}
mkdir -p "$out"

# The shipped scenario that aims at each class, tried when swarm finds nothing.
fallback() {
    case "$1" in
        quorum | election | truncation) echo scenarios/leader-crash-acks-all.toml ;;
        fsync-ordering | recovery) echo scenarios/power-loss-acks-all.toml ;;
        vote-persistence) echo scenarios/elections.toml ;;
        read-visibility) echo scenarios/partition-heal.toml ;;
        idempotence) echo scenarios/idempotent-producer.toml ;;
        *) echo "" ;;
    esac
}

cleanup() {
    git -C "$repo" worktree remove --force "$tree" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Checks out HEAD into $tree, applies patch $1 if given, builds `fathom` into $target.
build_copy() {
    cleanup
    git -C "$repo" worktree add --detach --force "$tree" HEAD >/dev/null 2>&1
    if [ -n "${1:-}" ]; then git -C "$tree" apply "$1"; fi
    (cd "$tree" && CARGO_TARGET_DIR=$target cargo build --release -q -p fathom)
}

# Prints "SEED BOUNDS" of the first violating seed in an explore result file (else of the first
# seed over the wall-time limit, with bounds `over_wall_time`), or nothing.
first_violation() {
    python3 - "$1" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit(0)  # explore wrote no result: nothing found
v = sorted(r["violating"], key=lambda v: v["seed"])
# A seed over the wall-time limit is a finding too (the patch made a run hang), but only
# when no seed violated a bound: a hang cannot be shrunk the same way.
t = sorted(r.get("timed_out", []), key=lambda t: t["seed"])
if v:
    print(v[0]["seed"], ",".join(v[0]["bounds"]))
elif t:
    print(t[0]["seed"], "over_wall_time")
EOF
}

evaluate() {
    local bug=$1 patch=$repo/tests/planted/$1.patch
    [ -f "$patch" ] || { echo "$bug: no such patch $patch" >&2; return 2; }
    build_copy "$patch" >"$out/$bug.build.log" 2>&1 || {
        echo "$bug: build failed, see $out/$bug.build.log"
        return 1
    }
    local fathom=$target/release/fathom found="" scenario="" shared=""
    for scenario in scenarios/swarm.toml $(fallback "$bug"); do
        local from=1 name
        name=$(basename "$scenario" .toml)
        while [ "$from" -le "$seeds" ]; do
            local result=$out/$bug.$name.$from.json
            (cd "$tree" && "$fathom" explore "$scenario" --seeds "$from..$((seeds + 1))" \
                --stop-after 1 --jobs "$jobs" --seed-timeout-s "$seed_timeout_s" \
                --result "$result") >"$out/$bug.explore.log" 2>&1 || true
            found=$(first_violation "$result")
            [ -n "$found" ] || break
            # The unpatched build on the same seed: a shared violation does not count.
            if (cd "$tree" && "$base" run "$scenario" --seed "${found%% *}" \
                --out "$out/$bug-base-run") >/dev/null 2>&1; then
                break
            fi
            shared="$shared ${found%% *}"
            from=$((${found%% *} + 1))
            found=""
        done
        [ -n "$found" ] && break
    done
    if [ -n "$shared" ]; then
        echo "$bug: seeds that fail the unpatched build too (ignored):$shared" >&2
    fi
    if [ -z "$found" ]; then
        echo "$bug  not found in $seeds  (swarm $(fallback "$bug"))"
        return 0
    fi
    local seed=${found%% *} bounds=${found#* } run=$out/$bug-run
    rm -rf "$run"
    (cd "$tree" && "$fathom" run "$scenario" --seed "$seed" --out "$run") >"$out/$bug.run.log" 2>&1 || true
    (cd "$tree" && "$fathom" shrink "$run" --seed-timeout-s "$seed_timeout_s") >"$out/$bug.shrink.log" 2>&1 || true
    local shrunk
    shrunk=$(grep -o 'from [0-9]* to [0-9]* faults\( (disk fault models on: [^)]*)\)\?' \
        "$run/shrunk.toml" 2>/dev/null | head -1 || true)
    echo "$bug  seed $seed  $scenario  $bounds  ${shrunk:-shrink failed, see $out/$bug.shrink.log}"
}

base=${BASE_FATHOM:-}
if [ -z "$base" ]; then
    build_copy >"$out/base.build.log" 2>&1 || {
        echo "unpatched build failed, see $out/base.build.log"
        exit 1
    }
    base=$out/fathom-base
    cp "$target/release/fathom" "$base"
fi

bugs=("$@")
if [ ${#bugs[@]} -eq 0 ]; then
    bugs=(quorum election fsync-ordering vote-persistence truncation read-visibility recovery idempotence)
fi
for bug in "${bugs[@]}"; do
    evaluate "$bug"
done
