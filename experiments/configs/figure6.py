"""Figure 6: activation maps of the last feature block, fine-tuning vs rolling back.

The paper shows the maps as pictures; on the synthetic dataset, whose generator knows the
person's pixels, each map also gets its foreground share (the fraction of the map on the
person), with intervals over the queries and over seeds (experiments/figure6.py). First
train the two methods, one work dir per seed (or give a study's work dir):

    python -m experiments.main --config=experiments/configs/synthetic.py \\
        --config.methods="('fine_tune','rollback')" --config.seed=0 --workdir=/tmp/fig6-seed0
    python -m experiments.main --config=experiments/configs/figure6.py \\
        --config.figure6.runs=/tmp/fig6-seed0,/tmp/fig6-seed1 --workdir=/tmp/figure6

The same models on real Market-1501 crops (no person masks there: maps only):

    python -m experiments.main --config=experiments/configs/figure6.py \\
        --config.figure6.runs=/tmp/fig6-seed0 \\
        --config.figure6.dataset_root=../shared/data/mini-market1501 --workdir=/tmp/figure6-real
"""

import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.figure6 = ml_collections.ConfigDict()
    # Experiment work dirs (comma-separated; a study's work dir stands for its seed-* runs),
    # each holding <method>/model.keras for every method below.
    config.figure6.runs = ""
    # Columns of the picture, left to right; the paired difference is last minus first.
    config.figure6.methods = ("fine_tune", "rollback")
    # The mapped layer; "": the backbone's last block output (ResNet: conv5_x's).
    config.figure6.layer = ""
    # Query images: "" for each run's own dataset (synthetic: with person masks), or a
    # dataset folder read as `dataset_name` (keras_rollback.data.read_reid_dataset).
    config.figure6.dataset_root = ""
    config.figure6.dataset_name = "market1501"
    config.figure6.num_images = 6  # Rows of the picture (the first run's queries, spread).
    config.figure6.max_images = 0  # Queries scored per run; 0: all.
    config.figure6.batch_size = 32
    return config
