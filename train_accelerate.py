"""Train the colorgan conditional GAN with accelerate: one CPU, one GPU, many GPUs or nodes.

    accelerate launch train_accelerate.py --dataset coco --output-dir runs/coco
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train_accelerate.py ...

Two phases, as in the pix2pix colorization recipes: an L1-only warm-up of the generator
(`--pretrain-steps`), then adversarial training (GAN loss + lambda * L1). Data streams
through `datasets`; workers yield uint8 squares and the random crops, the Lab conversion
and the simulated colour hints happen batched on the training device.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import time
import zlib
from collections import Counter
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedType, ProjectConfiguration, set_seed
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from colorgan.checkpoint import (
    DEFAULT_MAX_PARAMETERS,
    DISCRIMINATOR_FOLDER,
    FACTS_NAME,
    CheckpointError,
    hub_errors_as_checkpoint_errors,
)
from colorgan.color import model_space_to_rgb, rgb_to_model_space
from colorgan.data import SKIP_REASONS, collate, load_validation_images, open_stream, random_resized_crop, training_stream
from colorgan.encoders import load_rgb_encoder_weights, read_encoder_file, timm_pretrained_encoder
from colorgan.hints import generator_input, sample_training_hints
from colorgan.losses import GAN_LOSSES, chroma_weighted_l1, discriminator_loss, generator_adversarial_loss
from colorgan.metrics import colorfulness, psnr, ssim
from colorgan.models import CONFIG_LIMITS, DISCRIMINATOR_NORMS, ENCODER_PAD_TYPES, PatchDiscriminator, Pix2PixUNet, UNetGenerator

STATE_FILE = "training_state.json"  # step, phase, epoch, images seen, skip counts: beside accelerate's state


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True, help="preset (coco, celeba), Hub dataset id, or local folder")
    data.add_argument("--split", default="train", help="split to train on")
    data.add_argument("--image-column", help="column holding the images (default: detected)")
    data.add_argument("--val-dataset", help="dataset for validation (default: --dataset)")
    data.add_argument("--val-split", help="split for validation, e.g. validation; default: hold out --val-count")
    data.add_argument("--val-count", type=int, default=16, help="validation images (held out from the stream if no --val-split)")
    data.add_argument("--resolution", type=int, default=256, help="training crop side in pixels")
    data.add_argument("--loader-size", type=int,
                      help="side of the squares workers yield, which random crops (0.6-1 of the side) are cut from and"
                           " resized to --resolution; larger keeps objects at the scale the model runs at (default 1.25x)")
    data.add_argument("--shuffle-buffer", type=int, default=0,
                      help="example shuffle buffer; 0 shuffles shard order only (exact resume; a full shuffle for image folders)")
    data.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes decoding images")
    model = parser.add_argument_group("model")
    model.add_argument("--generator", choices=["unet", "pix2pix-unet"], default="unet",
                       help="unet: colorgan's U-Net over a timm encoder; pix2pix-unet: pix2pix's unet_256, the"
                            " reference recipe of the colorization tutorials (trained without hints)")
    model.add_argument("--encoder", default="regnetx_002", help="timm encoder of the U-Net generator")
    model.add_argument("--encoder-pretrained", "--pretrained-encoder", dest="encoder_pretrained", action="store_true",
                       help="start the encoder from timm's ImageNet weights (the Hub, or timm's cache offline)")
    model.add_argument("--encoder-weights", metavar="FILE.safetensors",
                       help="start the encoder from a local RGB state dict of the timm encoder"
                            " (e.g. from scripts/import_tflite_encoder.py)")
    model.add_argument("--encoder-pad-type", choices=ENCODER_PAD_TYPES,
                       help="encoder padding: 'same' (TensorFlow's) for weights trained in TF; default: the"
                            " --encoder-weights file's pad_type metadata, else '' (timm's symmetric)")
    model.add_argument("--decoder-channels", type=int, nargs="+", default=[256, 128, 64, 32, 16],
                       help="decoder widths, deepest first, one per 2x upsampling step")
    model.add_argument("--decoder-hints", action="store_true",
                       help="also feed the hints, summarised per cell, to every coarse decoder block, so the"
                            " network alone can colour a region from a hint (recommended with a pretrained encoder)")
    model.add_argument("--hint-spread", type=int, default=0,
                       help="with --decoder-hints: each decoder cell also hears the hints of the (2N+1)^2 cells"
                            " around it, so a hint reaches past its own cell (0: its own cell only)")
    model.add_argument("--disc-channels", type=int, default=64, help="width of the PatchGAN's first layer")
    model.add_argument("--disc-layers", type=int, default=3, help="PatchGAN stride-2 layers (3 -> 70x70 patches)")
    model.add_argument("--disc-norm", choices=DISCRIMINATOR_NORMS, default="batch",
                       help="PatchGAN normalization: BatchNorm (pix2pix) or spectral norm on every conv")
    model.add_argument("--init-from", help="fine-tune a published checkpoint (folder or Hub repo id)")
    model.add_argument("--max-parameters", type=int, default=DEFAULT_MAX_PARAMETERS,
                       help="refuse an --init-from model (G or D) with more parameters than this")
    train = parser.add_argument_group("training")
    train.add_argument("--output-dir", required=True, help="where checkpoints, samples and the final model go")
    train.add_argument("--max-steps", type=int, default=10_000, help="optimizer steps in total, both phases")
    train.add_argument("--max-minutes", type=float,
                       help="also stop once training has run this long (resumed runs included): a fixed compute"
                            " budget, e.g. to compare recipes on one machine")
    train.add_argument("--pretrain-steps", type=int, default=2_000, help="L1-only warm-up steps before the GAN phase")
    train.add_argument("--batch-size", type=int, default=16, help="images per device per micro-step")
    train.add_argument("--gradient-accumulation-steps", type=int, default=1, help="micro-steps per optimizer step")
    train.add_argument("--learning-rate", type=float, default=2e-4, help="Adam learning rate of G and D (pix2pix)")
    train.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                       help="cosine decays both learning rates to 1%% over the run; progress is the larger of"
                            " step / --max-steps and time / --max-minutes")
    train.add_argument("--encoder-lr-scale", type=float, default=1.0,
                       help="encoder learning rate = this x --learning-rate (lower keeps pretrained features)")
    train.add_argument("--encoder-frozen-steps", type=int, default=0,
                       help="steps at the start during which the encoder's learning rate is 0 (decoder warm-up)")
    train.add_argument("--adam-beta1", type=float, default=0.5, help="Adam beta1; 0.5 steadies GAN training")
    train.add_argument("--adam-beta2", type=float, default=0.999, help="Adam beta2")
    train.add_argument("--gan-loss", choices=GAN_LOSSES, default="vanilla", help="adversarial loss")
    train.add_argument("--lambda-l1", type=float, default=100.0, help="weight of L1 against the GAN loss")
    train.add_argument("--l1-chroma-weight", type=float, default=0.0,
                       help="weight each pixel's L1 by 1 + this x its true chroma (|ab| / 110), so dull guesses on"
                            " colourful pixels cost more; 0 is plain L1")
    train.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping; 0 disables it")
    train.add_argument("--hint-prob", type=float, default=0.5, help="share of images given simulated colour hints")
    train.add_argument("--ema-decay", type=float, default=0.999, help="EMA of generator weights (the exported copy)")
    train.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no", help="autocast precision")
    train.add_argument("--compile", action="store_true", help="torch.compile the models")
    train.add_argument("--channels-last", action="store_true", help="channels_last memory format (faster convs on GPU)")
    train.add_argument("--seed", type=int, default=0, help="seeds models, data order, crops and hints")
    run = parser.add_argument_group("checkpoints, validation and logging")
    run.add_argument("--checkpoint-every", type=int, default=500, help="save the full training state every N steps")
    run.add_argument("--keep-checkpoints", type=int, default=3, help="how many recent checkpoints to keep")
    run.add_argument("--resume", help="'latest' or a checkpoint folder to continue exactly from")
    run.add_argument("--val-every", type=int, default=500, help="validate and save a sample grid every N steps")
    run.add_argument("--report-to", choices=["none", "tensorboard"], default="none", help="experiment tracker")
    run.add_argument("--push-to-hub", metavar="REPO_ID", help="publish the final model to this Hub repo")
    run.add_argument("--record-seen-images", action="store_true",
                     help="debug: each process writes the CRC of every image it trains on (output-dir/seen/)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)

    # Fail before any work starts on combinations that cannot work.
    args.loader_size = args.loader_size or round(args.resolution * 1.25)
    if args.loader_size < args.resolution:
        parser.error("--loader-size cannot be smaller than --resolution")
    if args.pretrain_steps > args.max_steps:
        parser.error("--pretrain-steps cannot exceed --max-steps")
    if args.resolution < 32:
        parser.error("--resolution must be at least 32")
    if not 0 <= args.hint_prob <= 1:
        parser.error("--hint-prob must be between 0 and 1")
    if not 0 <= args.l1_chroma_weight <= 100:  # NaN fails the comparison too
        parser.error("--l1-chroma-weight must be between 0 and 100")
    if not 0 <= args.ema_decay < 1:
        parser.error("--ema-decay must be in [0, 1)")
    if min(args.batch_size, args.checkpoint_every, args.val_every, args.keep_checkpoints, args.val_count) < 1:
        parser.error("--batch-size, --checkpoint-every, --val-every, --keep-checkpoints, --val-count must be >= 1")
    if args.resume and args.init_from:
        parser.error("--resume continues a run; --init-from starts a new one: use one of them")
    if args.resume and args.resume != "latest" and not Path(args.resume).is_dir():
        parser.error(f"--resume {args.resume}: no such checkpoint folder")
    if args.encoder_pretrained and args.encoder_weights:
        parser.error("--encoder-pretrained and --encoder-weights both give encoder weights: use one")
    if args.init_from and (args.encoder_pretrained or args.encoder_weights or args.encoder_pad_type is not None
                           or args.decoder_hints or args.hint_spread):
        parser.error("--init-from already has trained weights and an architecture; drop --encoder-pretrained,"
                     " --encoder-weights, --encoder-pad-type, --decoder-hints and --hint-spread")
    if args.hint_spread and not args.decoder_hints:
        parser.error("--hint-spread widens the decoder hints: add --decoder-hints")
    spread_limit = CONFIG_LIMITS["hint_spread"]  # the bound config.json is checked against
    if not spread_limit.low <= args.hint_spread <= spread_limit.high:
        parser.error(f"--hint-spread must be between {spread_limit.low} and {spread_limit.high} cells")
    if args.encoder_weights and not Path(args.encoder_weights).is_file():
        parser.error(f"--encoder-weights {args.encoder_weights}: no such file")
    if args.encoder_lr_scale < 0 or args.encoder_frozen_steps < 0:
        parser.error("--encoder-lr-scale and --encoder-frozen-steps cannot be negative")
    if args.max_minutes is not None and args.max_minutes <= 0:
        parser.error("--max-minutes must be positive")
    if args.generator == "pix2pix-unet" and (args.init_from or args.hint_prob > 0 or args.encoder_pretrained
                                             or args.encoder_weights or args.encoder_pad_type is not None
                                             or args.decoder_hints):
        parser.error("--generator pix2pix-unet trains from scratch without hints: set --hint-prob 0, drop"
                     " --init-from, --decoder-hints and the --encoder-* options")
    if args.val_split is None and args.val_dataset:
        parser.error("--val-dataset needs --val-split")
    return args


def ema_with_warmup(decay: float):
    """EMA update for `AveragedModel`: decay ramps up as (1+n)/(10+n) so short runs aren't stuck at init."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():  # BN's num_batches_tracked: just follow
            torch._foreach_copy_(averaged, current)
            return
        step_decay = min(decay, (1 + num_averaged.item()) / (10 + num_averaged.item()))
        torch._foreach_lerp_(averaged, current, 1 - step_decay)

    return update


