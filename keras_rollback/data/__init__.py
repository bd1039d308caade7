"""Datasets and input pipelines: ReID readers, `tf.data` pipelines, fine-grained data, synthetic ReID."""

from keras_rollback.data.cuhk03_np import read_cuhk03_np
from keras_rollback.data.dukemtmc import read_dukemtmc_reid
from keras_rollback.data.fine_grained import FineGrainedDataset
from keras_rollback.data.fine_grained import ImageRecord
from keras_rollback.data.fine_grained import load_fgvc_aircraft
from keras_rollback.data.fine_grained import load_tfds_fine_grained
from keras_rollback.data.fine_grained import read_fgvc_aircraft
from keras_rollback.data.folder import read_folder_dataset
from keras_rollback.data.image_files import BadImage
from keras_rollback.data.image_files import BadImageError
from keras_rollback.data.image_files import drop_bad_images
from keras_rollback.data.image_files import find_bad_images
from keras_rollback.data.market1501 import read_market1501
from keras_rollback.data.msmt17 import read_msmt17
from keras_rollback.data.pipeline import ImageTransform
from keras_rollback.data.pipeline import make_eval_dataset
from keras_rollback.data.pipeline import make_train_dataset
from keras_rollback.data.pipeline import normalize_images
from keras_rollback.data.pipeline import steps_per_epoch
from keras_rollback.data.readers import read_reid_dataset
from keras_rollback.data.reid_dataset import DatasetLayoutError
from keras_rollback.data.reid_dataset import ReIDDataset
from keras_rollback.data.reid_dataset import ReIDRecord
from keras_rollback.data.reid_dataset import read_reid_folders
from keras_rollback.data.synthetic import write_synthetic_market1501
