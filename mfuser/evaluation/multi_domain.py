"""Evaluation over several target domains: one ``SemSegEvaluator`` per domain, one table, one JSON.

Results format (``evaluate_domains`` return value and ``results.json``)::

    {"cityscapes_val": {"mIoU": float, "mACC": float, "fwIoU": float, "pACC": float,
                        "IoU": {class_name: float, ...}, "ACC": {class_name: float, ...},
                        "num_images": int},
     ...,
     "average": {"mIoU": float, "mACC": float, "domains": [names]}}

All numbers are percentages in [0, 100]; per-class values are ``NaN`` (``null`` in JSON) for classes
absent from a domain's ground truth and predictions, which detectron2 excludes from the means.
``results.json`` written by a run also holds ``"precision": {"name", "requested", "device", "reason"}``, the
compute precision of the predictions (``write_results_json(..., extra=...)``).
"""
import logging
import math
from collections import OrderedDict
from typing import Dict, Iterable, Mapping

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator, SemSegEvaluator, inference_on_dataset
from detectron2.utils import comm
from tabulate import tabulate

from mfuser.utils.io import atomic_write_json

__all__ = [
    "check_registered",
    "CheckedSemSegEvaluator",
    "build_sem_seg_evaluator",
    "summarize_sem_seg",
    "evaluate_domains",
    "average_over_domains",
    "format_results_table",
    "write_results_json",
]

logger = logging.getLogger(__name__)


def check_registered(names: Iterable[str], what: str = "dataset") -> None:
    """Raise ``KeyError`` naming every unregistered name with the close names among the project's datasets (not
    detectron2's whole catalogue), or :class:`mfuser.data.CatalogueError` (a ``KeyError``) naming the entry file of
    a catalogued domain that is bad or whose folders are gone."""
    from mfuser.data.catalogue import check_catalogued, unknown_dataset_message

    names = list(names)
    check_catalogued(names)
    registered = DatasetCatalog.list()
    missing = [n for n in names if n not in registered]
    if missing:
        raise KeyError(unknown_dataset_message(missing, what))


