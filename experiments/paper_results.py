"""Published numbers of Ro et al. (AAAI 2019), printed beside ours for the same setting.

Keys: table -> setting -> method or period -> metrics (percent).
"""

# Table 2 / 3 / 7: mAP and rank-1 after each period (period 1 = baseline fine-tuning).
PERIODS = {
    ("resnet50", "market1501"): [(73.16, 89.43), (75.65, 90.95), (76.54, 91.12), (77.01, 91.24)],
    ("resnet50", "dukemtmc_reid"): [(63.26, 80.83), (66.09, 81.96), (66.57, 82.41), (66.39, 82.32)],
    ("resnet50", "cuhk03_np_labeled"): [
        (45.17, 50.07),
        (47.69, 51.21),
        (49.98, 54.36),
        (50.72, 55.64),
    ],
    ("resnet50", "cuhk03_np_detected"): [
        (44.05, 48.00),
        (45.76, 50.50),
        (46.20, 51.36),
        (47.43, 52.93),
    ],
    ("resnet34", "market1501"): [(70.65, 86.93), (73.63, 89.13), (74.85, 90.02), (74.97, 90.05)],
    ("resnet34", "dukemtmc_reid"): [(60.06, 78.69), (63.45, 81.10), (65.16, 82.18), (65.44, 83.08)],
    ("resnet101", "market1501"): [(75.91, 90.80), (77.21, 90.77), (78.17, 91.27), (79.95, 92.49)],
    ("resnet101", "dukemtmc_reid"): [
        (66.00, 82.27),
        (69.27, 83.62),
        (70.24, 85.19),
        (69.88, 84.43),
    ],
}

# Table 7: InceptionV3 on Market-1501, baseline vs rolling back (B1, B2 kept).
INCEPTION_V3_MARKET1501 = {"baseline": (70.97, 87.86), "rollback": (73.04, 89.40)}

# Table 1: ResNet-50 on Market-1501; after baseline fine-tuning keep block i, roll back the rest.
# (mAP, rank-1, rank-5, rank-10)
KEEP_ONE_BLOCK = {
    "baseline": (73.16, 89.43, 96.35, 97.77),
    "stem": (74.08, 89.49, 96.50, 97.62),
    "conv2_x": (74.37, 89.96, 96.50, 97.62),
    "conv3_x": (73.87, 89.90, 96.20, 97.83),
    "conv4_x": (73.82, 89.64, 95.81, 97.62),
    "conv5_x": (71.17, 88.45, 95.61, 97.42),
}

# Table 6: fine-grained top-1 accuracy, baseline vs rolling back.
FINE_GRAINED = {
    "caltech_birds2011": {"baseline": 74.59, "rollback": 79.12},
    "fgvc_aircraft": {"baseline": 83.89, "rollback": 86.80},
    "food101": {"baseline": 80.21, "rollback": 81.89},
}

# Figure 4: final mAP of base_cy vs rolling back (ResNet-50).
BASE_CY_FINAL_MAP = {
    "market1501": {"base_cy": 71.96, "rollback": 77.01},
    "dukemtmc_reid": {"base_cy": 59.64, "rollback": 66.39},
}


def lookup(backbone, dataset, method, period, last_period):
    """The paper's numbers for a method after a period, or None where it reports none.

    (mAP, rank-1) for ReID, rank-1 None where the paper gives only mAP (Figure 4's
    base_cy); (top-1,) for the fine-grained datasets of Table 6.
    """
    periods = PERIODS.get((backbone, dataset))
    if periods and period == 1:
        return periods[0]  # Period 1 is the baseline fine-tuning of every method.
    if periods and method == "rollback" and period <= len(periods):
        return periods[period - 1]
    if (
        method == "base_cy"
        and last_period
        and backbone == "resnet50"
        and dataset in BASE_CY_FINAL_MAP
    ):
        return BASE_CY_FINAL_MAP[dataset]["base_cy"], None
    if (
        method.startswith("keep_block:")
        and (backbone, dataset) == ("resnet50", "market1501")
        and period == 2
    ):
        row = KEEP_ONE_BLOCK.get(method.split(":", 1)[1])
        return None if row is None else row[:2]
    if dataset in FINE_GRAINED and (period == 1 or (method == "rollback" and last_period)):
        return (FINE_GRAINED[dataset]["baseline" if period == 1 else "rollback"],)
    if (backbone, dataset) == ("inception_v3", "market1501") and last_period:
        return INCEPTION_V3_MARKET1501.get("rollback" if method == "rollback" else "baseline")
    return None
