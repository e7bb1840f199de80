#!/usr/bin/env bash
# The evaluation engine on one H100 (about 8 minutes): the VideoChat-Flash-2B shape (random weights) at 512 and 1,024
# frames in bf16, sdpa against flash_attention_2 (when flash-attn imports), per question (reuse=false) against video
# by video with reuse: the card's four arms and the two keep-every-frame arms; then a few SCT steps of the 2B shape
# (bf16, 256 frames, gradient checkpointing; samples/s and peak memory, with and without workers and the feature
# cache); then, where two GPUs are visible, a 2-process data-parallel evaluation job (torchrun run.py trainer=ddp
# device=cuda). Results go to $OUT (the device
# tool's folder) or ./gpu_check. The lent machines have torch, transformers and lightning but not PyAV, Hydra or
# MLflow: carry their wheels (the device tool's README says how) and install them first.
#   bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0))" \
  | tee "$out/device.txt" || exit 1
kernels="sdpa"
python3 -c "import flash_attn" 2>/dev/null && kernels="sdpa flash_attention_2"
for frames in 512 1024; do
  for attn in $kernels; do
    timeout 150 python3 -m xcomp.bench.evaluation --shape real --videos 1 --questions 4 --frames "$frames" \
      --device cuda --dtype bf16 --attn "$attn" --threads 8 2>&1 | grep -v "^\[transformers\]" \
      | tee "$out/eval_${frames}_${attn}.txt"
  done
done
timeout 150 python3 -m xcomp.bench.training --shape real --frames 256 --steps 4 --batch-size 1 --device cuda \
  --json "$out/sct_train.json" 2>&1 | grep -v "^\[transformers\]" | tail -8 | tee "$out/sct_train.txt"
if [ "$(python3 -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  timeout 120 python3 -m torch.distributed.run --nproc_per_node 2 run.py trainer=ddp device=cuda logger=none \
    data.n=4 data.questions_per_video=4 data.video_frames=64 frames=64 2>&1 | tail -5 | tee "$out/ddp.txt"
fi
