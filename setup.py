#!/usr/bin/env python
"""Package ``mfuser``: MFuser (CVPR 2025) as a Detectron2 project extension.

detectron2 itself is not a pip requirement (it is not on PyPI): ``tools/setup_env.sh`` provides it.
The optional C++ CPU kernels under ``mfuser/layers/csrc`` are compiled when a C++ compiler and torch
are available at build time (``pip install --no-build-isolation -e .``); without them mfuser falls
back to its pure-PyTorch implementations.
"""
import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def get_extensions():
    sources = sorted(glob.glob(os.path.join("mfuser", "layers", "csrc", "**", "*.cpp"), recursive=True))
    if not sources or os.environ.get("MFUSER_NO_EXT") == "1":
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:  # torch not importable in an isolated build: pure-PyTorch fallback only
        return [], {}
    # No -std flag: BuildExtension picks the standard the installed torch headers need.
    extra = ["-O3", "-fopenmp"]
    ext = CppExtension(
        "mfuser._C",
        sources,
        include_dirs=[os.path.join(ROOT, "mfuser", "layers", "csrc")],
        extra_compile_args={"cxx": extra},
        extra_link_args=["-fopenmp"],
    )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=False)}


ext_modules, cmdclass = get_extensions()

setup(
    name="mfuser",
    version="0.1.0",
    description="MFuser: Mamba-fused VFM + VLM domain-generalized semantic segmentation on Detectron2",
    long_description=open(os.path.join(ROOT, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mfuser", "mfuser.*"]),
    package_data={"mfuser": ["layers/csrc/**/*"]},
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        "omegaconf>=2.1,<2.4",
        "hydra-core>=1.1",
        "timm>=1.0",
        "open_clip_torch>=2.24",
        "pycocotools>=2.0.2",
        "opencv-python-headless>=4.5,<5",
        "einops",
        "scipy",
        "numpy",
        "Pillow>=7.1",
        "tensorboard",
        "tqdm>4.29.0",
        "matplotlib",
        "tabulate",
        "termcolor>=1.1",
        "yacs>=0.1.8",
        "cloudpickle",
        "sentencepiece",
    ],
    extras_require={
        "cuda": ["mamba_ssm>=2.2.2", "causal_conv1d>=1.4.0"],
        "dev": ["pytest>=7", "pytest-timeout", "ruff>=0.4"],
        # tools/web_demo.py (Gradio) and its browser test (Playwright drives the system's Chromium; it never
        # downloads a browser of its own)
        "demo": ["gradio>=5,<7", "playwright>=1.40"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
