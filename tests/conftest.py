"""Test-wide settings: never touch the network, keep CPU runs small and deterministic."""
import os

# Must be set before anything imports huggingface_hub / open_clip / timm.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO_ROOT), "shared")


@pytest.fixture(scope="session")
def shared_dir():
    """``../shared`` beside the checkout (read-only reference material and the Cityscapes sample)."""
    if not os.path.isdir(SHARED):
        pytest.skip(f"shared material not found at {SHARED}")
    return SHARED


@pytest.fixture()
def catalogue_root(tmp_path, monkeypatch):
    """An empty ``$DETECTRON2_DATASETS`` for the domain catalogue; what was registered from it is forgotten after."""
    from mfuser.data import catalogue

    path = str(tmp_path / "datasets")
    monkeypatch.setenv("DETECTRON2_DATASETS", path)
    yield path
    catalogue.register_catalogue(str(tmp_path / "no_catalogue"))
