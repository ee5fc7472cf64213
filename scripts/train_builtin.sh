#!/usr/bin/env bash
# Reproduce the built-in models from scratch (CPU, ~3 h on 2 cores; a GPU is not needed).
# Rerunning resumes every stage from its checkpoint under runs/. The AR twin trains for a number of
# minutes with early stopping; the diffusion model for a number of training tokens (the shipped one:
# 4,000 steps, 15.4M tokens, best held-out checkpoint at step 3,800).
set -euo pipefail
cd "$(dirname "$0")/.."
AR_MINUTES=${1:-25}
DIFFUSION_TOKENS=${2:-15438387}
[ -f runs/data/train.npy ] || python -m dlm_core.train prepare --data runs/data
python -m dlm_core.train train --objective ar --out runs/canvas-ar --minutes "$AR_MINUTES" \
  --lr 1e-3 --decay-steps 1000 --eval-every 100 --patience 4
python -m dlm_core.train export --checkpoint runs/canvas-ar/best.pt --out assets/canvas-ar
# Dream / DiffuLLaMA-style adaptation: the diffusion model starts from the AR twin's best weights.
python -m dlm_core.train train --objective diffusion --out runs/canvas-diffusion --minutes 0 --tokens "$DIFFUSION_TOKENS" \
  --init-from runs/canvas-ar/best.pt --lr 6e-4 --warmup 100 --decay-steps 4000 --eval-every 200
python -m dlm_core.train export --checkpoint runs/canvas-diffusion/best.pt --out assets/canvas-diffusion
