#!/usr/bin/env bash
# Reproduce the built-in models from scratch (CPU, ~2 h 15 min on 2 cores; a GPU is not needed).
# Rerunning resumes every stage from its checkpoint under runs/. Minutes per stage are arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
AR_MINUTES=${1:-25}
DIFFUSION_MINUTES=${2:-105}
[ -f runs/data/train.npy ] || python -m dlm_core.train prepare --data runs/data
python -m dlm_core.train train --objective ar --out runs/canvas-ar --minutes "$AR_MINUTES" \
  --lr 1e-3 --decay-steps 1000 --eval-every 100 --patience 4
python -m dlm_core.train export --checkpoint runs/canvas-ar/best.pt --out assets/canvas-ar
# Dream / DiffuLLaMA-style adaptation: the diffusion model starts from the AR twin's best weights.
python -m dlm_core.train train --objective diffusion --out runs/canvas-diffusion --minutes "$DIFFUSION_MINUTES" \
  --init-from runs/canvas-ar/best.pt --lr 6e-4 --warmup 100 --decay-steps 4000 --eval-every 200
python -m dlm_core.train export --checkpoint runs/canvas-diffusion/best.pt --out assets/canvas-diffusion