def whole_photo_render_size(args: argparse.Namespace) -> int:
    """Long side at which a whole photo shows objects at the scale of the training crops.

    Crops cover 0.6-1 (0.8 on average) of the loader's square, which spans the photo's short
    side; photos are ~4:3. Recorded in the model's config as the Colorizer's default render size.
    """
    return max(32, round(args.resolution / 0.8 * 4 / 3 / 32) * 32)


def build_models(args: argparse.Namespace) -> tuple[UNetGenerator, PatchDiscriminator]:
    """New models, or a published checkpoint (folder or Hub repo) to fine-tune with --init-from."""
    if not args.init_from:
        if args.generator == "pix2pix-unet":
            generator = Pix2PixUNet(render_size=whole_photo_render_size(args))
        else:
            generator = new_generator_with_encoder_weights(args)
        return generator, PatchDiscriminator(args.disc_channels, args.disc_layers, norm=args.disc_norm)
    from colorgan.hub import load_discriminator

    with hub_errors_as_checkpoint_errors(args.init_from):
        generator = UNetGenerator.from_pretrained(args.init_from, max_parameters=args.max_parameters).train()
    try:
        discriminator = load_discriminator(args.init_from, max_parameters=args.max_parameters).train()
    except CheckpointError as error:  # a generator-only checkpoint: the GAN phase starts a fresh D
        print(f"note: {error}; starting a new discriminator")
        discriminator = PatchDiscriminator(args.disc_channels, args.disc_layers, norm=args.disc_norm)
    return generator, discriminator


