#!/usr/bin/env bash
# One-command setup: creates .venv/ at the repository root with torch, detectron2 and mfuser.
#
#   bash tools/setup_env.sh            # CPU (and CUDA torch build; mamba_ssm kernels not built)
#   MFUSER_CUDA=1 bash tools/setup_env.sh   # GPU machine: also builds mamba_ssm + causal_conv1d
#
# Environment:
#   PYTHON=python3.11     interpreter used to create the venv (>= 3.10)
#   D2_SOURCE=/path/to/detectron2   build detectron2 from this checkout instead of the PyPI fallback
#   MFUSER_FORCE=1        redo every install step even when the venv is marked complete
#   MFUSER_NO_BROWSER=1   do not install Debian's chromium (the web demo's browser test is then skipped)
#
# Idempotent: the venv is marked complete only after every step succeeded; a second run with the
# same inputs only checks the imports. A venv without the mark is repaired, never trusted.
# Besides the venv, /usr/bin/chromium is installed with apt-get when missing (root or passwordless
# sudo): tests/tools/test_web_demo.py drives it through Playwright.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
MARK="$VENV/.mfuser-setup-complete"
PYTHON="${PYTHON:-python3}"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
SETUPTOOLS_PIN='setuptools>=77.0.3,<81'
D2_PYPI=sal-detectron2==0.7.2
CUDA="${MFUSER_CUDA:-0}"

die() { printf 'setup_env: ERROR: %s\n' "$*" >&2; exit 1; }
say() { printf 'setup_env: %s\n' "$*"; }

# ---- preconditions: one clear message each --------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found. Install Python >= 3.10 or set PYTHON=/path/to/python3."
"$PYTHON" - <<'PY' || die "Python >= 3.10 is required; '$PYTHON' is $("$PYTHON" -c 'import sys;print(sys.version.split()[0])')."
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY
"$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 \
  || die "'$PYTHON -m venv' is not available (module venv/ensurepip missing). On Debian/Ubuntu: apt-get install python3-venv."
CXX_BIN="${CXX:-}"
[ -n "$CXX_BIN" ] || CXX_BIN=$(command -v c++ || command -v g++ || command -v clang++ || true)
[ -n "$CXX_BIN" ] || die "no C++ compiler found (c++/g++/clang++); mfuser compiles its CPU selective-scan kernel. On Debian/Ubuntu: apt-get install g++."
"$PYTHON" - <<'PY' || die "Python development headers (Python.h) are missing. On Debian/Ubuntu: apt-get install python3-dev."
import os, sysconfig, sys
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY

