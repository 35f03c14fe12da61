#!/bin/bash
# Submit a loss-landscape sweep to a SLURM cluster as a job array, one surface per array task.
#
#   bash scripts/slurm_sweep.sh [SWEEP.yaml] [GPUS_PER_TASK] [PARTITION]
#
# e.g. `bash scripts/slurm_sweep.sh configs/li2018/sweep-resnet56.yaml 4 gpu` submits the 8
# surfaces of Li et al.'s ResNet-56 with/without shortcuts × 4 direction families, each on 4 GPUs
# (4 MPI ranks: `mpiexec -n 4 landscape compute --config ...`). Run it from the repository root:
# the configs' relative paths (data, checkpoints, results) are relative to the folder you submit
# from, and the job changes to it.
#
# What `landscape sweep --slurm` writes:
#   jobs/<sweep>/sweep.sh                one array task per run that is not complete yet
#   jobs/<sweep>/sweep_configs/NNN.yaml  each run's resolved config (NNN: the index --dry-run shows)
#   jobs/<sweep>/slurm-<job>_<task>.out  the tasks' logs, once they run
# Surface files are written as they are computed, so a task that is killed or runs out of
# time loses almost nothing: run this script again and only unfinished runs are submitted,
# each resuming its own file. Needs `landscape` (and mpi4py for several GPUs) on the nodes.
set -euo pipefail

SWEEP=${1:-configs/li2018/sweep-resnet56.yaml}
GPUS=${2:-1}
PARTITION=${3:-}
JOBS="jobs/$(basename "$SWEEP" .yaml)"

landscape sweep "$SWEEP" --dry-run          # the runs: index, status, swept values, file
mkdir -p "$JOBS"
landscape sweep "$SWEEP" --slurm "$JOBS/sweep.sh" --gpus-per-task "$GPUS" \
    ${PARTITION:+--partition "$PARTITION"} --time 24:00:00
sbatch "$JOBS/sweep.sh"
# Watch it with `squeue -u $USER`, then check and draw the results:
#   landscape sweep "$SWEEP" --dry-run      # every run "complete"
#   landscape plot --compare results/li2018/sweep/surface_model.name=resnet56_direction.name=*.h5
