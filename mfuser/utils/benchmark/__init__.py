"""Model-level speed and memory benchmarks of MFuser, each reported as a ratio measured in one process.

Subcommands (all on CPU by default; ``--device cuda`` on a GPU; autocast: see ``--precision``)::

    python tools/benchmark.py model --config-file configs/common/models/mfuser_eva02.py [--size 512]
    python tools/benchmark.py slide --config-file configs/common/models/mfuser_eva02.py --size 1024x2048 \
        [--window-batch 6]
    python tools/benchmark.py train-step --config-file configs/common/models/mfuser_eva02.py [--batch 2 --crop 512]

Common options: ``--device``, ``--threads N`` (torch.set_num_threads, default 1), ``--warmup``, ``--repeats``
(the minimum over the repeats is reported; ratios use the minima), ``--json`` (one JSON object on stdout
instead of a table), ``--precision`` (alias ``--amp``) ``auto|fp32|off|bf16|fp16``, ``--no-reference``,
``--seed`` and trailing ``KEY=VALUE`` config overrides
(``LazyConfig.apply_overrides``, e.g. ``model.window_batch_size=3``). The config may be a model config
(``configs/common/models/*.py``) or a training config; both define a top-level ``model``. Weights are the
ones the config builds with (random when it names no checkpoint), which does not change speed or memory.

``model``: one forward of ``MFuser.forward_features`` (backbone -> MTEnhancer -> head, i.e. everything but
the final resize) on a batch-1 SIZE image, against the two frozen encoders alone on the same image (embed,
every block of both, DINOv2's final norm and the VLM's ``finish``; no fusion). The breakdown comes from
separate runs in which the pieces' entry points are wrapped with timers (encoder ``embed`` / ``block`` /
``final_norm`` / ``finish``; ``forward`` of every fuser (and fusion projection), the pyramid, the text
encoder, the MTEnhancer, the pixel decoder and the transformer decoder; on CUDA each timer synchronises);
"other" is the rest of the forward (token concatenation and splitting, residual adds, tap reshapes). FLOPs
are counted by fvcore on the same two functions (one fused multiply-add = one flop), with an added counter
for ``scaled_dot_product_attention`` (which fvcore's default table lacks, so the ViTs' attention would
otherwise be missed), ``_native_multi_head_attention``, ``_convolution_mode`` (padding="same" convs) and
``rms_norm``; ops fvcore does not count (elementwise ops, and the selective scan, a custom autograd function)
are listed in ``flops_uncounted_ops``.
``time_over_flops = full_over_encoders / flops_ratio``: 1.0 means the added modules run at the encoders'
FLOP rate; above 1 they are slower per FLOP. The same subcommand checks that in inference the frozen text
tower runs once for a fixed vocabulary, not per image: it counts forward calls of the text tower's
transformer while ``MFuser`` (eval mode, fresh cache) segments three small images in two calls.

``slide``: ``MFuser`` sliding-window inference on one SIZE image with ``window_batch_size=1`` (window by
window) and with ``--window-batch`` windows per forward; times, speed-up and peak memory of each, and the
largest difference between the two outputs (they must agree). Each warm-up run segments, in each mode, the
smallest image that fills one batch of windows (crop height x (crop width + (batch - 1) x stride width)), so
that warming up costs 1 + WINDOW_BATCH windows instead of two full images.

``train-step``: one optimizer step (forward with losses, backward, AdamW over the trainable parameters)
on BATCH random CROP x CROP images with random labels, with ``model.backbone.activation_checkpointing``
off and on; times and peak memory of each, ``mem_ratio = peak_mem_plain_mb / peak_mem_ckpt_mb``. The AdamW
state is created before the measurement (a step with zero gradients), so both modes measure the same
steady-state step. A 512 crop runs as it is (36 x 36 tokens for /14 patches, 32 x 32 for /16).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the allocation at the start of the measured
call (tensors only). On CPU there is no allocator statistic: a thread samples the process's resident set
(``/proc/self/statm``) every millisecond and the peak growth above the resident set at the start of the call
is reported, after ``malloc_trim`` has returned freed heap memory to the system (glibc). That counts
everything the call touches (tensors, oneDNN scratch, allocator slack) and misses spikes shorter than the
sampling period.

Precision: ``auto`` is bf16 autocast on a CPU with native bf16 (AVX512-BF16 / AMX, the test of
``train.precision=auto``: :func:`mfuser.layers.amp.cpu_bf16_support`), fp32 on other CPUs, and on CUDA the config's
``train.amp`` (bf16 for model configs). When the chosen precision is not fp32, ``model`` and ``slide`` also
measure fp32 in the same run, interleaved with it repeat by repeat, and report both (``by_precision``) with
their ratios (``over_fp32``); ``--no-reference`` measures the chosen precision only. ``train-step`` measures
the chosen precision only.

JSON keys (all subcommands): ``subcommand``, ``config``, ``device``, ``threads``, ``precision``
(``fp32`` / ``bf16`` / ``fp16``), ``reference_precision`` (``fp32`` or null), ``warmup``, ``repeats``,
``overrides``, ``loadavg`` (1-minute load average before and after), ``targets`` (target name -> bool, where the
subcommand has a target), ``notes`` (substitutions made to run on this machine, e.g. stand-in token ids when a
SigLIP tokenizer file is absent); then

* ``model``: ``size`` [H, W], ``grid`` [h, w], ``time_encoders_s``, ``time_full_s``, ``full_over_encoders``,
  ``breakdown_s`` {encoders, fusers, pyramid, mtenhancer, pixel_decoder, transformer_decoder, text_encoder,
  other}, ``breakdown_total_s``, ``added_share`` (share of the breakdown outside the encoders) -- these of the chosen
  precision, and per precision in ``by_precision`` {name: {the same keys}} --, ``flops_encoders``, ``flops_full``,
  ``flops_ratio``, ``time_over_flops``, ``flops_breakdown`` (same keys as ``breakdown_s``; "other" = flops
  outside those modules),
  ``flops_uncounted_ops`` {op: count}, ``text_tower_calls``, ``text_tower_images``, ``text_cached``
  (None where the model has no ``text_encoder.tower.transformer`` to count).
* ``slide``: ``size``, ``crop_size``, ``stride``, ``num_windows``, ``window_batch``, ``time_single_s``,
  ``time_batched_s``, ``speedup`` (single / batched), ``peak_mem_single_mb``, ``peak_mem_batched_mb``,
  ``mem_ratio`` (batched / single), ``max_abs_diff`` -- per precision also in ``by_precision``, where the reference
  has ``agreement`` {pixels_same_label, max_abs_score_diff} with the chosen precision's window-by-window output --,
  ``memory_method``, ``faster_window_batch`` (1 or ``window_batch``, whichever was faster in the chosen precision).
* with a reference: ``over_fp32`` {time key: chosen / fp32; ``breakdown_s``: per component} and the targets
  ``full_bf16_over_fp32<=0.45`` and ``added_share_bf16<=fp32`` (``model``).
* ``train-step``: ``batch``, ``crop``, ``trainable_params``, ``time_plain_s``, ``time_ckpt_s``,
  ``time_ratio`` (ckpt / plain), ``peak_mem_plain_mb``, ``peak_mem_ckpt_mb``, ``mem_ratio`` (plain / ckpt),
  ``memory_method``, ``loss_plain``, ``loss_ckpt`` (the loss of each measured step; the steps update the
  weights, so the two differ). With ``--only MODE`` the other mode's keys are null and there is no target.
"""
from .cli import build_parser, main
from .measure import BenchmarkError

__all__ = ["BenchmarkError", "build_parser", "main"]
