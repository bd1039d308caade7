"""Smallest real run of the whole loop: what the test suite runs on every backend."""

from experiments.configs import synthetic


def get_config():
    config = synthetic.get_config()
    config.synthetic.num_train_identities = 4
    config.synthetic.num_test_identities = 4
    config.synthetic.num_cameras = 2
    config.synthetic.images_per_camera = 2
    config.synthetic.image_size = (32, 16)
    config.pretrain.num_identities = 4
    config.pretrain.images_per_camera = 2
    config.pretrain.epochs = 1
    config.image_size = (32, 16)
    config.batch_size = 8
    config.plan.period_epochs = 1
    config.plan.periods = 2
    config.plan.decay_epochs = 1  # Equal to the period: no decay.
    config.evaluation.ranked_list_queries = 2
    return config
