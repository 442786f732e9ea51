"""The model's vocabulary comes from dataset metadata, never from a constant in the model."""
from __future__ import annotations

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["dataset_class_names"]


def dataset_class_names(dataset_name: str) -> list[str]:
    """Return ``stuff_classes`` of a registered dataset (used by configs as ``model.class_names``).

    Raises:
        KeyError: naming the dataset and listing the registered ones when it has no classes.
    """
    import mfuser.data  # noqa: F401  (registers the built-in datasets)

    classes = MetadataCatalog.get(dataset_name).get("stuff_classes", None)
    if not classes:
        registered = ", ".join(sorted(DatasetCatalog.list()))
        raise KeyError(
            f"dataset {dataset_name!r} has no 'stuff_classes' metadata (is it registered?). Registered: {registered}"
        )
    return list(classes)
