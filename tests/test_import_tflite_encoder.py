"""scripts/import_tflite_encoder.py on the shipped TFLite MobileNetV2, checked against the TFLite interpreter."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from colorgan import UNetGenerator
from colorgan.encoders import load_rgb_encoder_weights, read_encoder_file

REPO = Path(__file__).resolve().parents[1]
TFLITE = REPO / "third_party" / "mobilenet_v2" / "mobilenet_v2_1.0_224_quant.tflite"
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def importer():
    spec = importlib.util.spec_from_file_location("import_tflite_encoder", REPO / "scripts" / "import_tflite_encoder.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def converted(importer, tmp_path_factory):
    output = tmp_path_factory.mktemp("encoder") / "mobilenetv2_100.safetensors"
    importer.main(importer.parse_args([str(TFLITE), "--calibration-photos", str(EXAMPLES), "--output", str(output)]))
    return output


def test_converted_classifier_agrees_with_the_tflite_interpreter(importer, photos_dir):
    model = importer.convert(TFLITE, importer.list_photos(EXAMPLES, 8), "same")
    report = importer.verify(model, TFLITE, importer.list_photos(photos_dir / "val", 12))
    assert report["logit_correlation"] >= 0.99, report
    assert report["top1_agreement"] >= 0.8, report


def test_symmetric_padding_loads_the_same_tensors_but_agrees_less(importer, photos_dir):
    photos = importer.list_photos(photos_dir / "val", 12)
    same = importer.verify(importer.convert(TFLITE, photos[:4], "same"), TFLITE, photos)
    symmetric = importer.verify(importer.convert(TFLITE, photos[:4], ""), TFLITE, photos)
    assert symmetric["logit_correlation"] < same["logit_correlation"]


def test_every_layer_is_checked_before_anything_is_copied(importer):
    convs = importer.read_tflite_convs(TFLITE)
    narrower = timm.create_model("mobilenetv2_050", pretrained=False)
    with pytest.raises(ValueError, match="shape"):
        importer.load_into_timm(convs, narrower, "same")
    with pytest.raises(ValueError, match="convolutions"):
        importer.load_into_timm(convs[:-2], timm.create_model("mobilenetv2_100", pretrained=False), "same")


def test_saved_encoder_is_what_the_generator_starts_from(converted):
    weights = read_encoder_file(converted)
    assert weights.pad_type == "same" and list(weights.mean) == [0.5] * 3
    assert "classifier.weight" not in load_file(str(converted))  # the encoder only
    generator = UNetGenerator("mobilenetv2_100", encoder_pad_type="same")
    load_rgb_encoder_weights(generator.encoder, weights)  # strict: every tensor fits
    assert torch.isfinite(generator.encoder.conv_stem.weight).all()


def test_probe_of_encoder_knowledge_tells_a_kept_encoder_from_a_rewritten_one(converted, tmp_path):
    """scripts/probe_encoder_knowledge.py: the untouched start agrees 100 %, a rewritten last stage does not."""
    spec = importlib.util.spec_from_file_location("probe_encoder_knowledge", REPO / "scripts" / "probe_encoder_knowledge.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)

    torch.manual_seed(0)
    kept = UNetGenerator("mobilenetv2_100", encoder_pad_type="same")
    load_rgb_encoder_weights(kept.encoder, read_encoder_file(converted))
    kept.save_pretrained(tmp_path / "kept")
    rewritten = UNetGenerator("mobilenetv2_100", encoder_pad_type="same")
    rewritten.load_state_dict(kept.state_dict())
    with torch.no_grad():
        for name, value in rewritten.encoder.named_parameters():  # the deepest stage, as long training changes it
            if name.startswith("blocks.6.") and value.ndim == 4:
                value.add_(torch.randn_like(value) * value.std())
    rewritten.save_pretrained(tmp_path / "rewritten")

    results = probe.main(probe.parse_args([
        str(tmp_path / "kept"), str(tmp_path / "rewritten"), "--encoder", str(converted),
        "--photos", str(EXAMPLES), "--calibration-photos", str(EXAMPLES)]))
    assert results[str(tmp_path / "kept")]["agreement"] == 100
    assert results[str(tmp_path / "kept")]["correlation"] > 0.999
    assert results[str(tmp_path / "rewritten")]["correlation"] < 0.95, results
    with pytest.raises(SystemExit):
        probe.parse_args([str(tmp_path / "missing"), "--encoder", str(converted), "--photos", str(EXAMPLES),
                          "--calibration-photos", str(EXAMPLES)])
