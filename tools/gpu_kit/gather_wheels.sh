#!/usr/bin/env bash
# Gather, on a machine that reaches the package index, the Python packages a bare GPU machine (Python 3.12 with its
# own PyTorch, no package index) lacks to run mfuser and tools/gpu_kit/run.py, into the folder DIR:
#
#   bash tools/gpu_kit/gather_wheels.sh gpu_wheels      # gpu_wheels/ at the repository root is ignored by git;
#                                                       # run.py installs from it by default
#
# * wheels for CPython 3.12 / manylinux x86_64 (`pip download --only-binary=:all: --no-deps`, an explicit list:
#   nothing is resolved, so nothing the GPU machine already has is fetched);
# * wheels built here from the three pure-Python packages published as source only (`pip wheel --no-deps`;
#   each must come out as a py3-none-any wheel);
# * detectron2's Python part as tools/setup_env.sh installs it: the PyPI wheel sal-detectron2 (tagged for CPython
#   3.10 only, so pip cannot install it on 3.12) without its compiled _C and its top-level tools/, packed as
#   DIR/detectron2-pypi.zip, which run.py unpacks when no detectron2 is importable.
#
# It then prints what travels to a lent GPU machine (the repository's tracked and untracked-not-ignored files plus
# DIR) against the 64 MiB limit, writes DIR/MANIFEST.txt, and exits 1 when over the limit. DIR is rebuilt from
# scratch (one version of each package); an existing DIR must be one this script made.
#
# Environment: PYTHON (interpreter whose pip is used; default .venv/bin/python, else python3).
#
# Why each package (the GPU machine's image has torch, torchvision, numpy, scipy, opencv, matplotlib, pillow, pyyaml,
# tabulate, tqdm, cloudpickle, portalocker, regex, einops, safetensors, huggingface-hub, sentencepiece, tensorboard,
# setuptools; see docs/gpu.md):
#   detectron2 (sal-detectron2)  the framework              fvcore, iopath        detectron2's I/O, FLOP counter
#   omegaconf, hydra-core,       LazyConfig                 yacs, termcolor       detectron2 / fvcore imports
#     antlr4-python3-runtime
#   pycocotools                  detectron2.data imports it open_clip_torch,      the CLIP-family encoders
#   timm                         DINOv2 / EVA02 blocks        ftfy, wcwidth       (open_clip's tokenizer)
#     (carried for the version tested here, which open_clip 3.3 needs: >= 1.0.17)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIMIT_BYTES=$((64 * 1024 * 1024))
BINARY=(
  open_clip_torch==3.3.0 timm==1.0.31 pycocotools==2.0.11 omegaconf==2.3.1 hydra-core==1.3.8
  termcolor==3.3.0 yacs==0.1.8 ftfy==6.3.1 wcwidth==0.9.4
)
SOURCE_ONLY=(fvcore==0.1.5.post20221221 iopath==0.1.10 antlr4-python3-runtime==4.9.3)
D2_PYPI=sal-detectron2==0.7.2
D2_ARCHIVE=detectron2-pypi.zip
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

die() { printf 'error: %s\n' "$*" >&2; exit "${2:-1}"; }
usage_error() { printf 'error: %s (usage: bash tools/gpu_kit/gather_wheels.sh DIR, e.g. gpu_wheels)\n' "$*" >&2; exit 2; }

