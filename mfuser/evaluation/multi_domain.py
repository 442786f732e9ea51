"""Evaluation over several target domains: one ``SemSegEvaluator`` per domain, one table, one JSON.

Results format (``evaluate_domains`` return value and ``results.json``)::

    {"cityscapes_val": {"mIoU": float, "mACC": float, "fwIoU": float, "pACC": float,
                        "IoU": {class_name: float, ...}, "ACC": {class_name: float, ...},
                        "num_images": int},
     ...,
     "average": {"mIoU": float, "mACC": float, "domains": [names]}}

All numbers are percentages in [0, 100]; per-class values are ``NaN`` (``null`` in JSON) for classes
absent from a domain's ground truth and predictions, which detectron2 excludes from the means.
"""
import logging
import math
from collections import OrderedDict
from typing import Dict, Iterable, Mapping

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator, inference_on_dataset
from detectron2.utils import comm
from tabulate import tabulate

from mfuser.utils.io import atomic_write_json

__all__ = [
    "check_registered",
    "build_sem_seg_evaluator",
    "summarize_sem_seg",
    "evaluate_domains",
    "average_over_domains",
    "format_results_table",
    "write_results_json",
]

logger = logging.getLogger(__name__)


def check_registered(names: Iterable[str], what: str = "dataset") -> None:
    """Raise ``KeyError`` naming every unregistered name and listing the registered ones."""
    registered = DatasetCatalog.list()
    missing = [n for n in names if n not in registered]
    if missing:
        raise KeyError(
            f"{what} {missing} not registered. Registered datasets: {sorted(registered)}. "
            "Register a new domain with mfuser.data.register_target_domain(...) in an imported module or config."
        )


def _sem_seg_loading_fn(dataset_name: str):
    """numpy-2-safe label loader from the dataset metadata ``label_format`` (default ``"trainid"``).

    detectron2's default loader calls ``np.array(..., copy=False)``, which numpy 2 refuses; mfuser's
    ``read_label`` also validates the values and decodes palette / id-coded labels.
    """
    from mfuser.data.labels import make_sem_seg_loading_fn

    meta = MetadataCatalog.get(dataset_name)
    return make_sem_seg_loading_fn(meta.get("label_format", "trainid"), num_classes=len(meta.stuff_classes))


def build_sem_seg_evaluator(dataset_name: str, *, distributed: bool = True,
                            output_dir: str | None = None) -> SemSegEvaluator:
    """A detectron2 ``SemSegEvaluator`` for ``dataset_name`` with mfuser's label loader.

    Args:
        dataset_name: a registered dataset whose metadata has ``stuff_classes`` and ``ignore_label``.
        distributed: gather the confusion matrices of all ranks.
        output_dir: if set, detectron2 also writes ``sem_seg_predictions.json`` (RLE of every
            prediction: large for big sets) and ``sem_seg_evaluation.pth`` there.
    """
    check_registered([dataset_name])
    return SemSegEvaluator(dataset_name, distributed=distributed, output_dir=output_dir,
                           sem_seg_loading_fn=_sem_seg_loading_fn(dataset_name))


def summarize_sem_seg(res: Mapping, class_names: Iterable[str]) -> Dict:
    """Turn detectron2's flat ``{"sem_seg": {"mIoU", "IoU-<cls>", ...}}`` into the documented dict."""
    r = res["sem_seg"] if "sem_seg" in res else res
    out = OrderedDict((k, float(r[k])) for k in ("mIoU", "mACC", "fwIoU", "pACC") if k in r)
    out["IoU"] = OrderedDict((c, float(r.get(f"IoU-{c}", float("nan")))) for c in class_names)
    out["ACC"] = OrderedDict((c, float(r.get(f"ACC-{c}", float("nan")))) for c in class_names)
    return out


def average_over_domains(results: Mapping[str, Mapping]) -> Dict:
    """Unweighted mean of mIoU and mACC over the domains (the papers' "Avg" column)."""
    names = [n for n in results if n != "average"]
    avg = OrderedDict()
    for key in ("mIoU", "mACC"):
        vals = [results[n][key] for n in names if key in results[n] and math.isfinite(results[n][key])]
        avg[key] = sum(vals) / len(vals) if vals else float("nan")
    avg["domains"] = names
    return avg


def evaluate_domains(model, loaders: Mapping[str, Iterable], evaluators: Mapping) -> "OrderedDict[str, Dict]":
    """Run ``inference_on_dataset`` per domain and summarise.

    Args:
        model: callable on ``list[dict]`` returning ``[{"sem_seg": Tensor[K, H, W]}]`` at original size.
        loaders: ``{domain: test data loader}``.
        evaluators: ``{domain: SemSegEvaluator}`` (same keys).

    Returns:
        the documented results dict on the main process (``{}`` elsewhere), with ``"average"`` last.
    """
    results = OrderedDict()
    for name, loader in loaders.items():
        logger.info(f"Evaluating domain {name} ...")
        res = inference_on_dataset(model, loader, evaluators[name])
        if comm.is_main_process():
            summary = summarize_sem_seg(res, MetadataCatalog.get(name).stuff_classes)
            try:
                summary["num_images"] = len(loader.dataset)
            except (TypeError, AttributeError):
                pass
            results[name] = summary
    if results:
        results["average"] = average_over_domains(results)
    return results


def _fmt(v) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def format_results_table(results: Mapping[str, Mapping], per_class: bool = False) -> str:
    """A text table: one row per domain (mIoU, mACC) plus the average; with ``per_class`` also a
    class x domain IoU table."""
    domains = [n for n in results if n != "average"]
    rows = [[n, _fmt(results[n].get("mIoU")), _fmt(results[n].get("mACC"))] for n in domains]
    if "average" in results:
        rows.append(["average", _fmt(results["average"]["mIoU"]), _fmt(results["average"]["mACC"])])
    text = tabulate(rows, headers=["domain", "mIoU", "mAcc"], tablefmt="pipe")
    if per_class and domains:
        classes = list(results[domains[0]]["IoU"].keys())
        crow = [[c] + [_fmt(results[n]["IoU"].get(c)) for n in domains] for c in classes]
        text += "\n\nper-class IoU\n" + tabulate(crow, headers=["class"] + domains, tablefmt="pipe")
    return text


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_results_json(results: Mapping, path: str) -> str:
    """Write ``results`` to ``path`` (NaN -> null), atomically; returns the path."""
    return atomic_write_json(path, _json_safe(results), indent=2)
