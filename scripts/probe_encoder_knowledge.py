"""How much ImageNet knowledge a trained generator's MobileNetV2 encoder keeps.

    python scripts/probe_encoder_knowledge.py runs/a runs/b --encoder runs/encoders/mnv2.safetensors \
        --photos ../shared/photos/val --calibration-photos ../shared/photos/train

The imported ImageNet classifier head (timm's conv_head, bn2 and classifier, converted from the TFLite
file by scripts/import_tflite_encoder.py) is put on top of each generator's encoder. Each one then
classifies the gray photos as the generator sees them (L in [-1, 1], no hints). The figure is the top-1
agreement with the encoder the training started from (as `--encoder-weights` loads it into
a generator), plus the correlation of the logits. 100 % means the encoder's last
features still mean what they meant on ImageNet. Near 0 means training rewrote them.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import timm
import torch

from colorgan import UNetGenerator
from colorgan.encoders import load_rgb_encoder_weights, read_encoder_file
from colorgan.hints import generator_input

HERE = Path(__file__).resolve().parent
TFLITE = HERE.parent / "third_party" / "mobilenet_v2" / "mobilenet_v2_1.0_224_quant.tflite"
HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")
SIDE = 224  # the classifier's training resolution
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def _import_script():
    spec = importlib.util.spec_from_file_location("import_tflite_encoder", HERE / "import_tflite_encoder.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def gray_model_input(importer, paths: list[Path]) -> torch.Tensor:
    """Centre 224 px squares of the photos as the generator sees them: (N, 4, 224, 224), L and no hints."""
    l_norm = importer.gray_batch(paths, SIDE)[:, :1]  # the importer's calibration input, (N, 1, 224, 224)
    return generator_input(l_norm)


def classifier_on(encoder_state: dict[str, torch.Tensor], head: dict[str, torch.Tensor]) -> torch.nn.Module:
    """timm mobilenetv2_100 (`same` padding) with this encoder and the ImageNet head, in eval mode."""
    in_channels = encoder_state["conv_stem.weight"].shape[1]
    model = timm.create_model("mobilenetv2_100", pretrained=False, pad_type="same", in_chans=in_channels)
    model.load_state_dict({**head, **encoder_state}, strict=True)
    return model.eval()


def starting_encoder(encoder_file: Path) -> dict[str, torch.Tensor]:
    """The encoder as `--encoder-weights` loads it into a generator: the RGB stem turned into an L + hints one."""
    generator = UNetGenerator("mobilenetv2_100", encoder_pad_type="same")
    load_rgb_encoder_weights(generator.encoder, read_encoder_file(encoder_file))
    return generator.encoder.state_dict()


def generator_encoder(model_dir: Path) -> dict[str, torch.Tensor]:
    """The encoder of a saved colorgan generator (loaded strictly and checked, as the Colorizer loads it)."""
    encoder = UNetGenerator.from_pretrained(str(model_dir)).encoder.state_dict()
    if "conv_stem.weight" not in encoder:
        raise ValueError(f"{model_dir} has no MobileNetV2 encoder (no conv_stem)")
    return encoder


def compare(reference: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """Top-1 agreement (%) and logit correlation against the reference logits, and mean top-1 confidence."""
    return {
        "agreement": 100 * (logits.argmax(1) == reference.argmax(1)).float().mean().item(),
        "correlation": float(np.corrcoef(logits.flatten().numpy(), reference.flatten().numpy())[0, 1]),
        "confidence": logits.softmax(1).max(1).values.mean().item(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="generator folders (model.safetensors) over mobilenetv2_100")
    parser.add_argument("--encoder", type=Path, required=True, help="the imported encoder they started from (safetensors)")
    parser.add_argument("--photos", type=Path, required=True, help="folder of photos to classify (gray)")
    parser.add_argument("--calibration-photos", type=Path, required=True,
                        help="the photos that set the imported encoder's BatchNorm statistics (for the head)")
    parser.add_argument("--calibration-count", type=int, default=64, help="as given to import_tflite_encoder.py")
    args = parser.parse_args(argv)
    for path in (args.encoder, *[model / "model.safetensors" for model in args.models]):
        if not path.is_file():
            parser.error(f"{path}: no such file")
    if not args.photos.is_dir():
        parser.error(f"{args.photos}: not a folder")
    return args


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    importer = _import_script()
    calibration = importer.list_photos(args.calibration_photos, args.calibration_count)
    full = importer.convert(TFLITE, calibration, pad_type="same")
    head = {key: value for key, value in full.state_dict().items() if key.startswith(HEAD_PREFIXES)}
    photos = sorted(path for path in args.photos.iterdir() if path.suffix.lower() in PHOTO_SUFFIXES)
    inputs = gray_model_input(importer, photos)  # (N, 4, 224, 224)
    results = {}
    with torch.no_grad():
        start = classifier_on(starting_encoder(args.encoder), head)(inputs)
        results["start"] = compare(start, start)
        for model_dir in args.models:
            results[str(model_dir)] = compare(start, classifier_on(generator_encoder(model_dir), head)(inputs))
    for name, figures in results.items():
        print(f"{name}: top-1 agreement with the start {figures['agreement']:.0f} %, logit correlation "
              f"{figures['correlation']:.2f}, mean confidence {figures['confidence']:.2f}")
    return results


if __name__ == "__main__":
    main(parse_args())
