"""Publishing a model folder to the Hugging Face Hub, loading its discriminator, exporting its ONNX files.

A model folder, as `train_accelerate.py` writes it and `push_to_hub` uploads it:

    model.safetensors                    the (EMA) generator, from `UNetGenerator.save_pretrained`
    config.json                          its constructor arguments
    README.md                            the model card (rendered by `hub_card` unless it is your own)
    training_facts.json                  what the card says about the run (schema: `hub_card.CardFacts`)
    sample_grid.png                      before/after grid (any name, given by `CardFacts.sample_grid`)
    discriminator/model.safetensors      the PatchGAN, for fine-tuning
    discriminator/config.json
    model.onnx, model_int8.onnx          the generator for ONNX Runtime (`colorgan push --onnx [--quantize]`)

Nothing else is uploaded: optimizer states, checkpoints, logs and pickle weights stay local.

"""
from __future__ import annotations

import glob
import os
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download

from hub_card.card import CARD_NAME, CardFacts, is_generated_card, sample_grid_name, write_model_card

from .checkpoint import (
    CONFIG_NAME,
    DISCRIMINATOR_FOLDER,
    FACTS_NAME,
    ONNX_INT8_NAME,
    ONNX_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    hub_errors_as_checkpoint_errors,
    resolve_weights_file,
)
from .imaging import ImageError, list_images
from .limits import DEFAULT_MAX_PARAMETERS
from .models import PatchDiscriminator
from .onnx_export import CALIBRATION_IMAGES, calibration_inputs, export_int8, export_onnx
from .pipeline import Colorizer


def _validate_model_folder(model_dir: Path) -> list[str]:
    """Check that `model_dir` is a loadable colorgan model; return the files to upload besides the card.

    Raises:
        CheckpointError: no folder, no safetensors weights (pickle ones are refused), no config.json,
            or weights that do not match their config.
    """
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: no such model folder")
    resolve_weights_file(str(model_dir))  # refuses pickle-only folders without reading them
    if not (model_dir / CONFIG_NAME).is_file():
        raise CheckpointError(f"{model_dir} has no {CONFIG_NAME}")
    Colorizer.from_pretrained(model_dir, device="cpu")  # loads strictly: what is pushed is loadable
    uploads = [WEIGHTS_NAME, CONFIG_NAME]
    discriminator_dir = model_dir / DISCRIMINATOR_FOLDER
    if discriminator_dir.is_dir():
        load_discriminator(model_dir)
        uploads += [f"{DISCRIMINATOR_FOLDER}/{WEIGHTS_NAME}", f"{DISCRIMINATOR_FOLDER}/{CONFIG_NAME}"]
    if (model_dir / FACTS_NAME).is_file():
        uploads.append(FACTS_NAME)
    sample_grid = sample_grid_name(model_dir, CardFacts.load(model_dir))
    if sample_grid:
        uploads.append(sample_grid)
    return uploads


def push_to_hub(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload colorgan model",
    revision: str | None = None,
    onnx: bool = False,
    quantize: bool = False,
    calibration: str | os.PathLike | None = None,
    calibration_count: int | None = None,
):
    """Upload a model folder to a Hub model repo (created if needed); pushing again updates it.

    Uploads `model.safetensors`, `config.json`, `README.md`, `training_facts.json`, the sample grid
    and `discriminator/` when present, and nothing else; with `onnx`, also `model.onnx` (and with
    `quantize`, `model_int8.onnx`), exported from the weights into the folder first. The README.md is (re-)rendered from
    `training_facts.json` unless the folder holds a card of your own (one without the generated-card
    marker that is not huggingface_hub's placeholder). Files already on the Hub are never deleted.

    Args:
        model_dir: the model folder (see the module doc for its layout).
        repo_id: "user/name" or "org/name".
        private: create the repo private (an existing repo keeps its visibility).
        token: Hub token with write access; by default the logged-in one or HF_TOKEN.
        commit_message: the commit's summary.
        revision: branch to push to, created from main if missing; by default main.
        onnx: export the generator to `model.onnx` (fp32) and upload it, for `backend="onnx"`.
        quantize: with `onnx`, also export static int8 `model_int8.onnx`, calibrated on `calibration`.
        calibration: folder of photos to calibrate int8 on.
        calibration_count: how many of its photos (sorted by name) to use; by default CALIBRATION_IMAGES.

    Returns:
        The `huggingface_hub.CommitInfo` of the commit: a str (the commit URL) with `.oid`.

    Raises:
        CheckpointError: the folder is not a loadable, safetensors-only colorgan model.
        huggingface_hub.errors.HfHubHTTPError: the Hub refused (bad token, no write access...).
    """
    model_dir = Path(model_dir).resolve()
    uploads = _validate_model_folder(model_dir)
    if quantize and not onnx:
        raise ValueError("quantize needs onnx: the int8 graph is uploaded beside the fp32 one")
    if onnx:
        if quantize:  # the int8 graph is quantized from the fp32 export, kept as model.onnx
            export_model_files(
                str(model_dir), model_dir / ONNX_INT8_NAME, quantize=True, calibration=calibration,
                calibration_count=calibration_count, fp32_destination=model_dir / ONNX_NAME,
            )
            uploads.append(ONNX_INT8_NAME)
        else:
            export_model_files(str(model_dir), model_dir / ONNX_NAME)
        uploads.append(ONNX_NAME)
    readme = model_dir / CARD_NAME
    if not readme.is_file() or is_generated_card(readme.read_text(encoding="utf-8")):
        write_model_card(model_dir, repo_id)
    uploads.append(CARD_NAME)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=model_dir,
        allow_patterns=[glob.escape(name) for name in uploads],
        commit_message=commit_message,
        revision=revision,
    )


