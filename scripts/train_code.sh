#!/usr/bin/env bash
# Reproduce the code model pair from scratch: the Python standard library of the running interpreter
# (dlm_core.code_data; the manifest in runs/code-data/manifest.json records its version, files and hashes),
# then the AR twin, then the diffusion model initialised from the AR twin's best weights — the same recipe
# and model size as scripts/train_builtin.sh. CPU is enough; every stage resumes from its checkpoint under
# runs/, so rerun the same command to continue (--minutes counts per run, --tokens in total).
#
#   scripts/train_code.sh [--threads 2] [--stage all|ar|diffusion] [--ar-minutes 35]
#                         [--diffusion-tokens 16384000] [--diffusion-minutes 0]
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=2
STAGE=all
AR_MINUTES=35
DIFFUSION_TOKENS=16384000  # 4,000 steps of 4,096 tokens, the Shakespeare diffusion model's budget
DIFFUSION_MINUTES=0        # 0 = no per-run limit
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
  case "$1" in
    --threads) THREADS=$2 ;;
    --stage) STAGE=$2 ;;
    --ar-minutes) AR_MINUTES=$2 ;;
    --diffusion-tokens) DIFFUSION_TOKENS=$2 ;;
    --diffusion-minutes) DIFFUSION_MINUTES=$2 ;;
    *) echo "unknown option $1 (allowed: --threads, --stage, --ar-minutes, --diffusion-tokens, --diffusion-minutes)" >&2; exit 2 ;;
  esac
  shift 2
done
case "$STAGE" in all|ar|diffusion) ;; *) echo "--stage must be all, ar or diffusion, got $STAGE" >&2; exit 2 ;; esac
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || { echo "--threads must be a positive integer, got $THREADS" >&2; exit 2; }
# The tokenizer trainer (Rust, rayon) and torch's intra-op pool both honour the thread count.
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

# best.pt (lowest held-out loss) is not committed, only checkpoint.pt (the latest step): a run resumed in a
# fresh checkout that has not improved on its best yet has no best.pt, so fall back to the latest weights.
best_or_latest() {
  if [ -f "$1/best.pt" ]; then echo "$1/best.pt"; else echo "no $1/best.pt in this checkout: using $1/checkpoint.pt" >&2; echo "$1/checkpoint.pt"; fi
}

DATA=runs/code-data
if [ ! -f "$DATA/train.npy" ]; then
  python -m dlm_core.train prepare --corpus python --data "$DATA"
  # A fresh checkout re-prepares the token arrays: the tokenizer must come out as committed, or the committed
  # checkpoints would not match their token ids (another Python version, say: git diff shows the manifest).
  if git ls-files --error-unmatch "$DATA/tokenizer/tokenizer.json" >/dev/null 2>&1 && ! git diff --quiet -- "$DATA/tokenizer"; then
    echo "$DATA/tokenizer differs from the committed one: compare git diff -- $DATA/manifest.json" >&2
    exit 1
  fi
fi

if [ "$STAGE" != diffusion ]; then
  python -m dlm_core.train train --objective ar --data "$DATA" --out runs/code-ar --minutes "$AR_MINUTES" \
    --lr 1e-3 --decay-steps 1000 --eval-every 100 --patience 4 --threads "$THREADS"
  python -m dlm_core.train export --checkpoint "$(best_or_latest runs/code-ar)" --data "$DATA" --out assets/code-ar
fi
if [ "$STAGE" != ar ]; then
  # Dream / DiffuLLaMA-style adaptation: the diffusion model starts from the AR twin's best weights.
  python -m dlm_core.train train --objective diffusion --data "$DATA" --out runs/code-diffusion \
    --minutes "$DIFFUSION_MINUTES" --tokens "$DIFFUSION_TOKENS" --init-from "$(best_or_latest runs/code-ar)" \
    --lr 6e-4 --warmup 100 --decay-steps 4000 --eval-every 200 --threads "$THREADS"
  python -m dlm_core.train export --checkpoint "$(best_or_latest runs/code-diffusion)" --data "$DATA" --out assets/code-diffusion
fi
