cd /work/main
.venv/bin/python -m backend train --preset attention-small --out runs/attention-small-4 \
  --init checkpoints/attention-small/best.safetensors \
  --data data/compositions data/procedural data/real_train data/rooms --balance-data \
  --batch 16 --queries 2048 --cloud-points 300 20000 --noise 0 0.01 --partial 0.25 --outliers 0.2 --rotate \
  --normals 0.5 --lr 3e-4 --steps 900 --val-every 150 --checkpoint-every 50 --max-minutes 62 --threads 2 "$@"
