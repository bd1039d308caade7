"""The converged-regime study (docs/study.md): rolling back where the paper's premise holds.

The under-trained study (configs/study.py) ended periods after 16 SGD steps, while the
training loss still fell; the paper's premise is that fine-tuning has *converged* before the
low blocks adapt. Here:

* the backbone (ResNet-18) is pre-trained on a synthetic source task 8x larger than the
  target (128 identities, 1,024 images, other seed: other identities and cameras), cached;
* the target task is shifted from it: its images' hues are turned by 120 degrees (other
  clothing and background colours), besides its other identities and cameras;
* period 1 (ordinary fine-tuning, trained once and shared) runs until a measured plateau
  (`config.converged_period_one`: training accuracy >= 99% and the best training loss of the
  last 3 epochs less than 5% below the best before them; from epoch 8, after the rates'
  first decay at epoch 6 (x0.1 every 6 epochs of a period); at most 24 epochs), reported per
  seed; 4 periods (the paper's), every later one as long as period 1;
* methods: fine-tuning (period 1), base_cy, rollback (the paper's fixed plan), plateau
  rollback, and the alternatives a user would pick instead: L2-SP and WiSE-FT (uniform and
  depth-scaled) from the same period-1 model, LP-FT (4 epochs of linear probing, then one
  fine-tuning period as long as period 1);
* 5 seeds (a seed changes the target data, the head's initialisation and the batches; the
  pre-trained backbone is the same), paired per-seed differences with 95% t-intervals.

Everything here was fixed before any method's result was seen. One pilot run of period 1
alone (seed 0, without the hue shift, rates decayed every 10 epochs, 27 epochs) was looked
at to choose the rule's cap and the decay so that the study fits
about 1-2 hours on a 2-core CPU: its training loss jumps between 0.01 and 0.11 from epoch to
epoch once the accuracy is near 100% (one epoch is 8 batches), hence a rule on the best loss
over a window; by the rule above it would have converged at epoch 20 (accuracy 99.2%).
Resumable: run the same command again.

    python -m experiments.main --config=experiments/configs/converged_study.py \\
        --workdir=/tmp/converged_study
"""

import ml_collections

from experiments.configs import synthetic

METHODS = (
    "fine_tune",
    "base_cy",
    "rollback",
    "plateau_rollback",
    "l2_sp",
    "lp_ft",
    "wise_ft",
    "wise_ft_depth_scaled",
)


def get_config():
    config = synthetic.get_config()
    config.synthetic.hue_rotation = 120.0
    config.pretrain.num_identities = 128
    config.pretrain.epochs = 20
    config.methods = METHODS
    config.converged_period_one.enabled = True
    config.converged_period_one.window = 3
    config.converged_period_one.min_relative_improvement = 0.05
    config.converged_period_one.min_accuracy = 0.99
    config.converged_period_one.min_epochs = 8
    config.converged_period_one.max_epochs = 24
    config.plan.periods = 4
    config.plan.decay_epochs = 6  # In every period, as long as period 1 turns out.
    config.plan.warmup_epochs = 4  # LP-FT's linear probing.
    # Plateau rollback ends a period when the training loss has not improved by 0.01 for 2
    # epochs (the first such plateau of a period decays the rates instead), after 4 to 24
    # epochs; at most 4 periods, as many epochs as rollback's 4 periods.
    config.plan.plateau.min_delta = 0.01
    config.plan.plateau.patience = 2
    config.plan.plateau.min_period_epochs = 4
    config.plan.plateau.max_period_epochs = 24
    config.evaluation.ranked_list_queries = 2
    config.study = ml_collections.ConfigDict()
    config.study.seeds = (0, 1, 2, 3, 4)
    # Every method against rollback and against base_cy.
    config.study.differences = tuple(
        (method, baseline)
        for baseline in ("rollback", "base_cy")
        for method in METHODS
        if method != baseline
    )
    return config