def load_discriminator(
    path_or_repo_id: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    max_parameters: int = DEFAULT_MAX_PARAMETERS,
) -> PatchDiscriminator:
    """The PatchGAN stored in `discriminator/` of a model folder or Hub repo, to fine-tune a model.

    Args:
        path_or_repo_id: a model folder or a Hub repo id, as pushed by `push_to_hub`.
        revision: branch, tag or commit of a Hub repo.
        token: Hub token for private repos.
        cache_dir: HF cache folder.
        local_files_only: never touch the network (also implied by HF_HUB_OFFLINE=1).
        max_parameters: refuse a discriminator with more parameters than this (checked, like the
            config and the weights' header, before anything is allocated).

    Raises:
        CheckpointError: with a one-line reason when there is no loadable discriminator.
    """
    source = str(path_or_repo_id)
    root = source
    if not os.path.isdir(source):
        with hub_errors_as_checkpoint_errors(source):
            root = snapshot_download(
                source,
                allow_patterns=[f"{DISCRIMINATOR_FOLDER}/*"],
                revision=revision,
                token=token,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
            )
    folder = os.path.join(root, DISCRIMINATOR_FOLDER)
    if not os.path.isdir(folder):
        raise CheckpointError(f"{source} has no {DISCRIMINATOR_FOLDER}/ folder")
    if not os.path.isfile(os.path.join(folder, CONFIG_NAME)):
        raise CheckpointError(f"{source} has no {DISCRIMINATOR_FOLDER}/{CONFIG_NAME}")
    return PatchDiscriminator.from_pretrained(folder, max_parameters=max_parameters)  # checked before it is built


def export_model_files(
    source: str,
    destination: str | os.PathLike,
    *,
    quantize: bool = False,
    calibration: str | os.PathLike | None = None,
    calibration_count: int | None = None,
    fp32_destination: str | os.PathLike | None = None,
) -> Path:
    """Export a model folder or Hub repo's generator to `destination` (fp32, or int8 with `quantize`).

    Args:
        source: model folder or Hub repo id.
        destination: the `.onnx` file to write.
        quantize: write static int8, calibrated on photos of `calibration`.
        calibration: folder of photos (needed with `quantize`).
        calibration_count: how many of its photos (sorted by name) to use; by default CALIBRATION_IMAGES.
        fp32_destination: with `quantize`, also write the fp32 graph here (one model load for both).

    Raises:
        CheckpointError: the model cannot be loaded; ValueError: no calibration photos.
    """
    photos = []
    if quantize:  # checked before the model is loaded or anything is written
        if not calibration:
            raise ValueError("--quantize needs calibration photos: no --calibration folder given")
        try:
            photos = list_images(calibration)[: calibration_count or CALIBRATION_IMAGES]
        except ImageError as error:
            raise ValueError(f"--quantize needs calibration photos: {error}") from None
    colorizer = Colorizer.from_pretrained(source, device="cpu")
    if not quantize:
        return export_onnx(colorizer.generator, destination)
    if fp32_destination is not None:
        export_onnx(colorizer.generator, fp32_destination)
    return export_int8(colorizer.generator, destination, calibration_inputs(colorizer, photos))
