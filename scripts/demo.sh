#!/usr/bin/env bash
# End-to-end demo, offline: generate a labelled image folder and a tiny TF-Hub module,
# retrain on them (writing every deployable format, an evaluation report when its extra
# is installed), then classify with label-image: one image, the TFLite model, and an
# evaluation of the folder.
# Usage: bash scripts/demo.sh [work_dir]   (default: ./demo_output)
# 60 images a class, 30% for validation: calibration (the "unknown" threshold the TFLite
# call below uses) needs at least 50 validation images.
set -euo pipefail
work=${1:-demo_output}
mkdir -p "$work"
python "$(dirname "$0")/make_demo_data.py" "$work"

report=()
if python -c "import matplotlib, jinja2" 2>/dev/null; then
  report=(--report_dir "$work/report")
fi

retrain \
  --image_dir "$work/images" \
  --tfhub_module "$work/module" \
  --how_many_training_steps 500 \
  --learning_rate 0.1 \
  --validation_percentage 30 \
  --bottleneck_dir "$work/bottlenecks" \
  --summaries_dir "$work/retrain_logs" \
  --checkpoint_path "$work/checkpoint/_retrain_checkpoint" \
  --output_graph "$work/output_graph.pb" \
  --output_labels "$work/output_labels.txt" \
  --saved_model_dir "$work/saved_model" \
  --output_tflite "$work/model.tflite" \
  --random_seed 1 \
  ${report[@]+"${report[@]}"}

if command -v label-image >/dev/null; then
  image=$(find "$work/images/yellow" -name '*.jpg' | sort | head -n 1)
  echo "== label-image on $image"
  label-image --graph "$work/output_graph.pb" --labels "$work/output_labels.txt" --image "$image"
  echo "== the same image through the TFLite model, answering 'unknown' when unsure"
  label-image --graph "$work/model.tflite" --labels "$work/output_labels.txt" --image "$image" --unknown
  echo "== label-image --evaluate on $work/images"
  label-image --graph "$work/output_graph.pb" --labels "$work/output_labels.txt" \
    --image_dir "$work/images" --evaluate --min_accuracy 0.9 --output_format json > "$work/evaluation.json"
  echo "evaluation written to $work/evaluation.json"
fi
echo "Done: $work/output_graph.pb, $work/output_labels.txt, $work/model.tflite, $work/saved_model"
