"""The paper's setting: ResNet-50 on Market-1501, rolling back vs base_cy (Table 2, Figure 4).

Ro et al., AAAI 2019, and the authors' code where the paper is silent: 288x144, batch 32, flip
only; 4 periods of 40 epochs; SGD Nesterov 0.9, weight decay 5e-4; lr 0.01 backbone / 0.1 head,
then 0.01 rolled back / 0.001 kept / 0.01 head; x0.1 after 20 epochs of each period;
flip-TTA pooled 2048-D features, L2-normalised; official Market-1501 evaluation.
"""

import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    # "reid": query/gallery CMC + mAP; "classification": top-1 accuracy (fine-grained).
    config.task = "reid"

    config.dataset = ml_collections.ConfigDict()
    # market1501, dukemtmc_reid, cuhk03_np_labeled, cuhk03_np_detected, msmt17; "synthetic" writes a
    # generated dataset in the Market-1501 layout into the work dir (no download, no root).
    # Classification: caltech_birds2011, fgvc_aircraft, food101 (TensorFlow Datasets).
    config.dataset.name = "market1501"
    config.dataset.root = ""
    # name="folder": your own dataset (keras_rollback.data.read_folder_dataset): one folder per
    # split below root; `pattern` parses each image's path below its split folder, with a named
    # group `pid` and an optional `camid` (none: evaluation without camera ids).
    config.dataset.pattern = ""
    config.dataset.split_dirs = ml_collections.ConfigDict(
        {"train": "train", "query": "query", "gallery": "gallery"}
    )
    config.dataset.skip_unparseable = False  # Skip (and log) names `pattern` does not match.

    config.synthetic = ml_collections.ConfigDict()
    config.synthetic.num_train_identities = 32
    config.synthetic.num_test_identities = 32
    config.synthetic.num_cameras = 4
    config.synthetic.images_per_camera = 4
    config.synthetic.image_size = (128, 64)

    config.model = ml_collections.ConfigDict()
    config.model.backbone = "resnet50"
    # The authors' weights: torchvision's ResNet IMAGENET1K_V1 files (resnet50-0676ba61.pth, ...),
    # read from $KERAS_ROLLBACK_HOME/torchvision (default ~/.keras/keras_rollback), downloaded
    # there when online. Or any weights name of the backbone's registry entry ("imagenet":
    # keras-hub's timm-converted preset / keras.applications' weights; not the paper's), a
    # torchvision .pth/.safetensors or Keras .weights.h5 file, "synthetic_source" (pre-trained
    # here on a disjoint synthetic task, cached; no network), or "" (random initialisation).
    config.model.weights = "torchvision_v1"
    config.model.dropout = 0.5
    # "bottleneck": the paper's head (FC-BN-LeakyReLU-dropout-FC, pooled feature evaluated);
    # "bnneck" / "none": Bag of Tricks' head with / without BNNeck (see configs/bot.py).
    config.model.neck = "bottleneck"
    config.model.last_stride = 2  # "bnneck" / "none" only (keras-hub ResNets).

    # Identity loss (label smoothing) and batch-hard triplet loss (needs a bnneck/none neck).
    config.loss = ml_collections.ConfigDict()
    config.loss.label_smoothing = 0.0
    config.loss.triplet_margin = 0.3
    config.loss.triplet_weight = 0.0  # 0: no triplet loss.
    # Identity sampler: P identities x K images per batch (replaces batch_size); 0: shuffled.
    config.sampler = ml_collections.ConfigDict()
    config.sampler.identities_per_batch = 0
    config.sampler.images_per_identity = 4
    config.augmentation = ml_collections.ConfigDict()
    config.augmentation.random_crop_padding = 0
    config.augmentation.random_erasing_probability = 0.0

    # Only for weights="synthetic_source": the source task the backbone is pre-trained on.
    config.pretrain = ml_collections.ConfigDict()
    config.pretrain.num_identities = 64
    config.pretrain.images_per_camera = 4
    config.pretrain.epochs = 12
    config.pretrain.learning_rate = 0.05

    config.image_size = (288, 144)
    config.batch_size = 32

    config.train = ml_collections.ConfigDict()
    # keras.mixed_precision policy of the model: "float32", "mixed_bfloat16" or "mixed_float16"
    # (float32 master weights and snapshots; float16 trains with dynamic loss scaling).
    config.train.mixed_precision = "float32"

    # "sgd": keras_rollback.LayerwiseSGD(**config.optimizer) (the paper's); "adamw":
    # keras_rollback.LayerwiseAdamW(**config.adamw) (torch's AdamW, decoupled weight decay; the
    # usual choice for vision transformers, see configs/vit.py). The plan's rates apply to both.
    config.optimizer_name = "sgd"
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = True
    config.optimizer.weight_decay = 5e-4
    config.adamw = ml_collections.ConfigDict()
    config.adamw.beta_1 = 0.9
    config.adamw.beta_2 = 0.999
    config.adamw.epsilon = 1e-8
    config.adamw.weight_decay = 0.05

    # Methods compared, each a RefinePlan built from `plan` (see experiments/methods.py):
    # rollback, base_cy, fine_tune (period 1 only), fc_warmup, lp_ft, plateau_rollback,
    # l2_sp, wise_ft, wise_ft_depth_scaled, keep_block:<block>.
    config.methods = ("rollback", "base_cy")
    # Train period 1 once for every method that shares it (rollback, base_cy, fine_tune,
    # keep_block:<block>) and branch each from its last checkpoint (experiments/
    # shared_period_one.py); False trains it again per method. The results are the same.
    config.share_period_one = True
    # Train the shared period 1 until its training loss plateaus (experiments/
    # converged_period_one.py): at the first epoch >= min_epochs whose training accuracy is
    # >= min_accuracy and whose best loss over the last `window` epochs is less than
    # min_relative_improvement below the best before them (at most max_epochs). Every
    # other method's periods are then as long (plan.period_epochs is replaced).
    config.converged_period_one = ml_collections.ConfigDict()
    config.converged_period_one.enabled = False
    config.converged_period_one.window = 3
    config.converged_period_one.min_relative_improvement = 0.05
    config.converged_period_one.min_accuracy = 0.99
    config.converged_period_one.min_epochs = 10
    config.converged_period_one.max_epochs = 80
    # The alternatives to rolling back (docs/method.md, "Alternatives"): L2-SP's pull of the
    # backbone toward the pre-trained weights (`alpha`) and the head's L2 (`beta`; with SGD,
    # torch's weight decay, so the same as the other methods' 5e-4), after the shared
    # period 1; WiSE-FT's weight of the fine-tuned weights in its mix with the pre-trained.
    config.l2_sp = ml_collections.ConfigDict()
    config.l2_sp.alpha = 0.1
    config.l2_sp.beta = 5e-4
    config.wise_ft = ml_collections.ConfigDict()
    config.wise_ft.mixing = 0.5

    config.plan = ml_collections.ConfigDict()
    config.plan.period_epochs = 40
    config.plan.periods = 4
    config.plan.learning_rate = 0.01
    config.plan.head_learning_rate = 0.1
    config.plan.kept_learning_rate = 0.001
    config.plan.refine_head_learning_rate = 0.01
    config.plan.decay_epochs = 20
    config.plan.decay_factor = 0.1
    config.plan.layer_decay = 1.0  # Layer-wise rate decay per block from the top (1: none).

    config.plan.warmup_epochs = 20  # fc_warmup and lp_ft (its linear probing) only.
    # plateau_rollback only: keras_rollback.PlateauRule's arguments. A period ends when the
    # training loss has not improved by `min_delta` for `patience` epochs; the learning rates
    # decay once on the first plateau of a period, the next ends it.
    config.plan.plateau = ml_collections.ConfigDict()
    config.plan.plateau.monitor = "loss"
    config.plan.plateau.min_delta = 0.01
    config.plan.plateau.patience = 5
    config.plan.plateau.min_period_epochs = 20
    config.plan.plateau.max_period_epochs = 80
    config.plan.plateau.learning_rate_steps = "plateau"

    # keras_rollback.BlockDiagnostics: per-block drift every epoch; gradient norms on one
    # training batch every `every_n_steps` steps (0: once per epoch, after its last step).
    config.diagnostics = ml_collections.ConfigDict()
    config.diagnostics.every_n_steps = 0

    config.evaluation = ml_collections.ConfigDict()
    config.evaluation.flip = True
    config.evaluation.ap_method = "trapezoidal"
    # k-reciprocal re-ranking (Zhong et al., CVPR 2017) of every evaluation; the paper uses none.
    config.evaluation.rerank = False
    config.evaluation.every_epochs = 0  # 0: at the end of every period only.
    config.evaluation.ranked_list_queries = 8

    # Data-parallel training over processes (docs/multi_device.md): every process runs the same
    # command with its own process_id; batch_size is the global batch over all of them.
    config.distribution = ml_collections.ConfigDict()
    config.distribution.num_processes = 1
    config.distribution.process_id = 0
    config.distribution.coordinator = ""  # "host:port" of process 0, reachable from every process.
    # On torch, with num_processes left at 1, torchrun's WORLD_SIZE, RANK, MASTER_ADDR and
    # MASTER_PORT name the job (experiments/launch.py).
    # TensorFlow only: every process's "host:port", comma-separated, process 0's first.
    # "" = the coordinator's host with consecutive ports (all processes on one machine).
    config.distribution.worker_addresses = ""
    return config
