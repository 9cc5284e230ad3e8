#!/usr/bin/env bash
# A nightly retraining job for CI: retrain on a restored bottleneck cache, gate the
# model on a holdout folder, and leave the cache ready to be saved for the next run.
#
#   IMAGES=data/photos HOLDOUT=data/holdout bash scripts/ci_retrain.sh
#
# Restore $CACHE before this script and save it after (your CI's cache step); only
# new or changed images are computed. Exit status: 0 the model passed; 1 retraining
# failed or the model is below $MIN_ACCURACY; 2 a flag is wrong; 130 interrupted.
set -euo pipefail
IMAGES=${IMAGES:?set IMAGES to the training folder (one sub-folder per class)}
HOLDOUT=${HOLDOUT:?set HOLDOUT to a labelled folder the model never trains on}
CACHE=${CACHE:-.cache/bottlenecks}
OUT=${OUT:-build/model}
MODULE=${MODULE:-https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5}
MIN_ACCURACY=${MIN_ACCURACY:-0.9}
SEED=${SEED:-42}

mkdir -p "$OUT"
retrain \
  --image_dir "$IMAGES" \
  --tfhub_module "$MODULE" \
  --bottleneck_dir "$CACHE" \
  --output_graph "$OUT/output_graph.pb" \
  --output_labels "$OUT/output_labels.txt" \
  --output_tflite "$OUT/model.tflite" \
  --saved_model_dir "$OUT/saved_model" \
  --summaries_dir "$OUT/logs" \
  --checkpoint_path "$OUT/checkpoint/_retrain_checkpoint" \
  --random_seed "$SEED"

label-image \
  --graph "$OUT/output_graph.pb" --labels "$OUT/output_labels.txt" \
  --image_dir "$HOLDOUT" --evaluate --min_accuracy "$MIN_ACCURACY" \
  --output_format json > "$OUT/evaluation.json"

# Same seed, data and flags give byte-identical files: compare these between runs.
sha256sum "$OUT/output_graph.pb" "$OUT/output_labels.txt" | tee "$OUT/SHA256SUMS"
