"""Checkpointing for training: atomic writes and strict, explainable loading.

Departures from :class:`detectron2.checkpoint.DetectionCheckpointer`, all deliberate:

* **Atomic save.** fvcore writes ``model_XXXX.pth`` in place and then rewrites ``last_checkpoint`` in
  place; a job killed half-way through leaves a truncated file that ``--resume`` then tries to load.
  Here the checkpoint is written with :func:`mfuser.utils.io.atomic_write` (a temporary file in the same
  folder, fsynced, then renamed onto its final name), and only then ``last_checkpoint`` is replaced the
  same way. A crash at any point leaves ``last_checkpoint`` pointing at the previous complete file.
* **Frozen weights not stored.** Parameters under the model's ``checkpoint_optional_prefixes`` (frozen
  encoders loaded from their official files) are left out of saved checkpoints: they are rebuilt from
  those files, and keeping them would add ~3 GB per checkpoint at full size.
* **Official MFuser files.** A published MMSegmentation checkpoint (``iter_*.pth``) given as
  ``train.init_checkpoint`` is recognised and converted in memory
  (:func:`mfuser.engine.official_checkpoint.convert_official_checkpoint`), with one log line.
* **Resume from the newest intact file.** ``resume_or_load(resume=True)`` tries ``last_checkpoint`` first, then
  the other ``model_*.pth`` files of the folder, newest iteration first; a file that cannot be read (truncated,
  corrupt) is skipped with a warning. A file that reads but does not fit the model is still an error.
* **RNG state.** :class:`RNGState` (a checkpointable) stores the global torch / numpy / Python generators, so a
  resumed run draws the same stochastic-depth masks as an uninterrupted one.
* **Strict load.** fvcore only *logs* missing / unexpected keys and silently drops tensors whose shape
  differs, so a checkpoint of another model "loads" and evaluates as garbage. Here any such key raises
  :class:`CheckpointMismatchError` naming the keys, except missing keys under the prefixes the model
  declares optional in ``model.checkpoint_optional_prefixes`` (e.g. frozen pretrained encoders that
  are rebuilt from their own files and need not be stored in a trained checkpoint).
"""
import logging
import os
import random
import re
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch.nn.parallel import DataParallel, DistributedDataParallel

# One exception hierarchy for every checkpoint in the project (pretrained encoder files and trained models).
from mfuser.modeling.encoders.checkpoints import CheckpointError, CheckpointMismatchError
from mfuser.utils.io import atomic_write

from .official_checkpoint import convert_official_checkpoint, is_official_checkpoint, load_checkpoint_file

__all__ = ["CheckpointError", "CheckpointMismatchError", "MFuserCheckpointer", "RNGState",
           "optional_checkpoint_prefixes"]

logger = logging.getLogger(__name__)


def optional_checkpoint_prefixes(model: torch.nn.Module) -> tuple:
    """Return the model's ``checkpoint_optional_prefixes`` (tuple of str; empty when absent).

    A model declares there which parameter-name prefixes may be absent from a checkpoint, e.g.
    ``("backbone.vfm.", "backbone.vlm.", "text_encoder.")`` for frozen encoders loaded from their own files.
    """
    if isinstance(model, (DistributedDataParallel, DataParallel)):
        model = model.module
    prefixes = getattr(model, "checkpoint_optional_prefixes", ()) or ()
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    return tuple(prefixes)