def new_generator_with_encoder_weights(args: argparse.Namespace) -> UNetGenerator:
    """A new U-Net whose encoder starts random, from --encoder-weights, or from timm's ImageNet weights."""
    rgb_weights = read_encoder_file(args.encoder_weights) if args.encoder_weights else None
    pad_type = args.encoder_pad_type
    if pad_type is None:  # the file knows how its encoder was trained
        pad_type = (rgb_weights.pad_type if rgb_weights else None) or ""
    if args.encoder_pretrained:
        rgb_weights = timm_pretrained_encoder(args.encoder, **({"pad_type": pad_type} if pad_type else {}))
    generator = UNetGenerator(args.encoder, False, args.decoder_channels, render_size=whole_photo_render_size(args),
                              encoder_pad_type=pad_type, decoder_hints=args.decoder_hints,
                              hint_spread=args.hint_spread)
    if rgb_weights is not None:
        load_rgb_encoder_weights(generator.encoder, rgb_weights)
    return generator


def training_progress(args: argparse.Namespace, step: int, elapsed_seconds: float) -> float:
    """How far the run is, 0 -> 1: by steps, or by time when --max-minutes ends it sooner."""
    progress = step / args.max_steps
    if args.max_minutes:
        progress = max(progress, elapsed_seconds / (60 * args.max_minutes))
    return min(progress, 1.0)


