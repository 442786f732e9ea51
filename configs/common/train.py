"""Training-loop settings read by tools/lazyconfig_train_net.py (published values: 20k iterations,
checkpoint every 2k, evaluation at the end, seed 2023, FP32 on GPUs)."""
train = dict(
    output_dir="./output",
    # checkpoint to initialise from (and to evaluate with --eval-only); "" = the weights the model builds with
    init_checkpoint="",
    max_iter=20000,
    # Compute precision of training and inference (mfuser/engine/precision.py): "auto" = bf16 autocast on a CPU
    # with native bf16 (AVX512-BF16 / AMX), fp32 on other CPUs, and on CUDA what `amp` says (off: fp32, as
    # published); "fp32" or "bf16" force it. Command line: train.precision=bf16 (--precision in the quickstart).
    precision="auto",
    # CUDA mixed-precision training: precision "bf16" or "fp16" (with a gradient scaler). Checked together with
    # `precision` (one decision): enabled=True needs precision "auto" (or "bf16" with amp precision bf16).
    amp=dict(enabled=False, precision="bf16"),
    # Every trainable MFuser parameter gets a gradient in every step (tested), so DDP needs no search for
    # unused ones (the published code sets it because its SigLIP variant builds projections it never uses).
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    # periodic checkpoints (written atomically; model_final.pth at the end)
    checkpointer=dict(period=2000, max_to_keep=1),
    eval_period=20000,  # evaluate on every target of dataloader.targets; <=0 or > max_iter: only at the end
    eval_subset=None,  # images per target in the evaluations before the last iteration (None: all)
    log_period=50,
    device="cuda",  # "cpu" works too (DDP then uses gloo)
    seed=2023,  # fixes the sampler stream too, which makes --resume continue at the same sample
    cudnn_benchmark=False,
    per_class_table=False,  # also print per-class IoU per domain after evaluation
)
