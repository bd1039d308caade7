"""Table 2 (and Figure 4): ResNet-50, 4 periods, on one ReID dataset; rollback vs base_cy.

    --config=experiments/configs/table2.py:dukemtmc_reid --config.dataset.root=/data/DukeMTMC-reID
Datasets: market1501, dukemtmc_reid, cuhk03_np_labeled, cuhk03_np_detected.
"""

from experiments.configs import default


def get_config(dataset="market1501"):
    config = default.get_config()
    config.dataset.name = dataset
    config.evaluation.every_epochs = 10  # The mAP curve of Figure 4.
    return config