class RNGState:
    """A checkpointable holding the process's global random generators (torch CPU, CUDA when present, numpy,
    Python's ``random``): ``state_dict()`` captures them, ``load_state_dict()`` restores them.

    Stored as tensors and plain numbers only, so that checkpoints keep loading with ``torch.load(weights_only=True)``.
    """

    def state_dict(self) -> Dict[str, Any]:
        _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        py_version, py_internal, py_gauss = random.getstate()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                      "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
            "random": {"version": int(py_version), "internal": torch.tensor(py_internal, dtype=torch.int64),
                       "gauss": py_gauss},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        r = state["random"]
        random.setstate((r["version"], tuple(int(x) for x in r["internal"].tolist()), r["gauss"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _checkpoint_order(name: str) -> float:
    """Sort key of a checkpoint file name: its iteration (``model_0000499.pth`` -> 499), ``*_final`` last."""
    if re.search(r"_final\.pth$", name):
        return float("inf")
    m = re.search(r"(\d+)\.pth$", name)
    return float(m.group(1)) if m else -1.0


def _summarise(keys: Sequence[str], limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


class MFuserCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic saves and strict loads (see the module docstring).

    Args:
        model, save_dir, save_to_disk, checkpointables: as in :class:`DetectionCheckpointer`.
        strict (bool): raise :class:`CheckpointMismatchError` on missing / unexpected / mis-shaped keys
            (default). ``strict=False`` restores detectron2's log-only behaviour.
    """

    def __init__(self, model, save_dir="", *, save_to_disk=None, strict: bool = True, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.strict = strict
        self.resumed_from: str | None = None

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` atomically, then point ``last_checkpoint`` at it atomically."""
        if not self.save_dir or not self.save_to_disk:
            return
        optional = optional_checkpoint_prefixes(self.model)
        model_state = {k: v for k, v in self.model.state_dict().items() if not (optional and k.startswith(optional))}
        data: Dict[str, Any] = {"model": model_state}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)

        basename = f"{name}.pth"
        os.makedirs(self.save_dir, exist_ok=True)
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        # temporary file ".tmp-*.pth.tmp": torch.save needs a name with a stem, and a leftover of a killed job
        # must not end in ".pth" (fvcore lists those as checkpoints)
        atomic_write(save_file, lambda tmp: torch.save(data, tmp), suffix=".pth.tmp")
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, "last_checkpoint")

        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                f.write(last_filename_basename)

        atomic_write(path, write)

    # ------------------------------------------------------------------ loading
    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """``resume`` and a checkpoint in ``save_dir``: load the newest intact one (see the module docstring);
        otherwise load ``path`` (model weights only), as detectron2 does."""
        self.resumed_from = None  # the file of save_dir a resume loaded (None: started from ``path``)
        if not (resume and self.save_dir and os.path.isdir(self.save_dir)):
            return self.load(path, checkpointables=[])
        candidates = []
        if self.has_checkpoint():
            candidates.append(self.get_checkpoint_file())
        others = [f for f in os.listdir(self.save_dir) if f.endswith(".pth") and f.startswith("model_")]
        for f in sorted(others, key=_checkpoint_order, reverse=True):
            full = os.path.join(self.save_dir, f)
            if full not in candidates:
                candidates.append(full)
        if not candidates:
            return self.load(path, checkpointables=[])
        skipped = []
        for f in candidates:
            if not os.path.isfile(f):
                skipped.append(f"{f} (missing)")
                logger.warning(f"--resume: {f} named by last_checkpoint does not exist; trying an older checkpoint")
                continue
            try:
                loaded = self.load(f)
            except CheckpointMismatchError:
                raise
            except (CheckpointError, OSError, EOFError, RuntimeError) as e:
                self._parsed_url_during_load = None  # DetectionCheckpointer.load leaves it set when a load fails
                skipped.append(f"{f} ({e})")
                logger.warning(f"--resume: skipping unreadable checkpoint {f}: {e}")
                continue
            if skipped:
                logger.warning(f"--resume: resumed from {f}, the newest intact checkpoint")
            self.resumed_from = f
            return loaded
        raise CheckpointError(f"--resume: no checkpoint in {self.save_dir} can be read: " + "; ".join(skipped))

    def load(self, path: str, checkpointables: List[str] | None = None) -> Dict[str, Any]:
        """Load ``path`` (empty: nothing). Raises FileNotFoundError for a local path that does not exist."""
        if path and "://" not in path and not os.path.isfile(path.split("?")[0]):
            raise FileNotFoundError(f"Checkpoint file not found: {path!r} (train.init_checkpoint or --resume target)")
        return super().load(path, checkpointables=checkpointables)

    def _torch_load(self, f: str) -> Dict[str, Any]:
        """Read ``f`` with one clear error for a truncated / corrupt file; convert official MFuser files."""
        loaded = load_checkpoint_file(f)
        if is_official_checkpoint(loaded):
            model = self.model.module if isinstance(self.model, (DistributedDataParallel, DataParallel)) else self.model
            state, report = convert_official_checkpoint(loaded, model, source=f)
            self.logger.info(f"{f}: official MFuser ({report.variant}) checkpoint converted in memory: "
                             f"{len(report.renamed) + len(report.frozen)} keys mapped, {len(report.dropped)} dropped "
                             "on purpose (tools/convert_mfuser_checkpoint.py prints the full report)")
            return {"model": state, "__author__": "official MFuser (converted)"}
        return loaded

    def _load_model(self, checkpoint: Any):
        incompatible = super()._load_model(checkpoint)
        if not self.strict or incompatible is None:
            return incompatible
        optional = optional_checkpoint_prefixes(self.model)
        missing = [k for k in incompatible.missing_keys if not k.startswith(optional)]
        unexpected = list(incompatible.unexpected_keys)
        shapes = list(incompatible.incorrect_shapes)
        if missing or unexpected or shapes:
            lines = ["Checkpoint does not match the model (nothing partial is used):"]
            if missing:
                lines.append(f"  missing keys ({len(missing)}): {_summarise(missing)}")
            if unexpected:
                lines.append(f"  unexpected keys ({len(unexpected)}): {_summarise(unexpected)}")
            for k, s_ckpt, s_model in shapes[:20]:
                lines.append(f"  shape mismatch {k}: checkpoint {tuple(s_ckpt)} vs model {tuple(s_model)}")
            if optional:
                lines.append(f"  (keys under {list(optional)} may be missing: model.checkpoint_optional_prefixes)")
            raise CheckpointMismatchError("\n".join(lines))
        skipped = [k for k in incompatible.missing_keys if k.startswith(optional)]
        if skipped:
            logger.info(f"{len(skipped)} keys under optional prefixes {list(optional)} not in the checkpoint; "
                        "they keep the values the model was built with.")
        return incompatible


