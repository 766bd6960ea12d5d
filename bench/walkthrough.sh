#!/usr/bin/env bash
# The walk-through (issue 28): every command README.md and the docs pages (docs/*.md) show
# a user, as written and in their order, run in a fresh clone of this repository. One line
# per command: PASS, FAIL or SKIP (with why), its seconds, its page and the command; exit
# status 1 if any command failed.
#
#   bench/walkthrough.sh                  # everything (real data, 400 coins, sweeps: hours)
#   WALK_QUICK=1 bench/walkthrough.sh     # leaves out the long commands (SKIP, with why)
#   WALK_BENCH=1 bench/walkthrough.sh     # also the benchmark scripts of the docs
#   WALK_SKIP='make test,optuna' ...      # leaves out commands containing one of these
#   WALK_ONLY='../shared/data,artifacts/mine' ...  # runs only commands containing one
#   WALK_KEEP=1 ...                       # keeps the clone and its logs (path printed)
#
# The clone is `git clone` of this repository's committed HEAD (commit first). Its .venv
# links to an installed environment (WALK_VENV, default: this repository's .venv, else
# /work/main/.venv): `make install` needs the network, so the clone gets the packages,
# never a `pip install`; PYTHONPATH puts the clone's own huracan first. The shared data
# lie beside the clone as the docs assume (../shared, a link to WALK_SHARED, default: the
# shared/ beside this repository or beside its folder). Placeholders: DIR and LATEST_BARS_DIR are the docs' own
# ../shared/data/binance_spot/1h, ROOT is artifacts. Optional [--flags] are run with
# their flags (the replay's without: see there). Commands that need the network, SLURM, a GPU, Dropbox credentials, root or
# a server that never exits are listed as SKIP with that reason. A command shown twice
# runs once; its second line repeats the first one's result.
set -uo pipefail
{  # parsed whole before it runs: editing this file cannot change a walk under way

SOURCE=$(cd "$(dirname "$0")/.." && pwd)
VENV=${WALK_VENV:-}
if [[ -z $VENV ]]; then
    for candidate in "$SOURCE/.venv" /work/main/.venv; do
        [[ -x $candidate/bin/python ]] && { VENV=$candidate; break; }
    done
fi
[[ -x ${VENV:-}/bin/python ]] || { echo "walkthrough: no environment (set WALK_VENV)" >&2; exit 2; }
SHARED=${WALK_SHARED:-}
if [[ -z $SHARED ]]; then  # beside the repository, or beside its folder (a worktree's)
    for candidate in "$SOURCE/../shared" "$SOURCE/../../shared"; do
        [[ -d $candidate/data ]] && { SHARED=$(cd "$candidate" && pwd); break; }
    done
fi
TIMEOUT=${WALK_TIMEOUT:-3600}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/huracan-walk.XXXXXX")
[[ -n ${WALK_KEEP:-} ]] || trap 'rm -rf "$WORK"' EXIT
CLONE=$WORK/huracan
LOGS=$WORK/logs
mkdir -p "$LOGS"
git clone -q "$SOURCE" "$CLONE" || { echo "walkthrough: git clone $SOURCE failed" >&2; exit 2; }
[[ -n $SHARED && -d $SHARED/data ]] && ln -s "$SHARED" "$WORK/shared"
mkdir "$CLONE/.venv"  # the environment, linked piece by piece; make's stamp is its own
for part in "$VENV"/*; do ln -s "$part" "$CLONE/.venv/"; done
touch "$CLONE/.venv/.installed"
export PYTHONPATH=$CLONE VIRTUAL_ENV=$CLONE/.venv PATH=$CLONE/.venv/bin:$PATH
DIR=../shared/data/binance_spot/1h
echo "walkthrough: $(git -C "$CLONE" log -1 --format='%h %s' | cut -c1-80)"
echo "clone $CLONE, environment $VENV, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"

declare -A SEEN=()
n_pass=0 n_fail=0 n_skip=0 n=0
walk_start=$(date +%s)

say() {  # STATUS SECONDS PAGE COMMAND [NOTE]: one line (a command's first line only)
    local line
    line=$(printf '%-4s %7s  %-13s %s' "$1" "$2" "$3" "${4%%$'\n'*}")
    [[ ${#line} -gt 140 ]] && line="${line:0:137}..."
    echo "$line${5:+  [$5]}"
}

report() {  # as say, counted
    say "$@"
    case $1 in PASS) ((n_pass++)) ;; FAIL) ((n_fail++)) ;; SKIP) ((n_skip++)) ;; esac
}

# step KIND PAGE COMMAND: KIND is run (always), long (not with WALK_QUICK=1), bench (only
# with WALK_BENCH=1) or skip:WHY. EXPECT="0 2" accepts those exit statuses (default 0);
# NEEDS=PATH skips the command when an earlier one did not make PATH.
step() {
    local kind=$1 page=$2 cmd=$3 expect=${EXPECT:-0} needs=${NEEDS:-}
    ((n++))
    if [[ -n ${SEEN[$cmd]:-} ]]; then
        local first=${SEEN[$cmd]}
        say "${first%% *}" - "$page" "$cmd" "as above: ${first#* }"  # counted once
        return
    fi
    local why=""
    case $kind in
        skip:*) why=${kind#skip:} ;;
        long) [[ -n ${WALK_QUICK:-} ]] && why="long: left out by WALK_QUICK=1" ;;
        bench) [[ -z ${WALK_BENCH:-} ]] && why="a benchmark: WALK_BENCH=1 runs it" ;;
    esac
    if [[ -z $why && -n ${WALK_ONLY:-} ]]; then
        local wanted="" pattern
        IFS=, read -ra patterns <<<"$WALK_ONLY"
        for pattern in "${patterns[@]}"; do
            [[ -n $pattern && $cmd == *"$pattern"* ]] && wanted=1
        done
        [[ -z $wanted ]] && why="WALK_ONLY: $WALK_ONLY"
    fi
    if [[ -z $why && -n ${WALK_SKIP:-} ]]; then
        local pattern
        IFS=, read -ra patterns <<<"$WALK_SKIP"
        for pattern in "${patterns[@]}"; do
            [[ -n $pattern && $cmd == *"$pattern"* ]] && why="WALK_SKIP: $pattern"
        done
    fi
    if [[ -z $why && $cmd == *"$DIR"* && ! -d $WORK/shared/data ]]; then
        why="no shared data beside the repository (WALK_SHARED)"
    fi
    if [[ -z $why && -n $needs && ! -e $CLONE/$needs ]]; then
        why="needs $needs, which no earlier command made"
    fi
    if [[ -n $why ]]; then
        report SKIP - "$page" "$cmd" "$why"
        SEEN[$cmd]="SKIP $page"
        return
    fi
    local log start end rc seconds status
    log=$(printf '%s/%03d.log' "$LOGS" "$n")
    start=$(date +%s%N)
    (cd "$CLONE" && timeout "$TIMEOUT" bash -c "$cmd") >"$log" 2>&1 </dev/null
    rc=$?
    end=$(date +%s%N)
    seconds=$(((end - start) / 1000000000)).$((((end - start) / 100000000) % 10))
    status=FAIL
    [[ " $expect " == *" $rc "* ]] && status=PASS
    if [[ $status == PASS && $rc != 0 ]] && grep -q '^Traceback' "$log"; then
        status=FAIL  # an expected error status, but not the one line the docs promise
    fi
    report "$status" "$seconds" "$page" "$cmd" "$([[ $rc != 0 ]] && echo "exit $rc")"
    SEEN[$cmd]="$status $page"
    if [[ $status == FAIL ]]; then
        echo "     --- exit $rc; the end of $log:"
        tail -n 15 "$log" | sed 's/^/     | /'
    fi
}

NETWORK="skip:needs the network"

# ---------------------------------------------------------------- README.md
step long README "make train"
step long README "make test"
step long README "make test-fast"
step long README "make train ARGS=\"data=csv data.path=$DIR\""
step run README "source .venv/bin/activate"
step run README "make docs"
step long README "python train.py"
step run README "python train.py debug=fast"
step long README "python train.py data.n_assets=16 'data.levels={sectors:2}' factor=leader cluster=hierarchy cluster.levels=[3,6]"
step long README "python train.py cluster=average factor=mean head=coin"
step long README "python train.py data=csv data.path=../shared/data/binance_spot/1h data.start=2022-05-08"
step long README "python train.py experiment=fleet_binance"
step long README "python train.py -m factor=pca,none"
step long README "python train.py pipeline=per_coin data=csv data.path=$DIR store.root=artifacts/mine"
NEEDS=artifacts/mine/champions/roster.json \
    step long README "huracan signal --root artifacts/mine --data $DIR --out signals.json"
# exit 2 with one line where the root has no usable champion (docs/pipelines/mechanic.md)
EXPECT="0 2" NEEDS=artifacts/mine/champions/roster.json \
    step long README "huracan mechanic data=csv data.path=$DIR store.root=artifacts/mine mechanic.max_cycles=1"
step run README "python train.py --cfg job cluster=average"
step run README "python -m huracan --help"
step run README "huracan signal --help"

# ---------------------------------------------------------------- docs/quickstart.md
step long quickstart "make train"
step long quickstart "make test"
step run quickstart "source .venv/bin/activate"
step run quickstart "make lint"
step run quickstart "make docs"
step run quickstart "huracan --help"
step long quickstart "python train.py"
step long quickstart "python train.py cluster=ward factor=pca"
step long quickstart "python train.py head=coin encoder=pca"
step long quickstart "python train.py data.n_assets=400 data.years=2 cluster.n_clusters=8"
step long quickstart "python train.py data=csv data.path=../shared/data/binance_spot/1h data.start=2022-05-08"
step long quickstart "python train.py data=csv data.path=$DIR data.symbols=[BTC,ETH,SOL] data.timeframe=4h"
step long quickstart "python train.py data=csv data.path=$DIR data.on_error=skip"
step "$NETWORK" quickstart "python train.py data=ccxt data.exchange=binance data.symbols=[BTC,ETH] data.start=2024-01-01"
step run quickstart "python train.py pipeline=data data=csv data.path=$DIR"
step long quickstart "python train.py labels.horizons=[4] costs.fee_bps=10 validation.n_folds=4"
step "skip:needs a GPU" quickstart "python train.py trainer=gpu"
step run quickstart "python train.py debug=fast"
step long quickstart "python train.py experiment=fleet_binance"
step long quickstart "python train.py experiment=per_coin_400"
step long quickstart "python train.py logger=csv"
step run quickstart "python train.py --cfg job"
step run quickstart "python train.py --cfg job cluster=average"

# ---------------------------------------------------------------- docs/gate.md
step bench gate "nice -n 10 .venv/bin/python bench/bench_gate.py"

# ---------------------------------------------------------------- docs/ensemble.md
step long ensemble "python train.py ensemble=stack"
step bench ensemble "nice -n 10 .venv/bin/python bench/bench_hierarchy.py --ensemble daily --windows design"
# ---------------------------------------------------------------- docs/data.md
step run data "python bench/bad_data_corpus.py"
step "$NETWORK" data "huracan download --exchange binance --symbols BTC,ETH --timeframe 1h --start 2024-01-01"
step long data "python train.py data.n_assets=16 'data.levels={sectors:2}' factor=leader cluster=hierarchy cluster.levels=[3,6]"

# ---------------------------------------------------------------- docs/pipelines/hierarchical.md
step long hierarchical "python train.py"
step long hierarchical "python train.py experiment=fleet_binance"
step long hierarchical "python train.py data.n_assets=400 data.years=2 cluster.n_clusters=8"
step long hierarchical "python train.py -m cluster=ward,global,isolated factor=pca,none"
step long hierarchical "python train.py -m factor=pca,none hydra/launcher=joblib hydra.launcher.n_jobs=2 threads=1"
step long hierarchical "python train.py -m hparams_search=optuna"
NEEDS=multirun step run hierarchical "python -m huracan.compare"
step "skip:a server that runs until stopped" hierarchical "tensorboard --logdir lightning_logs"
step long hierarchical "python train.py -m hparams_search=optuna 'head.patience=choice(2,4,8)'"
step "skip:needs the network (pip install mlflow) and a server" hierarchical "mlflow ui --backend-store-uri mlruns"

# ---------------------------------------------------------------- docs/pipelines/per_coin.md
step run per_coin "python train.py pipeline=per_coin"
step long per_coin "python train.py pipeline=per_coin data=csv data.path=$DIR store.root=artifacts/mine queue.workers=2"
step "skip:needs a Dask scheduler at tcp://scheduler:8786" per_coin "python train.py pipeline=per_coin queue=dask queue.address=tcp://scheduler:8786"
step "skip:needs Dropbox credentials" per_coin "python train.py pipeline=per_coin store=dropbox"
NEEDS=artifacts/champions/roster.json \
    step run per_coin "python -m huracan.roster top 10 --allow BTC,ETH,SOL --block DOGE --root artifacts"
step run per_coin "python -m huracan.roster schema"

# ---------------------------------------------------------------- docs/pipelines/mechanic.md
step long mechanic "python train.py pipeline=per_coin data=csv data.path=$DIR store.root=artifacts/mine"
NEEDS=artifacts/mine/champions/roster.json \
    step long mechanic "python -m huracan.signal --root artifacts/mine --data $DIR --out signals.json"
EXPECT="0 2" NEEDS=artifacts/mine/champions/roster.json \
    step long mechanic "python train.py pipeline=mechanic data=csv data.path=$DIR store.root=artifacts/mine"
EXPECT="0 2" NEEDS=artifacts/mine/champions/roster.json \
    step long mechanic "huracan mechanic data=csv data.path=$DIR store.root=artifacts/mine mechanic.max_cycles=1"

# ---------------------------------------------------------------- docs/pipelines/data.md
step run data-only "python train.py pipeline=data data=csv data.path=$DIR"
step run data-only "python train.py pipeline=data data=csv data.path=$DIR gates.until=2023-03-02"

# ---------------------------------------------------------------- docs/pipelines/replay.md
# without its [options]: the next line, "the same", resumes only a replay of the same options
NEEDS=artifacts/mine/champions/roster.json \
    step long replay "python -m huracan.replay --root artifacts/mine --data $DIR --out replays/may"
NEEDS=artifacts/mine/champions/roster.json \
    step long replay "huracan replay --root artifacts/mine --data $DIR --out replays/may"
NEEDS=artifacts/mine/champions/roster.json \
    step long replay "python train.py pipeline=replay data=csv data.path=$DIR store.root=artifacts/mine"

# ---------------------------------------------------------------- docs/live.md
step long live "python train.py pipeline=per_coin data=csv data.path=$DIR store.root=artifacts/mine"
NEEDS=artifacts/mine/champions/roster.json \
    step long live "python -m huracan.signal --root artifacts/mine --data $DIR --top 20 --allow BTC,ETH,SOL --block DOGE --positions positions.json --out signals.json"
NEEDS=artifacts/mine/champions/roster.json \
    step long live "huracan signal --root artifacts/mine --data $DIR --out signals.json"
NEEDS=artifacts/mine/champions/roster.json step long live "python - <<'PY'
from huracan.serve import Fleet, ServeConfig

fleet = Fleet.load(\"artifacts/mine\")
print(fleet.bars_needed)
panel_or_dir = \"$DIR\"
signals = fleet.signals(panel_or_dir)
positions = {}
signals = fleet.signals(panel_or_dir, positions)
print(signals)
PY"
step run live "huracan train pipeline=per_coin data.end=now store.root=artifacts/demo"
step run live "huracan signal --root artifacts/demo --synthetic --out signals.json"
step run live "huracan mechanic data.end=now store.root=artifacts/demo mechanic.max_cycles=1"
step run live "huracan signal --root artifacts/demo --synthetic"
step "skip:needs Dropbox credentials" live "huracan signal --root dropbox:/huracan --data $DIR"
step "$NETWORK" live "huracan signal --root artifacts/mine --exchange binance"
step run live "mkdir -p logs"
step "skip:a crontab line (cron and the network)" live "cd /srv/huracan && .venv/bin/huracan signal --root artifacts/mine --exchange binance --out signals.json >> logs/signal.log 2>&1"
step "skip:a crontab line (cron and the network)" live "cd /srv/huracan && .venv/bin/huracan mechanic data=ccxt 'data.symbols=[BTC,ETH,SOL]' store.root=artifacts/mine mechanic.max_cycles=1 >> logs/mechanic.log 2>&1"
step "skip:needs root and systemd" live "sudo systemctl daemon-reload"
step "skip:needs root and systemd" live "sudo systemctl enable --now huracan-mechanic.timer huracan-signal.timer"
step "skip:needs systemd" live "systemctl list-timers 'huracan-*'"

# ---------------------------------------------------------------- docs/reliability.md
NEEDS=artifacts/champions step run reliability "huracan doctor artifacts"
NEEDS=artifacts/champions step run reliability "python -m huracan.doctor artifacts"
NEEDS=artifacts/champions step run reliability "huracan doctor artifacts --fix"

# ---------------------------------------------------------------- docs/scale.md
step long scale "python train.py data.n_assets=400 data.years=2 cluster.n_clusters=8"
step long scale "python train.py trainer=ddp_cpu"
step "skip:needs 4 GPUs" scale "python train.py trainer=ddp trainer.devices=4"
step "skip:needs 2 machines of 8 GPUs" scale "python train.py trainer=ddp trainer.devices=8 trainer.num_nodes=2"
step long scale "python train.py -m hydra/launcher=submitit_local factor=pca,none"
step "skip:needs SLURM and GPUs" scale "python train.py -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1 hydra.launcher.cpus_per_task=8 hydra.launcher.timeout_min=120 trainer=gpu factor=pca,none cluster=ward,global"
step "skip:needs a GPU" scale "bench/gpu.sh"

# ---------------------------------------------------------------- docs/development.md, docs/benchmarks.md
step long development "make test"
step long development "make test-fast"
step run development "make lint"
step run development "make docs"
for bench in "bench/bench_data.py" "bench/bench_fracdiff.py" "bench/bench_features.py" \
    "bench/bench_clustering.py" "bench/bench_edge.py" "bench/bench_edge.py per_coin" \
    "bench/bench_edge.py inputs" "bench/bench_fleet.py" "bench/bench_costs.py" \
    "bench/bench_per_coin.py" "bench/bench_hierarchical.py" "bench/bench_threads.py" \
    "bench/bench_gate_speed.py" "bench/throughput.py"; do
    step bench development ".venv/bin/python $bench"
done
step "skip:a server that runs until stopped" development ".venv/bin/mkdocs serve"
for bench in "bench/bench_edge.py synthetic --seeds 5 6 7 8 9 -- thresholds.gate=search" \
    "bench/bench_edge.py synthetic --seeds 0 1 2" "bench/bench_edge.py real" \
    "bench/bench_bootstrap.py" "bench/bench_threads.py --run default" \
    "bench/bench_signals.py" "bench/bench_replay.py"; do
    step bench benchmarks ".venv/bin/python $bench"
done

total=$(($(date +%s) - walk_start))
echo "walkthrough: $n_pass passed, $n_fail failed, $n_skip skipped, $((total / 60)) min $((total % 60)) s"
[[ -n ${WALK_KEEP:-} ]] && echo "kept: $WORK (logs in $LOGS)"
[[ $n_fail -eq 0 ]]
exit
}
