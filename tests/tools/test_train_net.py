"""End-to-end tests of tools/lazyconfig_train_net.py with the toy stand-in model (CPU, generated data)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from mfuser.engine.defaults import default_argument_parser, do_train, launch_train_net
from tests.conftest import REPO_ROOT
from tests.tools.toy_model import generate_toy_data

SCRIPT = os.path.join(REPO_ROOT, "tools", "lazyconfig_train_net.py")
TOY_CONFIG = os.path.join(REPO_ROOT, "tests", "tools", "toy_config.py")


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return generate_toy_data(str(tmp_path_factory.mktemp("toy_data")))


def run_tool(toy_data, *args, check=True):
    env = dict(os.environ, MFUSER_TOY_DATA=toy_data, OMP_NUM_THREADS="1", PYTHONPATH=REPO_ROOT)
    proc = subprocess.run([sys.executable, SCRIPT, "--config-file", TOY_CONFIG, *args], capture_output=True,
                          text=True, env=env, cwd=REPO_ROOT, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"tool failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def read_metrics(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def trained(toy_data, tmp_path_factory):
    """6 iterations, checkpoints after iterations 3 and 6 (model_0000002, model_0000005, model_final)."""
    out = str(tmp_path_factory.mktemp("train"))
    run_tool(toy_data, f"train.output_dir={out}")
    return out


def test_train_writes_checkpoints_metrics_and_events(trained):
    files = os.listdir(trained)
    for name in ["model_0000002.pth", "model_final.pth", "last_checkpoint", "metrics.json", "config.yaml", "log.txt"]:
        assert name in files, f"{name} missing from {files}"
    assert any(f.startswith("events.out.tfevents") for f in files), files
    assert not any(f.endswith(".tmp") for f in files), files
    with open(os.path.join(trained, "last_checkpoint")) as f:
        assert f.read().strip() == "model_final.pth"
    metrics = read_metrics(trained)
    iters = [m["iteration"] for m in metrics if "lr" in m]
    assert iters == list(range(6))
    lrs = [m["lr"] for m in metrics if "lr" in m]
    assert lrs[0] == pytest.approx(1e-2 * 1e-6) and max(lrs) > 1e-3  # warm-up from 1e-6 x lr
    assert "toy_target_a/mIoU" in metrics[-1] and "average/mIoU" in metrics[-1]
    with open(os.path.join(trained, "log.txt")) as f:
        assert "eta:" in f.read()


def test_eval_only_on_two_domains(toy_data, trained, tmp_path):
    out = str(tmp_path / "eval")
    proc = run_tool(toy_data, "--eval-only", f"train.init_checkpoint={trained}/model_final.pth",
                    f"train.output_dir={out}", "train.per_class_table=True")
    for token in ["toy_target_a", "toy_target_b", "average", "mIoU", "mAcc", "per-class IoU"]:
        assert token in proc.stdout, proc.stdout
    with open(os.path.join(out, "eval", "model_final", "results.json")) as f:  # its own folder
        results = json.load(f)
    assert list(results) == ["toy_target_a", "toy_target_b", "average", "precision"]
    for name in ["toy_target_a", "toy_target_b"]:
        assert 0.0 <= results[name]["mIoU"] <= 100.0
        assert set(results[name]["IoU"]) == {"road", "car", "sky"}
    avg = (results["toy_target_a"]["mIoU"] + results["toy_target_b"]["mIoU"]) / 2
    assert results["average"]["mIoU"] == pytest.approx(avg)

    # any registered domain by override
    out2 = str(tmp_path / "eval2")
    run_tool(toy_data, "--eval-only", f"train.init_checkpoint={trained}/model_final.pth",
             f"train.output_dir={out2}", "dataloader.targets=[toy_source_train]")
    with open(os.path.join(out2, "eval", "model_final", "results.json")) as f:
        assert list(json.load(f)) == ["toy_source_train", "average", "precision"]


def test_resume_continues_at_same_iteration_lr_and_samples(toy_data, trained, tmp_path):
    """A run 'killed' after saving model_0000002 resumes at iteration 3 and ends bit-identical."""
    out = str(tmp_path / "resume")
    os.makedirs(out)
    shutil.copy(os.path.join(trained, "model_0000002.pth"), out)
    with open(os.path.join(out, "last_checkpoint"), "w") as f:
        f.write("model_0000002.pth")
    run_tool(toy_data, "--resume", f"train.output_dir={out}")
    with open(os.path.join(out, "log.txt")) as f:
        assert "Starting training from iteration 3" in f.read()
    ref = {m["iteration"]: m["lr"] for m in read_metrics(trained) if "lr" in m}
    got = {m["iteration"]: m["lr"] for m in read_metrics(out) if "lr" in m}
    assert sorted(got) == [3, 4, 5]
    for it, lr in got.items():
        assert lr == pytest.approx(ref[it], rel=1e-9), (it, lr, ref[it])
    a = torch.load(os.path.join(trained, "model_final.pth"), map_location="cpu")["model"]
    b = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu")["model"]
    for k in a:  # same batches in the same order (sampler position) and same optimizer state
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-7, msg=k)


@pytest.fixture(scope="module")
def tool():
    """The CLI's entry point, run in this process (saves interpreter start-up)."""
    return lambda argv: launch_train_net(default_argument_parser().parse_args(argv))


