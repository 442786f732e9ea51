"""Tiny official-layout checkpoints written once per test session (fast: ~0.2 s in all)."""
import io
import os

import pytest
import torch

from mfuser.modeling.encoders.families import FAMILIES
from mfuser.utils.testing import write_official_checkpoint


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """{kind: path} of tiny random checkpoints in the official layout of each of the four files."""
    d = tmp_path_factory.mktemp("tiny_ckpts")
    ext = {k: os.path.splitext(f.file_name)[1] for k, f in FAMILIES.items()}  # the official file's extension
    return {k: write_official_checkpoint(k, str(d / f"{k}_tiny{e}"), size="tiny", seed=1) for k, e in ext.items()}


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory):
    """A SentencePiece model trained on the fly (vocab 40 < the tiny SigLIP text vocab 64)."""
    spm = pytest.importorskip("sentencepiece")
    corpus = ["road sidewalk building wall fence pole traffic light traffic sign vegetation terrain sky person "
              "rider car truck bus train motorcycle bicycle"] * 20
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=buf, vocab_size=40, pad_id=0,
                                   eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    path = tmp_path_factory.mktemp("spm") / "spiece.model"
    path.write_bytes(buf.getvalue())
    return str(path)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)