[ $# -ge 1 ] || usage_error "missing DIR: the folder to gather the wheels into"
[ $# -eq 1 ] || usage_error "expected one argument DIR, got $#"
[ -n "$1" ] || usage_error "DIR is empty"
DIR="$1"
if [ -e "$DIR" ] && { [ ! -d "$DIR" ] || { [ -n "$(ls -A "$DIR")" ] && [ ! -f "$DIR/MANIFEST.txt" ]; }; }; then
  usage_error "$DIR exists and is not a wheel folder made by this script (no MANIFEST.txt); choose another DIR"
fi

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' does not work; set PYTHON to an interpreter with pip"
PIP=("$PYTHON" -m pip --disable-pip-version-check)

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/gather-wheels.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/out" "$STAGE/d2"

echo "gather_wheels: downloading ${#BINARY[@]} wheels for CPython 3.12 / manylinux x86_64"
"${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
  -d "$STAGE/out" "${BINARY[@]}" || die "pip download failed (is the package index reachable?)"

echo "gather_wheels: building pure-Python wheels of the source-only ${SOURCE_ONLY[*]}"
"${PIP[@]}" wheel -q --no-deps -w "$STAGE/out" "${SOURCE_ONLY[@]}" || die "pip wheel failed"

echo "gather_wheels: packing detectron2's Python part from $D2_PYPI"
"${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version 3.10 --implementation cp -d "$STAGE/d2" \
  "$D2_PYPI" || die "pip download $D2_PYPI failed"

"$PYTHON" - "$STAGE" "$D2_ARCHIVE" <<'PY' || die "checking or packing the wheels failed"
import glob, os, re, sys, zipfile

stage, archive = sys.argv[1], sys.argv[2]
# Every wheel must install on CPython 3.12, x86_64 Linux: pure, abi3 (cp3x <= 3.12), or cp312 manylinux.
ok = re.compile(r"-(py3|py2\.py3)-none-any\.whl$|-cp3(\d+)-abi3-[^-]*manylinux[^-]*x86_64\.whl$|"
                r"-cp312-cp312-[^-]*manylinux[^-]*x86_64\.whl$")
names = {}
for path in sorted(glob.glob(os.path.join(stage, "out", "*.whl"))):
    base = os.path.basename(path)
    m = ok.search(base)
    if m is None or (m.group(2) and int(m.group(2)) > 12):
        sys.exit(f"error: {base} does not install on CPython 3.12 / x86_64")
    dist = base.split("-")[0].lower()
    if dist in names:
        sys.exit(f"error: two versions of {dist}: {names[dist]} and {base}")
    names[dist] = base
(src,) = glob.glob(os.path.join(stage, "d2", "*.whl"))
dropped = 0
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(os.path.join(stage, "out", archive), "w",
                                                    zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        name = info.filename
        # the compiled _C targets CPython 3.10 and another torch; tools/ would shadow the repository's
        if re.match(r"detectron2/_C[.].*", name) or name.startswith("tools/"):
            dropped += 1
            continue
        zout.writestr(info, zin.read(name))
print(f"gather_wheels: {len(names)} wheels; {archive} from {os.path.basename(src)} ({dropped} files left out)")
PY

# ---- replace DIR, then measure what travels ---------------------------------------------------------------------
rm -rf "$DIR"
mkdir -p "$(dirname "$DIR")"
mv "$STAGE/out" "$DIR"

"$PYTHON" - "$ROOT" "$DIR" "$LIMIT_BYTES" <<'PY'
import datetime, os, subprocess, sys

root, wdir, limit = sys.argv[1], os.path.abspath(sys.argv[2]), int(sys.argv[3])
files = subprocess.run(["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, check=True).stdout.decode().split("\0")
repo = 0
for rel in filter(None, files):
    path = os.path.join(root, rel)
    if os.path.isfile(path) and not os.path.abspath(path).startswith(wdir + os.sep):
        repo += os.path.getsize(path)
entries = sorted((f, os.path.getsize(os.path.join(wdir, f))) for f in os.listdir(wdir))
wheels = sum(size for _, size in entries)
total = repo + wheels
mib = lambda n: n / 2**20  # noqa: E731
lines = [f"# wheel folder made by tools/gpu_kit/gather_wheels.sh on {datetime.date.today()}: name, bytes",
         *[f"{name} {size}" for name, size in entries],
         f"# wheels {wheels} bytes ({mib(wheels):.2f} MiB); repository files that travel {repo} bytes "
         f"({mib(repo):.2f} MiB); together {total} bytes ({mib(total):.2f} MiB) of {mib(limit):.0f} MiB"]
with open(os.path.join(wdir, "MANIFEST.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"gather_wheels: {wdir}: {len(entries)} files, {mib(wheels):.2f} MiB; with the repository's tracked and "
      f"untracked-not-ignored files ({mib(repo):.2f} MiB): {mib(total):.2f} MiB of the {mib(limit):.0f} MiB that "
      "travel to a GPU machine")
if total > limit:
    sys.exit(f"error: {mib(total):.2f} MiB is over the {mib(limit):.0f} MiB limit")
PY