class CheckedSemSegEvaluator(SemSegEvaluator):
    """detectron2's ``SemSegEvaluator`` that checks every label against its image before scoring it.

    Labels are read with :func:`mfuser.data.labels.read_label` in the metadata's ``label_format`` (default
    ``"trainid"``; detectron2's own loader calls ``np.array(..., copy=False)``, which numpy 2 refuses, and checks
    nothing). A label must have exactly the height and width of the image the prediction is made for
    (``input["height"]``, ``input["width"]``; the same pixel count is not enough) and only the values of its
    format; otherwise :class:`mfuser.data.labels.LabelError` (a ``ValueError``) names the label and the image.
    """

    def __init__(self, dataset_name: str, *, distributed: bool = True, output_dir: str | None = None):
        from mfuser.data.labels import check_label_format

        self._label_format = check_label_format(MetadataCatalog.get(dataset_name).get("label_format", "trainid"))
        # no sem_seg_loading_fn: only SemSegEvaluator.process reads labels, and process is this class's own
        super().__init__(dataset_name, distributed=distributed, output_dir=output_dir)

    def process(self, inputs, outputs):
        """``SemSegEvaluator.process`` (the same confusion matrices) with the label checks and two CPU costs less.

        Why not ``super().process``: it takes ``argmax(dim=0)`` of the (C, H, W) scores, a strided reduction that
        torch's CPU kernel runs slowly, and RLE-encodes every prediction for ``sem_seg_predictions.json`` even
        when there is no ``output_dir`` to write it to. Measured per 512 x 256 prediction with 19 classes, 2 threads
        (machine under load): torch argmax 52 ms, numpy's argmax over axis 0 16 ms (the same first-maximum rule);
        the encoding 25 ms. Here a CPU prediction is reduced with numpy, and predictions are encoded only when
        they will be written.
        """
        for inp, out in zip(inputs, outputs):
            pred_hw = tuple(out["sem_seg"].shape[-2:])
            hw = (inp["height"], inp["width"]) if "height" in inp and "width" in inp else pred_hw
            if pred_hw != tuple(hw):
                raise RuntimeError(f"The model's prediction for {inp['file_name']} is {pred_hw[1]}x{pred_hw[0]}, "
                                   f"expected the image's size {hw[1]}x{hw[0]} (width x height)")
            pred = _argmax_classes(out["sem_seg"])
            gt = self._read_label(self.input_file_to_gt_file[inp["file_name"]], inp["file_name"], hw)
            gt[gt == self._ignore_label] = self._num_classes
            self._conf_matrix += self._confusion(pred, gt)
            if self._compute_boundary_iou:
                self._b_conf_matrix += self._confusion(self._mask_to_boundary(pred.astype(np.uint8)),
                                                       self._mask_to_boundary(gt.astype(np.uint8)))
            if self._output_dir:
                self._predictions.extend(self.encode_json_sem_seg(pred, inp["file_name"]))

    def _confusion(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """(K+1) x (K+1) counts, rows = predicted class, columns = ground truth (K = ignore), as detectron2's."""
        n = self._num_classes + 1
        return np.bincount(n * pred.reshape(-1) + gt.reshape(-1), minlength=n * n).reshape(n, n)

    def _read_label(self, path: str, image_file: str, image_size: tuple[int, int]) -> np.ndarray:
        """The label of ``image_file`` as (H, W) int64, checked against the image's size and the label format."""
        from mfuser.data.labels import read_label

        label = read_label(path, self._label_format, self._num_classes, image_file=image_file, image_size=image_size)
        return label.astype(np.int64)


def _argmax_classes(scores: torch.Tensor) -> np.ndarray:
    """(C, H, W) class scores -> (H, W) int64 index of the first maximum (numpy on a CPU, torch elsewhere)."""
    if scores.device.type == "cpu":
        return np.argmax(scores.detach().float().numpy(), axis=0).astype(np.int64, copy=False)
    return scores.argmax(dim=0).cpu().numpy()


def build_sem_seg_evaluator(dataset_name: str, *, distributed: bool = True,
                            output_dir: str | None = None) -> SemSegEvaluator:
    """A :class:`CheckedSemSegEvaluator` (detectron2's ``SemSegEvaluator`` checking each label against its image)
    for ``dataset_name``.

    Args:
        dataset_name: a registered dataset whose metadata has ``stuff_classes`` and ``ignore_label``.
        distributed: gather the confusion matrices of all ranks.
        output_dir: if set, detectron2 also writes ``sem_seg_predictions.json`` (RLE of every
            prediction: large for big sets) and ``sem_seg_evaluation.pth`` there.
    """
    check_registered([dataset_name])
    return CheckedSemSegEvaluator(dataset_name, distributed=distributed, output_dir=output_dir)


def summarize_sem_seg(res: Mapping, class_names: Iterable[str]) -> Dict:
    """Turn detectron2's flat ``{"sem_seg": {"mIoU", "IoU-<cls>", ...}}`` into the documented dict."""
    r = res["sem_seg"] if "sem_seg" in res else res
    out = OrderedDict((k, float(r[k])) for k in ("mIoU", "mACC", "fwIoU", "pACC") if k in r)
    out["IoU"] = OrderedDict((c, float(r.get(f"IoU-{c}", float("nan")))) for c in class_names)
    out["ACC"] = OrderedDict((c, float(r.get(f"ACC-{c}", float("nan")))) for c in class_names)
    return out


def average_over_domains(results: Mapping[str, Mapping]) -> Dict:
    """Unweighted mean of mIoU and mACC over the domains (the papers' "Avg" column); domains recorded as failed
    (``{"error": ...}``) are left out."""
    names = [n for n in results if n != "average" and "error" not in results[n]]
    avg = OrderedDict()
    for key in ("mIoU", "mACC"):
        vals = [results[n][key] for n in names if key in results[n] and math.isfinite(results[n][key])]
        avg[key] = sum(vals) / len(vals) if vals else float("nan")
    avg["domains"] = names
    return avg


class _Float32Scores(DatasetEvaluator):
    """Hands ``evaluator`` float32 class scores: under bf16 autocast a model may return bf16 ``sem_seg``, whose
    argmax the evaluators should not take (MFuser itself forms its scores in float32)."""

    def __init__(self, evaluator):
        self.evaluator = evaluator

    def reset(self):
        self.evaluator.reset()

    def process(self, inputs, outputs):
        outputs = [{**o, "sem_seg": o["sem_seg"].float()} if "sem_seg" in o else o for o in outputs]
        self.evaluator.process(inputs, outputs)

    def evaluate(self):
        return self.evaluator.evaluate()


def evaluate_domains(model, loaders: Mapping[str, Iterable], evaluators: Mapping) -> "OrderedDict[str, Dict]":
    """Run ``inference_on_dataset`` per domain and summarise (the evaluators see float32 scores).

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
        res = inference_on_dataset(model, loader, _Float32Scores(evaluators[name]))
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
    rows = [[n, _fmt(results[n].get("mIoU")), _fmt(results[n].get("mACC"))] if "error" not in results[n]
            else [n, "failed", "failed"] for n in domains]
    if "average" in results:
        rows.append(["average", _fmt(results["average"]["mIoU"]), _fmt(results["average"]["mACC"])])
    text = tabulate(rows, headers=["domain", "mIoU", "mAcc"], tablefmt="pipe")
    scored = [n for n in domains if "IoU" in results[n]]
    if per_class and scored:
        classes = list(results[scored[0]]["IoU"].keys())
        crow = [[c] + [_fmt(results[n].get("IoU", {}).get(c)) for n in domains] for c in classes]
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


def write_results_json(results: Mapping, path: str, *, extra: Mapping | None = None) -> str:
    """Write ``results`` to ``path`` (NaN -> null), atomically; returns the path.

    Args:
        extra: entries about the run added at the top level after the results, e.g. ``{"precision": {"name":
            "bf16", "requested": "auto", "device": "cpu", "reason": ...}}`` (:mod:`mfuser.engine.precision`); not
            domains: readers take the domains from ``results["average"]["domains"]``.
    """
    return atomic_write_json(path, _json_safe({**results, **(extra or {})}), indent=2)