def run_in_process(tool, toy_data, monkeypatch, capsys, *args):
    """Run the CLI entry in this process; returns (exit code, stderr)."""
    monkeypatch.setenv("MFUSER_TOY_DATA", toy_data)
    code = tool(["--config-file", TOY_CONFIG, *args])
    return code, capsys.readouterr().err


def test_unregistered_dataset_is_named_with_the_registered_ones(tool, toy_data, tmp_path, monkeypatch, capsys):
    code, err = run_in_process(tool, toy_data, monkeypatch, capsys, "--eval-only", "train.init_checkpoint=x.pth",
                               "dataloader.targets=[no_such_domain]", f"train.output_dir={tmp_path}")
    assert code == 1
    err = err.strip().splitlines()[-1]
    assert err.startswith("error:") and "no_such_domain" in err and "toy_target_a" in err and "gta5_train" in err


def test_missing_and_mismatched_checkpoints(tool, toy_data, trained, tmp_path, monkeypatch, capsys):
    code, err = run_in_process(tool, toy_data, monkeypatch, capsys, "--eval-only",
                               f"train.init_checkpoint={tmp_path}/nope.pth", f"train.output_dir={tmp_path}")
    assert code == 1 and "nope.pth" in err and "not found" in err
    code, err = run_in_process(tool, toy_data, monkeypatch, capsys, "--eval-only", "model.hidden=4",
                               f"train.init_checkpoint={trained}/model_final.pth", f"train.output_dir={tmp_path}")
    assert code == 1
    assert "does not match the model" in err and "body.weight" in err and "(8, 8, 3, 3)" in err


def test_nan_loss_stops_training_naming_iteration_and_terms(tool, toy_data, tmp_path, monkeypatch, capsys):
    code, err = run_in_process(tool, toy_data, monkeypatch, capsys, "+model.nan_at_iter=2",
                               f"train.output_dir={tmp_path}")
    assert code == 1
    assert "iteration 2" in err and "loss_ce=nan" in err, err[-2000:]
    assert not os.path.exists(os.path.join(tmp_path, "model_final.pth"))


def test_help():
    proc = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0 and "--eval-only" in proc.stdout and "--resume" in proc.stdout


# ------------------------------------------------------------------------------------------------ DDP
def _ddp_worker(toy_data, out):
    os.environ["MFUSER_TOY_DATA"] = toy_data
    torch.set_num_threads(1)
    from detectron2.config import LazyConfig
    from detectron2.utils import comm

    args = default_argument_parser().parse_args(
        ["--config-file", TOY_CONFIG, f"train.output_dir={out}", "train.max_iter=3", "train.eval_period=0",
         "dataloader.targets=[]", "dataloader.train.total_batch_size=4"]
    )
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    trainer = do_train(cfg, resume=args.resume)
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
               os.path.join(out, f"rank{comm.get_rank()}.pt"))


def test_two_process_cpu_ddp_keeps_ranks_identical(toy_data, tmp_path):
    from detectron2.engine import launch

    out = str(tmp_path)
    launch(_ddp_worker, 2, dist_url="auto", args=(toy_data, out))
    r0 = torch.load(os.path.join(out, "rank0.pt"))
    r1 = torch.load(os.path.join(out, "rank1.pt"))
    init = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu")["model"]
    for k in r0:
        torch.testing.assert_close(r0[k], r1[k], rtol=0, atol=0, msg=k)
        if k.startswith("stem."):  # declared optional (frozen, rebuilt by the model): not stored in checkpoints
            assert k not in init
            continue
        torch.testing.assert_close(r0[k], init[k], rtol=0, atol=0, msg=k)