# ---- Chromium for the web demo's browser test (outside the venv, so checked on every run) ----------
CHROMIUM=/usr/bin/chromium
ensure_chromium() {
  [ -x "$CHROMIUM" ] && return 0
  if [ "${MFUSER_NO_BROWSER:-0}" = 1 ]; then
    say "MFUSER_NO_BROWSER=1: not installing chromium; the web demo's browser test will be skipped"; return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get: not installing chromium; the web demo's browser test will be skipped (install $CHROMIUM to run it)"
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then sudo=(sudo -n); else
      say "not root and no passwordless sudo: not installing chromium; the web demo's browser test will be skipped"
      return 0
    fi
  fi
  say "installing Debian's chromium with apt-get (for the web demo's browser test)"
  local log; log=$(mktemp)
  local apt=(${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get)
  if ! { "${apt[@]}" install -y -q --no-install-recommends chromium \
           || { "${apt[@]}" update -q && "${apt[@]}" install -y -q --no-install-recommends chromium; }; } >"$log" 2>&1; then
    tail -n 5 "$log" >&2; rm -f "$log"
    die "'apt-get install chromium' failed (last lines above). Fix apt, or set MFUSER_NO_BROWSER=1 to skip the browser test."
  fi
  rm -f "$log"
  [ -x "$CHROMIUM" ] || die "apt-get installed chromium but $CHROMIUM is missing."
}
ensure_chromium

# ---- fingerprint of everything that decides the venv's content ---------------------------------
fingerprint() {
  {
    "$PYTHON" -c 'import sys; print(sys.version)'
    echo "cuda=$CUDA d2src=${D2_SOURCE:-} ${TORCH_PINS[*]} $SETUPTOOLS_PIN $D2_PYPI"
    cat "$ROOT/tools/setup_env.sh" "$ROOT/setup.py"
    find "$ROOT/mfuser" -path '*/csrc/*' -type f -print0 2>/dev/null | sort -z | xargs -0 -r cat
  } | sha256sum | cut -d' ' -f1
}
FP=$(fingerprint)

check_imports() {
  "$VENV/bin/python" - <<'PY'
import os, detectron2, mfuser, gradio, playwright
src = "PyPI fallback (sal-detectron2, no _C)" if "detectron2-pypi" in detectron2.__file__ else "installed build"
print(f"setup_env: detectron2 {detectron2.__version__} from {os.path.dirname(detectron2.__file__)} [{src}]")
print(f"setup_env: mfuser from {os.path.dirname(mfuser.__file__)}; demo extra: gradio {gradio.__version__}")
PY
}

if [ "${MFUSER_FORCE:-0}" != 1 ] && [ -f "$MARK" ] && [ "$(cat "$MARK")" = "$FP" ] && check_imports; then
  say "venv is complete and up to date: $VENV (nothing changed)"
  exit 0
fi

# ---- venv ---------------------------------------------------------------------------------------
if [ -d "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  say "removing a broken venv at $VENV"
  rm -rf "$VENV"
fi
rm -f "$MARK"   # from here on the venv counts as incomplete until the very end
if [ ! -d "$VENV" ]; then
  say "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV" || { rm -rf "$VENV"; die "'$PYTHON -m venv' failed."; }
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip wheel "$SETUPTOOLS_PIN"

say "installing ${TORCH_PINS[*]}"
"${PIP[@]}" install -q "${TORCH_PINS[@]}" "$SETUPTOOLS_PIN"

# ---- detectron2 ------------------------------------------------------------------------------------
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
D2_PTH="$SITE/mfuser-detectron2-pypi.pth"
D2_DIR="$VENV/detectron2-pypi"
if [ -n "${D2_SOURCE:-}" ]; then
  [ -f "$D2_SOURCE/setup.py" ] || die "D2_SOURCE=$D2_SOURCE is not a detectron2 checkout (no setup.py)."
  say "building detectron2 from $D2_SOURCE"
  rm -f "$D2_PTH"
  "${PIP[@]}" install -q --no-build-isolation -e "$D2_SOURCE"
elif [ ! -f "$D2_PTH" ] && "$VENV/bin/python" -c 'import detectron2' >/dev/null 2>&1; then
  say "keeping the detectron2 already installed in the venv"
else
  if [ ! -f "$D2_DIR/detectron2/__init__.py" ]; then
    say "detectron2 is not on PyPI; installing the PyPI fallback $D2_PYPI (Python part only)"
    rm -rf "$D2_DIR.tmp"
    "${PIP[@]}" install -q --no-deps --only-binary=:all: --python-version 3.10 --target "$D2_DIR.tmp" "$D2_PYPI"
    # Its compiled _C targets another Python/torch and its top-level tools/ would shadow ours.
    rm -f "$D2_DIR.tmp"/detectron2/_C*.so
    rm -rf "$D2_DIR.tmp/tools" "$D2_DIR"
    mv "$D2_DIR.tmp" "$D2_DIR"
  fi
  echo "$D2_DIR" > "$D2_PTH"
fi

# ---- optional CUDA kernels ---------------------------------------------------------------------------
if [ "$CUDA" = 1 ]; then
  command -v nvcc >/dev/null 2>&1 || die "MFUSER_CUDA=1 needs nvcc (CUDA toolkit) on PATH."
  say "building causal_conv1d and mamba_ssm CUDA kernels (takes a long time)"
  "${PIP[@]}" install --no-build-isolation "causal_conv1d>=1.4.0" "mamba_ssm>=2.2.2"
fi

# ---- the project ------------------------------------------------------------------------------------
say "installing mfuser (editable, with the dev and demo extras)"
"${PIP[@]}" install -q --no-build-isolation -e "$ROOT[dev,demo]"

check_imports
fingerprint > "$MARK"
say "done: activate with 'source .venv/bin/activate' or call .venv/bin/python directly"