def scheduled_learning_rate(args: argparse.Namespace, progress: float) -> float:
    if args.lr_schedule == "constant":
        return args.learning_rate
    floor = 0.01  # a cosine to zero would waste the last steps
    return args.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None


def save_checkpoint(accelerator: Accelerator, output_dir: Path, state: dict, keep: int) -> None:
    """accelerate's full state + our counters, written to a temp folder then renamed (atomic)."""
    final = output_dir / f"checkpoint-{state['step']}"
    partial = output_dir / f".partial-checkpoint-{state['step']}"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (partial / STATE_FILE).write_text(json.dumps(state, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        for old in sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


@torch.no_grad()
def validate(generator: torch.nn.Module, val_pixels: torch.Tensor, output_dir: Path, step: int) -> dict:
    """PSNR, SSIM and colourfulness on the validation squares, and a gray | colorized | truth grid."""
    from torchvision.utils import make_grid, save_image

    generator.eval()
    truth = val_pixels.float() / 255
    l_norm, ab_norm = rgb_to_model_space(truth)
    colorized = torch.cat([model_space_to_rgb(l, generator(generator_input(l)).float()) for l in l_norm.split(8)])
    gray = model_space_to_rgb(l_norm, torch.zeros_like(ab_norm))
    generator.train()
    metrics = {
        "val/psnr": psnr(colorized, truth).mean().item(),
        "val/ssim": ssim(colorized, truth).mean().item(),
        "val/colorfulness": colorfulness(colorized).mean().item(),
        "val/colorfulness_truth": colorfulness(truth).mean().item(),
    }
    rows = [image for triple in zip(gray[:8], colorized[:8], truth[:8]) for image in triple]
    grid = make_grid(torch.stack(rows), nrow=3, padding=2, pad_value=1.0)
    (output_dir / "samples").mkdir(parents=True, exist_ok=True)
    save_image(grid, output_dir / "samples" / f"step-{step:07d}.png")
    metrics["grid"] = grid
    return metrics


def prepare_models(accelerator: Accelerator, args: argparse.Namespace):
    """G, D and their Adam optimizers, placed and wrapped by accelerate (SyncBN on multi-GPU)."""
    generator, discriminator = build_models(args)
    if accelerator.distributed_type == DistributedType.MULTI_GPU:
        generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
    if args.channels_last:
        generator, discriminator = (m.to(memory_format=torch.channels_last) for m in (generator, discriminator))
    if args.compile:
        generator, discriminator = torch.compile(generator), torch.compile(discriminator)
    betas = (args.adam_beta1, args.adam_beta2)
    optimizer_g = torch.optim.Adam(generator_parameter_groups(generator), lr=args.learning_rate, betas=betas)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=args.learning_rate, betas=betas)
    return accelerator.prepare(generator, discriminator, optimizer_g, optimizer_d)


def generator_parameter_groups(generator: torch.nn.Module) -> list[dict]:
    """G's parameters in named groups, the encoder's apart, so it can get its own learning rate."""
    module = getattr(generator, "_orig_mod", generator)  # under torch.compile
    encoder = getattr(module, "encoder", None)
    if encoder is None:  # the pix2pix peer has no pretrained part
        return [{"params": list(generator.parameters()), "name": "generator"}]
    encoder_ids = {id(p) for p in encoder.parameters()}
    return [
        {"params": list(encoder.parameters()), "name": "encoder"},
        {"params": [p for p in module.parameters() if id(p) not in encoder_ids], "name": "decoder"},
    ]


def group_learning_rate(args: argparse.Namespace, group_name: str, learning_rate: float, step: int) -> float:
    """The encoder's share of the learning rate: 0 while frozen, then --encoder-lr-scale of it.

    Read from the arguments at every step (not stored in the optimizer), so a resumed run can change it.
    """
    if group_name != "encoder":
        return learning_rate
    return 0.0 if step < args.encoder_frozen_steps else learning_rate * args.encoder_lr_scale


def training_step(accelerator: Accelerator, args: argparse.Namespace, phase: str, pixels: torch.Tensor,
                  generator: torch.nn.Module, discriminator: torch.nn.Module,
                  optimizer_g: torch.optim.Optimizer, optimizer_d: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """One micro-step: random crops, Lab and hints on the device, then D's step and G's step (GAN phase)."""
    rgb = random_resized_crop(pixels, args.resolution)  # (B, 3, S, S) uint8 -> (B, 3, R, R) float in [0, 1]
    l_norm, real_ab = rgb_to_model_space(rgb)  # (B, 1, R, R), (B, 2, R, R), fp32 even under autocast
    hint_ab, hint_mask = sample_training_hints(real_ab, args.hint_prob)
    inputs = generator_input(l_norm, hint_ab, hint_mask)  # (B, 4, R, R)
    if args.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with accelerator.accumulate(generator, discriminator):
        fake_ab = generator(inputs).float()
        losses = {"l1": chroma_weighted_l1(fake_ab, real_ab, args.l1_chroma_weight)}
        if phase == "gan":
            # D: real (L, ab) pairs against generated ones
            losses["d"] = discriminator_loss(
                discriminator(l_norm, real_ab), discriminator(l_norm, fake_ab.detach()), args.gan_loss
            )
            accelerator.backward(losses["d"])
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(discriminator.parameters(), args.max_grad_norm)
            optimizer_d.step()
            optimizer_d.zero_grad(set_to_none=True)
            # G's adversarial term through a frozen D outside DDP, so D's gradients stay D's own
            frozen_discriminator = accelerator.unwrap_model(discriminator).requires_grad_(False)
            losses["g_adv"] = generator_adversarial_loss(frozen_discriminator(l_norm, fake_ab), args.gan_loss)
            frozen_discriminator.requires_grad_(True)
        loss_g = losses.get("g_adv", 0.0) + args.lambda_l1 * losses["l1"]
        accelerator.backward(loss_g)
        if accelerator.sync_gradients and args.max_grad_norm > 0:
            accelerator.clip_grad_norm_(generator.parameters(), args.max_grad_norm)
        optimizer_g.step()
        optimizer_g.zero_grad(set_to_none=True)
    return losses


def main(args: argparse.Namespace) -> None:
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # accelerate gives each process its own shards of the stream (not split_dataset_by_node too);
        # the stateful loader saves the stream position for an exact resume.
        dataloader_config=DataLoaderConfiguration(dispatch_batches=False, use_stateful_dataloader=True),
    )
    set_seed(args.seed)  # same initial weights on every process
    torch.set_flush_denormal(True)  # on CPU, denormal activations late in training slow convs down ~30x
    output_dir.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process and args.report_to != "none":
        accelerator.init_trackers("colorgan", config={k: str(v) for k, v in vars(args).items()})

    # ---- data: shards per process, decoding in workers
    stream = open_stream(args.dataset, args.split, args.image_column)
    if args.val_split:
        val_stream = open_stream(args.val_dataset or args.dataset, args.val_split, args.image_column)
    else:  # hold out the first --val-count examples of the (unshuffled) stream
        val_stream, stream = stream.take(args.val_count), stream.skip(args.val_count)
    val_pixels, _ = load_validation_images(val_stream, args.resolution, args.val_count)
    train_data = training_stream(stream, args.loader_size, args.seed, args.shuffle_buffer)
    # The loader draws worker seeds at every iter(); its own generator keeps those draws off the
    # global RNG that crops, hints and dropout use, so a resumed run repeats them exactly.
    loader = DataLoader(train_data, batch_size=args.batch_size, collate_fn=collate, num_workers=args.num_workers,
                        generator=torch.Generator().manual_seed(args.seed))

    # ---- models and optimizers
    generator, discriminator, optimizer_g, optimizer_d = prepare_models(accelerator, args)
    loader = accelerator.prepare(loader)
    # EMA of G's weights and BN statistics: the copy that validates and gets exported.
    ema = AveragedModel(accelerator.unwrap_model(generator), multi_avg_fn=ema_with_warmup(args.ema_decay), use_buffers=True)
    accelerator.register_for_checkpointing(ema)

    # ---- resume
    state = {"step": 0, "epoch": 0, "images_seen": 0, "skipped": {}, "wall_time": 0.0}  # skipped: all processes
    if args.resume:
        checkpoint = latest_checkpoint(output_dir) if args.resume == "latest" else Path(args.resume)
        if checkpoint is None:
            raise SystemExit(f"--resume latest: no checkpoint in {output_dir}")
        state = json.loads((checkpoint / STATE_FILE).read_text())
        loader.set_epoch(state["epoch"])
        accelerator.load_state(str(checkpoint))
        accelerator.print(f"resumed from {checkpoint} at step {state['step']}")
    skipped_before = Counter(state["skipped"])  # totals over all processes up to the checkpoint
    skipped = Counter()  # this process, since (re)start

    # ---- loop
    progress = tqdm(total=args.max_steps, initial=state["step"], disable=not accelerator.is_local_main_process)
    started, window_start, window_images = time.time() - state["wall_time"], time.time(), 0
    finished = run_is_over(accelerator, args, state["step"], time.time() - started)
    while not finished:
        loader.set_epoch(state["epoch"])
        for batch in loader:
            skipped.update(batch["skipped"])
            if args.record_seen_images:
                record_seen_images(output_dir, accelerator.process_index, state["step"], batch["pixels"])
            # every process must step together: skip the batch everywhere if one process got no usable image
            usable = torch.tensor([batch["pixels"].shape[0]], device=accelerator.device)
            if accelerator.gather(usable).min() == 0:
                continue
            phase = "pretrain" if state["step"] < args.pretrain_steps else "gan"
            learning_rate = scheduled_learning_rate(args, training_progress(args, state["step"], time.time() - started))
            for optimizer in (optimizer_g, optimizer_d):
                for group in optimizer.param_groups:
                    group["lr"] = group_learning_rate(args, group.get("name", ""), learning_rate, state["step"])
            losses = training_step(accelerator, args, phase, batch["pixels"], generator, discriminator,
                                   optimizer_g, optimizer_d)
            window_images += batch["pixels"].shape[0] * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue

            # ---- one optimizer step done
            ema.update_parameters(accelerator.unwrap_model(generator))
            state["step"] += 1
            state["images_seen"] += window_images
            images_per_second = window_images / max(time.time() - window_start, 1e-9)
            window_start, window_images = time.time(), 0
            logs = {f"loss/{name}": value.item() for name, value in losses.items()}
            progress.update(1)
            progress.set_postfix(phase=phase, **{k.split("/")[1]: f"{v:.3f}" for k, v in logs.items()},
                                 img_s=f"{images_per_second:.1f}")
            accelerator.log({**logs, "images_per_second": images_per_second}, step=state["step"])

            finished = run_is_over(accelerator, args, state["step"], time.time() - started)
            if state["step"] % args.val_every == 0 or finished:
                if accelerator.is_main_process:
                    metrics = validate(ema.module, val_pixels.to(accelerator.device), output_dir, state["step"])
                    grid = metrics.pop("grid")
                    accelerator.log(metrics, step=state["step"])
                    if args.report_to == "tensorboard":
                        accelerator.get_tracker("tensorboard").writer.add_image("samples", grid, state["step"])
                    progress.write(f"step {state['step']}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
                    state["val_metrics"] = metrics
                accelerator.wait_for_everyone()
            if state["step"] % args.checkpoint_every == 0 or finished:
                state["skipped"] = total_skips(accelerator, skipped_before, skipped)
                state["wall_time"] = time.time() - started
                save_checkpoint(accelerator, output_dir, state, args.keep_checkpoints)
            if finished:
                break
        else:
            state["epoch"] += 1  # the stream ran out: next pass, reshuffled
    progress.close()
    state["skipped"] = total_skips(accelerator, skipped_before, skipped)
    if args.record_seen_images:  # lets a test check that all processes end with the same weights
        # parameters only: BN running statistics are per process (DDP broadcasts rank 0's at each forward)
        weights = accelerator.unwrap_model(generator).parameters()
        checksum = sum(float(t.detach().double().abs().sum()) for t in weights)
        (output_dir / "seen" / f"process-{accelerator.process_index}.weights").write_text(repr(checksum))
    finish(accelerator, args, ema, discriminator, state, started)


def run_is_over(accelerator: Accelerator, args: argparse.Namespace, step: int, elapsed_seconds: float) -> bool:
    """--max-steps done or --max-minutes spent? Every process gets the same answer (clocks differ)."""
    if step >= args.max_steps:
        return True
    if not args.max_minutes:
        return False
    spent = torch.tensor([float(elapsed_seconds >= 60 * args.max_minutes)], device=accelerator.device)
    return bool(accelerator.reduce(spent, reduction="max").item())


def record_seen_images(output_dir: Path, process_index: int, step: int, pixels: torch.Tensor) -> None:
    """Append `step crc crc ...` for a micro-batch: shows which process saw which image, in order."""
    folder = output_dir / "seen"
    folder.mkdir(exist_ok=True)
    crcs = " ".join(f"{zlib.crc32(image.cpu().numpy().tobytes()):08x}" for image in pixels)
    with open(folder / f"process-{process_index}.txt", "a") as handle:
        handle.write(f"{step} {crcs}\n")


def total_skips(accelerator: Accelerator, before: Counter, local: Counter) -> dict:
    """Skipped images by reason, summed over processes (a collective: call it on every process)."""
    counts = torch.tensor([local[reason] for reason in SKIP_REASONS], device=accelerator.device)
    counts = accelerator.reduce(counts, reduction="sum").tolist()
    return {reason: before[reason] + count for reason, count in zip(SKIP_REASONS, counts)}


def describe_hardware(accelerator: Accelerator) -> str:
    """e.g. '2 x NVIDIA H100 80GB HBM3' or 'CPU: Intel(R) Xeon(R) Processor, 2 cores, 1 torch thread'."""
    if accelerator.device.type == "cuda":
        return f"{accelerator.num_processes} x {torch.cuda.get_device_name()}"
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    name = names[0] if names else platform.processor() or platform.machine()
    return f"CPU: {name}, {os.cpu_count()} cores, {accelerator.num_processes} process(es) x {torch.get_num_threads()} torch thread(s)"


def finish(accelerator: Accelerator, args: argparse.Namespace, ema: AveragedModel,
           discriminator: torch.nn.Module, state: dict, started: float) -> None:
    """Export the EMA generator (and D, for fine-tuning) with the run's facts; push if asked."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        output_dir = Path(args.output_dir)
        ema.module.save_pretrained(output_dir)
        accelerator.unwrap_model(discriminator).save_pretrained(output_dir / DISCRIMINATOR_FOLDER)
        facts = {
            "args": vars(args),
            "steps": state["step"],
            "pretrain_steps": min(args.pretrain_steps, state["step"]),
            "gan_steps": max(0, state["step"] - args.pretrain_steps),
            "images_seen": state["images_seen"],
            "skipped": state["skipped"],
            "wall_time_seconds": round(time.time() - started, 1),
            "num_processes": accelerator.num_processes,
            "hardware": describe_hardware(accelerator),
            "val_metrics": state.get("val_metrics", {}),
        }
        (output_dir / FACTS_NAME).write_text(json.dumps(facts, indent=2, default=str))
        skipped = facts["skipped"]
        accelerator.print(f"saved {output_dir}; skipped images: " + ", ".join(f"{k} {v}" for k, v in skipped.items()))
        if args.push_to_hub:
            from colorgan.hub import push_to_hub

            accelerator.print(push_to_hub(output_dir, args.push_to_hub))
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
