#!/usr/bin/env bash
# Check sclib on a CUDA machine in under 10 minutes and print a short summary:
#   1. the GPU tests (pytest -m gpu),
#   2. a short speed benchmark (quick and paper profiles, baseline against fast path),
#   3. a quick-profile training run on ELPV with test AUROC.
#
# Usage: bash benchmarks/gpu_check.sh [--cpu-smoke]
#   --cpu-smoke runs the same three stages on the CPU at tiny sizes, to check the script
#   itself on a machine without a GPU.
# Results go to $OUT when it is set (else a new temporary folder): gpu_tests.log,
# train_speed.json/.log, training.json/.log and runs/.
# The exit status is 0 when every stage passed.

set -uo pipefail

cd "$(dirname "$0")/.."
MODE="${1:-gpu}"
OUT_DIR="${OUT:-$(mktemp -d -t sclib-gpu-check-XXXXXX)}"
mkdir -p "$OUT_DIR"
STARTED=$SECONDS

# The same environment as `make venv`, created only when it is missing.
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with make venv"
    make venv || { echo "make venv failed"; exit 2; }
fi
# shellcheck disable=SC1091
. .venv/bin/activate

if [ "$MODE" = "--cpu-smoke" ]; then
    DEVICE=cpu
    SPEED_OPTIONS=(--profile tiny --backbone simple_cnn --image-size 64 --batch-size 6
                   --steps 1 --warmup 0 --eval-images 12 --variants all)
    TRAIN_PROFILE=tiny
elif [ "$MODE" = "gpu" ]; then
    DEVICE=cuda
    # 8 loader workers give the baseline the parallel decoding it would have on this machine.
    SPEED_OPTIONS=(--profile both --steps 5 --warmup 2 --eval-images 256 --variants all
                   --baseline-workers 8)
    TRAIN_PROFILE=quick
    if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "CUDA is not available to torch on this machine; use --cpu-smoke to check the script"
        exit 2
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
    echo "unknown option $MODE; expected --cpu-smoke or nothing"
    exit 2
fi

declare -A STATUS

echo "== 1/3 GPU tests"
timeout 240 python -m pytest tests -m gpu -q > "$OUT_DIR/gpu_tests.log" 2>&1
STATUS[gpu_tests]=$?
tail -n 3 "$OUT_DIR/gpu_tests.log"

echo "== 2/3 speed benchmark"
timeout 300 python benchmarks/train_speed.py "${SPEED_OPTIONS[@]}" --device "$DEVICE" \
    --json "$OUT_DIR/train_speed.json" 2>&1 | tee "$OUT_DIR/train_speed.log"
STATUS[speed]=$?

echo "== 3/3 ELPV training ($TRAIN_PROFILE profile)"
timeout 300 python - "$TRAIN_PROFILE" "$DEVICE" "$OUT_DIR" > "$OUT_DIR/training.log" 2>&1 <<'EOF'
import json
import sys
from pathlib import Path

from sclib.config import get_profile
from sclib.experiment import run_experiment
from sclib.notebook import prepare_data_root

profile, device, out_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
overrides = {"backbone": "simple_cnn", "weights": None} if profile == "tiny" else {}
config = get_profile(profile, device=device, **overrides)
result = run_experiment(
    config, prepare_data_root("data/elpv"), run_parent=out_dir / "runs", progress=False
)
history = result.history
summary = {
    "profile": profile,
    "device": device,
    "auroc": result.metrics["overall"]["auroc"],
    "aupr": result.metrics["overall"]["aupr"],
    "steps": len(history),
    "train_s": result.timing["train_s"],
    "images_per_s": config.batch_size * len(history) / result.timing["train_s"],
    "run_dir": str(result.run_dir),
}
(out_dir / "training.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary))
EOF
STATUS[training]=$?
tail -n 1 "$OUT_DIR/training.log"

echo
echo "== summary ($((SECONDS - STARTED)) s, outputs in $OUT_DIR)"
for stage in gpu_tests speed training; do
    if [ "${STATUS[$stage]}" -eq 0 ]; then verdict=passed; else verdict="FAILED (${STATUS[$stage]})"; fi
    echo "$stage: $verdict"
done
python - "$OUT_DIR" <<'EOF'
import json
import sys
from pathlib import Path

out_dir = Path(sys.argv[1])
speed_file, training_file = out_dir / "train_speed.json", out_dir / "training.json"
if speed_file.exists():
    speed = json.loads(speed_file.read_text())
    print(f"device: {speed['machine']['cuda'] or speed['machine']['cpu']}")
    for name, profile in speed["profiles"].items():
        baseline, fast = profile["baseline"], profile["fast"]
        print(
            f"{name}: train {baseline['train_images_per_s']:.1f} -> "
            f"{fast['train_images_per_s']:.1f} images/s ({profile['ratio']['train']:.2f}x), "
            f"score {baseline['inference_images_per_s']:.1f} -> "
            f"{fast['inference_images_per_s']:.1f} images/s "
            f"({profile['ratio']['inference']:.2f}x)"
        )
        for row in profile["variants"]:
            print(f"  {row['name']:<22} {row['train_images_per_s']:8.1f} images/s")
if training_file.exists():
    training = json.loads(training_file.read_text())
    print(
        f"training {training['profile']}: AUROC {training['auroc']:.4f}, "
        f"{training['steps']} steps in {training['train_s']:.0f} s "
        f"({training['images_per_s']:.1f} images/s)"
    )
EOF

for stage in gpu_tests speed training; do
    [ "${STATUS[$stage]}" -eq 0 ] || exit 1
done
exit 0
