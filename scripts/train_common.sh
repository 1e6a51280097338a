#!/bin/bash
# Shared by the launchers in scripts/ (sourced, not run): argument splitting and checks, the msrun launch.
# The caller sets USAGE before sourcing and calls the functions below. A usage error is one line
# `<script>: error: ...` and the usage line on stderr, exit status 2 (as the Python entry points).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python

# Positional arguments go to ARGS, `--key=value` arguments (passed on to train.py) to OPTIONS.
split_args() {
    ARGS=(); OPTIONS=()
    local arg
    for arg in "$@"; do
        if [[ "$arg" == --* ]]; then OPTIONS+=("$arg"); else ARGS+=("$arg"); fi
    done
}

die() {
    echo "$(basename "$0"): error: $1" >&2
    echo "$USAGE" >&2
    exit 2
}

check_count() {  # check_count MIN MAX
    if [ ${#ARGS[@]} -lt "$1" ] || [ ${#ARGS[@]} -gt "$2" ]; then
        die "expected $1 to $2 positional arguments, got ${#ARGS[@]}"
    fi
}

# check_device TARGET: fail now, not in the background run's log, when this MindSpore cannot run TARGET.
check_device() {
    local message
    message=$(cd "$ROOT" && GLOG_v=3 "$PYTHON" -m src.tools.check_device "$1" 2>&1 >/dev/null) || die "${message##*error: }"
}

get_real_path() {
    if [ "${1:0:1}" == "/" ]; then echo "$1"; else realpath -m "$PWD/$1"; fi
}

check_positive_int() {  # check_positive_int NAME VALUE
    [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || die "$1=$2 is not a positive integer"
}

check_device_id() {
    [[ "$1" =~ ^[0-9]+$ ]] || die "DEVICE_ID=$1 is not a non-negative integer"
}

# Sets PRETRAINED: an absolute file path, or `none` (train from scratch).
check_pretrained() {
    if [ "${1,,}" == "none" ]; then
        PRETRAINED=none
    else
        PRETRAINED=$(get_real_path "$1")
        [ -f "$PRETRAINED" ] || die "PRETRAINED_MODEL=$PRETRAINED is not a file (or 'none' to train from scratch)"
    fi
}

# Sets COCO_ROOT and MINDRECORD_DIR (default <COCO_ROOT>/FASTERRCNN_MINDRECORD/, created on the first run).
check_data() {  # check_data COCO_ROOT [MINDRECORD_DIR]
    COCO_ROOT=$(get_real_path "$1")
    [ -d "$COCO_ROOT" ] || die "COCO_ROOT=$COCO_ROOT is not a directory"
    MINDRECORD_DIR=$COCO_ROOT/FASTERRCNN_MINDRECORD/
    if [ -n "$2" ]; then
        MINDRECORD_DIR=$(get_real_path "$2")
        [ -d "$MINDRECORD_DIR" ] || die "MINDRECORD_DIR=$MINDRECORD_DIR is not a directory"
    fi
}

# run_logged LOGFILE CMD...: in the background (the original's way), or waiting when FOREGROUND=1.
run_logged() {
    local log=$1; shift
    if [ "${FOREGROUND:-0}" == "1" ]; then
        "$@" > "$log" 2>&1
        return $?
    fi
    "$@" > "$log" 2>&1 &
    echo "started in the background (pid $!): tail -f $PWD/$log"
}

# run_msrun_training TARGET CONFIG: data-parallel train.py through msrun (MindSpore's launcher), DEVICE_NUM (ARGS[0])
# workers on this node, one rank each. Across machines (environment): NODE_NUM nodes (default 1), each starting
# this script with the same DEVICE_NUM and its NODE_RANK (0..NODE_NUM-1, default 0); MASTER_ADDR:MASTER_PORT is
# node 0's address (default 127.0.0.1:8118), where msrun's scheduler listens. Ranks: NODE_RANK * DEVICE_NUM + i.
run_msrun_training() {
    local target=$1 config=$2
    local device_num=${ARGS[0]} node_num=${NODE_NUM:-1} node_rank=${NODE_RANK:-0}
    check_positive_int DEVICE_NUM "$device_num"
    check_positive_int NODE_NUM "$node_num"
    [[ "$node_rank" =~ ^[0-9]+$ ]] && [ "$node_rank" -lt "$node_num" ] \
        || die "NODE_RANK=$node_rank is not one of 0..$((node_num - 1)) (NODE_NUM=$node_num)"
    local msrun
    msrun=$(dirname "$PYTHON")/msrun
    [ -x "$msrun" ] || msrun=msrun
    command -v "$msrun" > /dev/null || die "msrun (MindSpore's launcher) not found next to $PYTHON nor on PATH"

    export RANK_SIZE=$((device_num * node_num))
    # msrun starts `python` from PATH: make it the one that has MindSpore.
    export PATH=$(dirname "$PYTHON"):$PATH
    mkdir -p train_parallel && cd train_parallel || exit 1
    env > env.log
    echo "start training on $device_num $target workers of node $node_rank of $node_num ($RANK_SIZE in all) in $PWD"
    run_logged log "$msrun" --worker_num="$RANK_SIZE" --local_worker_num="$device_num" --node_rank="$node_rank" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-8118}" --log_dir=msrun_log \
        --join=True "$ROOT/train.py" --config_path="$ROOT/$config" --device_target="$target" --run_distribute=True \
        --coco_root="$COCO_ROOT" --mindrecord_dir="$MINDRECORD_DIR" --pre_trained="$PRETRAINED" "${OPTIONS[@]}"
}