def test_periodic_evaluations_use_a_fixed_subset(toy_data, monkeypatch):
    from detectron2.config import LazyConfig

    from mfuser.engine.defaults import build_target_loader

    monkeypatch.setenv("MFUSER_TOY_DATA", toy_data)
    cfg = LazyConfig.load(TOY_CONFIG)
    full = build_target_loader(cfg, "toy_target_a")
    part = build_target_loader(cfg, "toy_target_a", max_images=1)
    assert len(part.dataset) == 1 < len(full.dataset)
    assert [d["file_name"] for d in part.dataset] == [d["file_name"] for d in full.dataset][:1]
    assert "dataset" in cfg.dataloader.test and not isinstance(cfg.dataloader.test.dataset, list)
    (batch,) = list(part)
    assert type(batch[0]) is dict and batch[0]["file_name"] == part.dataset[0]["file_name"]


def test_a_missing_config_file_is_a_usage_error(tool, capsys, tmp_path):
    assert tool(["--config-file", str(tmp_path / "nope.py")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "nope.py" in err


def test_bad_overrides_are_one_error_line(tool, capsys, toy_data, monkeypatch):
    monkeypatch.setenv("MFUSER_TOY_DATA", toy_data)
    for bad in ("train.max_iter.foo=1", "train.device=["):
        assert tool(["--config-file", TOY_CONFIG, bad]) == 1, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: config override") and bad in err[0], (bad, err)


# ------------------------------------------------------------------------------ nothing silently lost (issue 16)
def test_misspelled_and_mistyped_overrides_are_refused(tool, capsys, toy_data, monkeypatch, tmp_path):
    monkeypatch.setenv("MFUSER_TOY_DATA", toy_data)
    code = tool(["--config-file", TOY_CONFIG, "train.max_iters=4", f"train.output_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "train.max_iters" in err[0] and "closest existing keys: train.max_iter" in err[0], err
    assert not os.path.exists(tmp_path / "model_final.pth")  # no run started
    code = tool(["--config-file", TOY_CONFIG, "train.max_iter=abc", f"train.output_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "expected an integer" in err[0], err


def test_training_refuses_a_folder_with_another_run_unless_resume_or_overwrite(trained, tool, toy_data, monkeypatch,
                                                                              capsys, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = {f: os.path.getmtime(out / f) for f in ("model_final.pth", "metrics.json", "config.yaml")}
    code, err = run_in_process(tool, toy_data, monkeypatch, capsys, f"train.output_dir={out}")
    assert code == 1 and "already holds a training run" in err and "--resume" in err and "--overwrite" in err, err
    assert {f: os.path.getmtime(out / f) for f in before} == before  # nothing touched
    code, err = run_in_process(tool, toy_data, monkeypatch, capsys, "--overwrite", "train.max_iter=2",
                               "dataloader.targets=[]", f"train.output_dir={out}")
    assert code == 0, err
    assert not (out / "model_0000005.pth").exists()  # the earlier run's files are gone, the new run's are there
    assert sorted(m["iteration"] for m in read_metrics(out) if "lr" in m) == [0, 1]


def test_eval_only_twice_never_touches_training_files_or_earlier_evaluations(trained, tool, toy_data, monkeypatch,
                                                                             capsys, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    training_files = {f: (out / f).read_bytes() for f in ("results.json", "config.yaml", "metrics.json")}
    ckpt = f"train.init_checkpoint={out}/model_final.pth"
    for targets in ("[toy_target_a]", "[toy_target_b]"):
        code, err = run_in_process(tool, toy_data, monkeypatch, capsys, "--eval-only", ckpt,
                                   f"dataloader.targets={targets}", f"train.output_dir={out}")
        assert code == 0, err
    assert {f: (out / f).read_bytes() for f in training_files} == training_files
    first = json.loads((out / "eval" / "model_final" / "results.json").read_text())
    second = json.loads((out / "eval" / "model_final-2" / "results.json").read_text())
    assert first["average"]["domains"] == ["toy_target_a"] and second["average"]["domains"] == ["toy_target_b"]
    assert (out / "eval" / "model_final" / "config.yaml").is_file()


def test_finished_domains_are_written_when_a_later_domain_fails(trained, tool, toy_data, monkeypatch, capsys,
                                                                tmp_path):
    victim = os.path.join(toy_data, "toy_target_b", "images", "000.png")
    saved = open(victim, "rb").read()
    try:
        with open(victim, "wb") as f:
            f.write(b"not a png")
        code, err = run_in_process(tool, toy_data, monkeypatch, capsys, "--eval-only",
                                   f"train.init_checkpoint={trained}/model_final.pth",
                                   f"train.output_dir={tmp_path / 'out'}")
    finally:
        with open(victim, "wb") as f:
            f.write(saved)
    err = err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error: ") and "toy_target_b" in err[0], err
    results = json.loads((tmp_path / "out" / "eval" / "model_final" / "results.json").read_text())
    assert 0 <= results["toy_target_a"]["mIoU"] <= 100
    assert "error" in results["toy_target_b"] and results["average"]["domains"] == ["toy_target_a"]


def test_resume_skips_a_truncated_newest_checkpoint(trained, toy_data, tmp_path):
    out = tmp_path / "run"
    os.makedirs(out)
    for f in ("model_0000002.pth", "model_0000005.pth"):
        shutil.copy(os.path.join(trained, f), out)
    data = (out / "model_0000005.pth").read_bytes()
    (out / "model_0000005.pth").write_bytes(data[: len(data) // 2])  # a kill during a non-atomic copy
    (out / "last_checkpoint").write_text("model_0000005.pth")
    proc = run_tool(toy_data, "--resume", f"train.output_dir={out}", "dataloader.targets=[]")
    log = (out / "log.txt").read_text()
    assert "skipping unreadable checkpoint" in log and "model_0000005.pth" in log
    assert "Starting training from iteration 3" in log
    assert "skipping unreadable checkpoint" in proc.stdout  # warnings reach the console too


def test_project_log_lines_reach_console_and_log_file_without_ansi_codes(trained, toy_data, tmp_path):
    out = tmp_path / "run"
    proc = run_tool(toy_data, f"train.output_dir={out}", "train.max_iter=1", "dataloader.targets=[]")
    log = (out / "log.txt").read_text()
    for text in (proc.stdout, log):
        assert "trainable parameters" in text  # the project's own logger (mfuser.*)
        assert "\x1b[" not in text  # stdout is a pipe here: no colour codes


def test_training_failures_are_one_error_line(tool, toy_data, monkeypatch, capsys, tmp_path):
    import errno

    import mfuser.engine.checkpoint as ckpt

    def full_disk(obj, f, *a, **k):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed writing file") from e

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    code, err = run_in_process(tool, toy_data, monkeypatch, capsys, "train.max_iter=3", "dataloader.targets=[]",
                               f"train.output_dir={tmp_path / 'full'}")
    assert code == 1 and err.strip().splitlines() == ["error: disk full (no space left on device)"], err
    monkeypatch.undo()

    victim = os.path.join(toy_data, "toy_source_train", "images", "000.png")
    saved = open(victim, "rb").read()
    try:
        with open(victim, "wb") as f:
            f.write(saved[: len(saved) // 2])  # a valid header: decoding fails in the loader worker
        code, err = run_in_process(tool, toy_data, monkeypatch, capsys, "train.max_iter=8", "dataloader.targets=[]",
                                   "dataloader.train.num_workers=1", f"train.output_dir={tmp_path / 'corrupt'}")
    finally:
        with open(victim, "wb") as f:
            f.write(saved)
    err = err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    assert "000.png" in err[0], err


def test_resume_without_last_checkpoint_uses_the_newest_checkpoint_file(trained, tool, toy_data, monkeypatch,
                                                                         capsys, tmp_path):
    out = tmp_path / "run"
    os.makedirs(out)
    shutil.copy(os.path.join(trained, "model_0000002.pth"), out)  # last_checkpoint lost, the file is there
    code, err = run_in_process(tool, toy_data, monkeypatch, capsys, "--resume", "dataloader.targets=[]",
                               f"train.output_dir={out}")
    assert code == 0, err
    assert sorted(m["iteration"] for m in read_metrics(out) if "lr" in m) == [3, 4, 5]
