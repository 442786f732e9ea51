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
