"""tools/plot_metrics.py on a metrics.json written like detectron2's JSONWriter."""
import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, "tools", "plot_metrics.py")


def test_plot_metrics_writes_pngs(tmp_path):
    with open(tmp_path / "metrics.json", "w") as f:
        for it in range(5):
            f.write(json.dumps({"iteration": it, "total_loss": 1.0 / (it + 1), "loss_ce": 0.5, "lr": 1e-4 * (it + 1)}))
            f.write("\n")
        f.write(json.dumps({"iteration": 4, "toy_a/mIoU": 30.0, "toy_b/mIoU": 20.0, "average/mIoU": 25.0}) + "\n")
        f.write('{"iteration": 5, "tot')  # truncated last line (killed run) is skipped
    proc = subprocess.run([sys.executable, SCRIPT, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ["losses.png", "lr.png", "miou.png"]:
        path = tmp_path / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_metrics_bad_dir(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "missing")], capture_output=True, text=True)
    assert proc.returncode == 2 and "metrics.json" in proc.stderr and proc.stderr.startswith("error:")
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "metrics.json").write_text('{"iteration": 1, "loss_ce": 1.0}\nnot json\n{"iteration": 2}\n')
    proc = subprocess.run([sys.executable, SCRIPT, str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1 and "line 2 is not JSON" in proc.stderr and proc.stderr.startswith("error:")
