"""Data for domain-generalised semantic segmentation: one source loader, several target domains.

Keys (read by tools/lazyconfig_train_net.py):

* ``dataloader.train``: the source loader. Rare-class sampling (T=100, 3000 px), batch 2 per GPU
  (``total_batch_size`` = 2 x number of processes; set it when you change ``--num-gpus``), the reference
  augmentations on 512x512 crops. Its sampler is resumable, seeded with ``train.seed``.
* ``dataloader.targets``: the registered dataset names evaluated after training and by ``--eval-only``.
  Override on the command line, e.g. ``'dataloader.targets=[cityscapes_val,my_domain_val]'``; any name
  registered with ``mfuser.data.register_target_domain`` (in a module the config imports) works.
* ``dataloader.test``: the evaluation loader; ``dataset.names`` and ``mapper.resize_to`` are filled in per
  target by the tool.
* ``dataloader.test_resize``: ``{name: (long, short)}`` keep-ratio test resize (Cityscapes and Mapillary fit
  (2048, 1024), BDD100K (1280, 720); docs/reference.md, "Test-time resize"); other names use
  ``dataloader.test_resize_default`` (None = the original size).
* ``dataloader.evaluator``: one ``SemSegEvaluator`` per target (numpy-2-safe label loader from the metadata's
  ``label_format``).
"""
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts

from mfuser.data.build import build_resumable_rcs_train_loader
from mfuser.data.mappers import MFuserSemanticDatasetMapper, MFuserTestDatasetMapper, build_train_augmentations
from mfuser.evaluation import build_sem_seg_evaluator

dataloader = dict(
    train=L(build_resumable_rcs_train_loader)(
        names="gta5_train",
        mapper=L(MFuserSemanticDatasetMapper)(
            is_train=True,
            augmentations=L(build_train_augmentations)(
                crop_size=(512, 512), ratio_range=(0.5, 2.0), cat_max_ratio=0.75
            ),
            image_format="RGB",
            ignore_label=255,
            label_format="trainid",
        ),
        total_batch_size=2,
        num_workers=4,
        temperature=100.0,
        min_pixels=3000,
        seed="${train.seed}",
    ),
    targets=["cityscapes_val", "bdd100k_val", "mapillary_val"],
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names="cityscapes_val", filter_empty=False),
        mapper=L(MFuserTestDatasetMapper)(resize_to=None, image_format="RGB"),
        num_workers=2,
    ),
    test_resize={
        "cityscapes_val": (2048, 1024),
        "mapillary_val": (2048, 1024),
        "mapillary_val_half": (2048, 1024),
        "bdd100k_val": (1280, 720),
    },
    test_resize_default=None,
    evaluator=L(build_sem_seg_evaluator)(dataset_name="cityscapes_val", output_dir=None),
)
