#!/bin/bash
# COCO evaluation of a checkpoint on Ascend device 0. Outputs in ./eval: log, env.log, mAP.log,
# results.pkl.bbox.json. Extra --key=value arguments go to eval.py.
# FOREGROUND=1 waits and returns eval.py's exit status (default: background, as the original).
USAGE="Usage: bash run_eval_ascend.sh [VALIDATION_JSON_FILE] [CHECKPOINT_PATH] [COCO_ROOT] [MINDRECORD_DIR](option) [--key=value ...]"
source "$(dirname "$0")/train_common.sh"
split_args "$@"
check_count 3 4
ANNO_PATH=$(get_real_path "${ARGS[0]}")
CHECKPOINT_PATH=$(get_real_path "${ARGS[1]}")
[ -f "$ANNO_PATH" ] || die "VALIDATION_JSON_FILE=$ANNO_PATH is not a file"
[ -f "$CHECKPOINT_PATH" ] || die "CHECKPOINT_PATH=$CHECKPOINT_PATH is not a file"
check_data "${ARGS[2]}" "${ARGS[3]}"

check_device Ascend
ulimit -u unlimited 2> /dev/null || true  # as the original, where the system allows it
export DEVICE_NUM=1 RANK_SIZE=1 DEVICE_ID=0 RANK_ID=0
rm -rf eval && mkdir eval && cd eval || exit 1
env > env.log
echo "start eval on Ascend device $DEVICE_ID in $PWD"
run_logged log "$PYTHON" "$ROOT/eval.py" --config_path="$ROOT/default_config.yaml" --device_id=0 \
    --anno_path="$ANNO_PATH" --checkpoint_path="$CHECKPOINT_PATH" --coco_root="$COCO_ROOT" \
    --mindrecord_dir="$MINDRECORD_DIR" "${OPTIONS[@]}"
