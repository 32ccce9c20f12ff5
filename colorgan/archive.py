"""Colorizing a whole collection: a dataset in, parquet shards out; resumable, in one process or many.

The source (`open_source`) is a Hub dataset, local parquet files or a folder of images, read with
`datasets` as an IterableDataset of *source shards*: a parquet row group each (`load_table_stream`),
or `shard_size` files of a folder. Source shard s is cut into chunks of `shard_size` rows, and chunk
c is written whole to `DST/data/{split}-{s:05d}-{c:05d}.parquet`, under a temporary name renamed
onto that one when complete: a shard file that exists is finished. The last chunk of a source shard
says so in its metadata, so a restart knows which source shards are done, which one is half done
(its next chunk is redone) and which are not begun (`unfinished_shards`).

Which process colorizes which shard is decided once, at the start, from the files then present:
every process lists the same unfinished shards and takes its part (accelerate's
`split_between_processes`, in the command line). Processes share nothing else; each writes its own
files. `DST/job.json` records the settings that decide the output (`JobSettings`): a restart with
other settings is refused, since its rows would not match those already written.

Each output row holds the source's id, the colorized image (PNG bytes at the input's own size and
lightness, in the layout of a `datasets.Image` column), its width and height, and the settings used
(JSON); a row that could not be colorized has no image and a one-line `error` instead.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from .data import image_bytes, load_table_stream, parquet_files, with_raw_images
from .errors import one_line
from .hints import points_from_records
from .imaging import ImageError, atomic_path, image_files, open_image
from .pipeline import Colorizer

JOB_FILE = "job.json"
DATA_FOLDER = "data"
JOB_FORMAT = 1  # the layout of job.json and of the shards; a later layout refuses an older job
# A row group (what a reader, the Hub's viewer included, loads at once) closes at whichever comes
# first: both depend only on the rows, so a shard redone after a crash is the same file byte for byte.
ROW_GROUP_ROWS = 100
ROW_GROUP_BYTES = 128 << 20
SHARD_METADATA_KEY = b"colorgan"  # in each shard's parquet schema: {"shard": s, "chunk": c, "last": bool}
# Errors a row may end in without ending the job: unreadable or bad images and hints (ValueError,
# OSError), the model's own refusals, and torch's (RuntimeError, CUDA's out-of-memory included).
ROW_ERRORS = (ValueError, OSError, RuntimeError, MemoryError)


class JobError(ValueError):
    """A destination that does not fit the job (other settings, not a job's folder); one line."""


@dataclass(frozen=True)
class JobSettings:
    """Everything that decides a job's output rows; `DST/job.json` records it.

    Args:
        source: the Hub dataset id, parquet files or image folder read.
        split: the split read (and the prefix of the shard files).
        image_column: the column holding images (None: found by type, see `with_raw_images`).
        id_column: the column holding each row's id (None: `id` if there is one, see `Source.row_id`).
        hints_column: the column holding each row's hint points, or None.
        limit: colorize at most this many rows (the first ones), or None for all.
        shard_size: rows per output shard.
        model: the model folder or Hub repo id (None: the bundled starter model).
        backend: what runs the generator ("torch", "onnx", "onnx-int8").
        device: where the model runs ("cpu", "cuda"): a GPU's bfloat16 gives other colours than a cpu.
        render_size: the long side the model runs at (None: the model's own).
        saturation: the chroma multiplier.
        propagate: hints are spread over their regions.
    """

    source: str
    split: str = "train"
    image_column: str | None = None
    id_column: str | None = None
    hints_column: str | None = None
    limit: int | None = None
    shard_size: int = 100
    model: str | None = None
    backend: str = "torch"
    device: str = "cpu"
    render_size: int | None = None
    saturation: float = 1.0
    propagate: bool = True

    def __post_init__(self):
        # the split names files; datasets' split slicing ("train[:10]") does not stream anyway
        if not re.fullmatch(r"[\w.-]+", self.split):
            raise JobError(f"split {self.split!r} is not a split name (letters, digits, _ . -)")
        if self.shard_size < 1 or (self.limit is not None and self.limit < 1):
            raise JobError("shard_size and limit must be at least 1")

    def row_settings(self) -> str:
        """The `settings` cell of every row: how its image was made, as JSON."""
        keys = ("model", "backend", "device", "render_size", "saturation", "propagate")
        return json.dumps({key: getattr(self, key) for key in keys}, sort_keys=True)

    def differences(self, recorded: dict) -> list[str]:
        """`name recorded -> now` for each setting that differs from a recorded job's."""
        return [
            f"{field.name} {recorded.get(field.name)!r} -> {getattr(self, field.name)!r}"
            for field in fields(self)
            if recorded.get(field.name) != getattr(self, field.name)
        ]


# ----------------------------------------------------------------------------- the source
@dataclass
class Source:
    """A dataset opened for colorizing: raw rows in source shards, and which columns mean what.

    Args:
        stream: a `datasets.IterableDataset` whose image column is left undecoded.
        image_column: the column holding images (encoded bytes or paths).
        id_column: the column holding ids, or None (see `row_id`).
        hints_column: the column holding hint points, or None.
    """

    stream: object
    image_column: str = "image"
    id_column: str | None = "id"
    hints_column: str | None = None

    @property
    def num_shards(self) -> int:
        return self.stream.n_shards

    def shard_rows(self, shard: int) -> Iterator[dict]:
        """The rows of one source shard, in order: the same rows on every read."""
        return iter(self.stream.shard(num_shards=self.num_shards, index=shard, contiguous=True))

    def row_id(self, row: dict, shard: int, index: int) -> str:
        """A row's id: its id column's, else its image's file name, else its place (`shard/row`)."""
        if self.id_column is not None and row.get(self.id_column) is not None:
            return str(row[self.id_column])
        image = row.get(self.image_column)
        if isinstance(image, dict) and image.get("path"):
            return str(image["path"])
        return f"{shard:05d}/{index:06d}"


def _image_folder_rows(groups: list[list[tuple[str, str]]]) -> Iterator[dict]:
    for group in groups:  # one group is one source shard (datasets hands each shard its slice of `groups`)
        for row_id, path in group:
            yield {"id": row_id, "image": {"bytes": None, "path": path}}


def _first_rows(stream, count: int) -> Iterator[dict]:
    yield from itertools.islice(stream, count)


def open_source(
    source: str,
    *,
    split: str = "train",
    image_column: str | None = None,
    id_column: str | None = None,
    hints_column: str | None = None,
    shard_size: int = 100,
    limit: int | None = None,
    token: str | None = None,
) -> Source:
    """Open a Hub dataset, local parquet files or a folder of images for `colorize_shards`.

    A folder of images (at any depth; ids are the paths inside it) becomes one source shard per
    `shard_size` files; parquet and Hub datasets stream with one source shard per row group.

    Args:
        source: a Hub dataset id, a folder (of images, or of parquet files), a parquet file or glob.
        split: the split to read (tables only; a folder of images is one split).
        image_column: the column holding images (default: the first of type Image, else `image`).
        id_column: the column holding row ids (default: `id` if the dataset has it).
        hints_column: a column of hint points per row (see `colorgan.hints.points_from_records`).
        shard_size: files per source shard, for a folder of images.
        limit: only the first `limit` rows (a table's become one source shard).
        token: Hub token, for private datasets.

    Raises:
        ValueError: an empty folder, or a column that is not there; FileNotFoundError: no such dataset.
    """
    import datasets

    folder = Path(source)
    if folder.is_dir() and not parquet_files(source):
        if hints_column or id_column or image_column:
            raise ValueError(f"{source} is a folder of images: it has no columns to name")
        files = image_files(folder, recursive=True)[:limit]
        if not files:
            raise ValueError(f"{source}: no images in this folder")
        rows = [(path.relative_to(folder).as_posix(), str(path)) for path in files]
        groups = [rows[start : start + shard_size] for start in range(0, len(rows), shard_size)]
        features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(decode=False)})
        stream = datasets.IterableDataset.from_generator(
            _image_folder_rows, gen_kwargs={"groups": groups}, features=features
        )
        return Source(stream)
    stream, image_column = with_raw_images(load_table_stream(source, split, token=token), source, image_column)
    columns = list(stream.features or {})
    for role, column in (("id", id_column), ("hints", hints_column)):
        if column is not None and columns and column not in columns:
            raise ValueError(f"{source} has no {role} column {column!r} (columns: {', '.join(columns)})")
    if id_column is None and "id" in columns:
        id_column = "id"
    stream = stream.select_columns([name for name in dict.fromkeys([image_column, id_column, hints_column]) if name])
    if limit is not None:  # the first rows in source order; datasets' take() would spread them over shards
        stream = datasets.IterableDataset.from_generator(
            _first_rows, gen_kwargs={"stream": stream, "count": limit}, features=stream.features
        )
    return Source(stream, image_column, id_column, hints_column)


# ----------------------------------------------------------------------------- the destination
def shard_path(destination: str | os.PathLike, split: str, shard: int, chunk: int) -> Path:
    """Where chunk `chunk` of source shard `shard` is written."""
    return Path(destination) / DATA_FOLDER / f"{split}-{shard:05d}-{chunk:05d}.parquet"


def start_job(destination: str | os.PathLike, settings: JobSettings) -> bool:
    """Check a destination against the job, then record the job there; run it in one process, first.

    Also removes the partial files a killed run left (every process's: none of them runs yet).

    Args:
        destination: the output folder (made if missing).
        settings: the job's settings.

    Returns:
        Whether the job was already started there (a restart).

    Raises:
        JobError: the folder holds a job with other settings, or shards without a job file; one line.
    """
    destination = Path(destination)
    restarted = check_job(destination, settings)
    if not restarted:
        with atomic_path(destination / JOB_FILE) as temporary:
            temporary.write_text(json.dumps({"format": JOB_FORMAT, "settings": asdict(settings)}, indent=2) + "\n")
    for partial in (destination / DATA_FOLDER).glob(".*.partial.parquet"):
        partial.unlink(missing_ok=True)
    return restarted


def check_job(destination: str | os.PathLike, settings: JobSettings) -> bool:
    """Whether `destination` holds this job already; nothing is written.

    Raises:
        JobError: it holds a job with other settings, or shards without a job file; one line.
    """
    destination = Path(destination)
    job_file = destination / JOB_FILE
    if not job_file.is_file():
        if any((destination / DATA_FOLDER).glob("*.parquet")):
            raise JobError(f"{destination} holds shards but no {JOB_FILE}: not a colorize-dataset folder")
        return False
    try:
        recorded = json.loads(job_file.read_text(encoding="utf-8"))
        if recorded.get("format") != JOB_FORMAT:
            raise ValueError(f"format {recorded.get('format')!r}, not {JOB_FORMAT}")
        changed = settings.differences(recorded["settings"])
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as error:
        raise JobError(f"{job_file} is not a colorize-dataset job file ({one_line(error)})") from None
    if changed:
        raise JobError(
            f"{destination} holds a job with other settings ({'; '.join(changed)}):"
            " rerun with its settings, or write to another folder"
        )
    return True


def shard_info(path: Path) -> dict:
    """What a written shard's metadata says: {"shard": s, "chunk": c, "last": bool}."""
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata.get(SHARD_METADATA_KEY, b"{}"))


def unfinished_shards(destination: str | os.PathLike, split: str, num_shards: int) -> list[tuple[int, int]]:
    """The source shards not finished in `destination`, each with the first chunk still to write.

    Every process calls it before any writes, so all see the same list.

    Returns:
        `(shard, first_chunk)` pairs in shard order.
    """
    written: dict[int, set[int]] = {}
    pattern = re.compile(rf"{re.escape(split)}-(\d+)-(\d+)\.parquet")
    data = Path(destination) / DATA_FOLDER
    for name in os.listdir(data) if data.is_dir() else ():
        if match := pattern.fullmatch(name):
            written.setdefault(int(match[1]), set()).add(int(match[2]))
    todo = []
    for shard in range(num_shards):
        chunks = written.get(shard, set())
        done = 0
        while done in chunks:
            done += 1
        if done and shard_info(shard_path(destination, split, shard, done - 1)).get("last"):
            continue
        todo.append((shard, done))
    return todo


def count_rows(destination: str | os.PathLike, known: dict[str, int] | None = None) -> dict[str, int]:
    """Rows in each shard file of a destination, by file name: its parquet footer's count.

    Args:
        destination: the job's folder.
        known: counts read before; those files are not read again (a shard never changes once written).
    """
    data, known = Path(destination) / DATA_FOLDER, known or {}
    if not data.is_dir():
        return {}
    names = sorted(name for name in os.listdir(data) if name.endswith(".parquet") and not name.startswith("."))
    return {name: known[name] if name in known else pq.read_metadata(data / name).num_rows for name in names}


# ----------------------------------------------------------------------------- colorizing
@dataclass
class JobReport:
    """What one process did: rows written (errors included), error rows, and its seconds of work."""

    rows: int = 0
    errors: int = 0
    seconds: float = 0.0
    shards: int = 0

    @property
    def images_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def output_schema(settings: JobSettings, shard: int, chunk: int, last: bool) -> pa.Schema:
    """The shards' columns, with datasets' features (the image column is an Image) and the shard's place."""
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "error": datasets.Value("string"),
            "settings": datasets.Value("string"),
        }
    )
    schema = features.arrow_schema
    place = json.dumps({"shard": shard, "chunk": chunk, "last": last}).encode()
    return schema.with_metadata({**(schema.metadata or {}), SHARD_METADATA_KEY: place})


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def output_row(
    row_id: str, settings: str, image: Image.Image | None = None, error: BaseException | None = None
) -> dict:
    """One output row: the colorized image as PNG, or the one-line reason it could not be made."""
    row = {"id": row_id, "image": None, "width": None, "height": None, "error": None, "settings": settings}
    if image is None:
        return {**row, "error": one_line(error)}
    return {**row, "image": {"bytes": encode_png(image), "path": None}, "width": image.width, "height": image.height}


def colorize_rows(
    colorizer: Colorizer, source: Source, rows: Sequence[tuple[str, dict]], settings: JobSettings
) -> list[dict]:
    """Colorize rows in one batch; when the batch fails, each row alone, so a bad row fails only itself.

    Args:
        colorizer: the model.
        source: what the rows come from (which column is which).
        rows: `(id, raw row)` pairs.
        settings: the job's settings.

    Returns:
        One output row per input row, in order.
    """
    row_settings = settings.row_settings()
    results: list[dict | None] = [None] * len(rows)
    ready = []  # (index, image, hints) of the rows that decoded
    for index, (row_id, row) in enumerate(rows):
        try:
            hints = points_from_records(row[source.hints_column]) if source.hints_column else None
            ready.append((index, open_image(image_bytes(row[source.image_column])), hints))
        except ROW_ERRORS as error:  # ImageError is a ValueError
            results[index] = output_row(row_id, row_settings, error=error)
    options = dict(saturation=settings.saturation, render_size=settings.render_size, propagate=settings.propagate)
    try:
        images = colorizer.colorize_batch([item[1] for item in ready], hints=[item[2] for item in ready], **options)
    except ROW_ERRORS:
        images = None
    for position, (index, image, hints) in enumerate(ready):
        row_id = rows[index][0]
        if images is not None:
            results[index] = output_row(row_id, row_settings, images[position])
            continue
        try:
            results[index] = output_row(row_id, row_settings, colorizer(image, hints=hints, **options))
        except ROW_ERRORS as error:
            results[index] = output_row(row_id, row_settings, error=error)
    return results  # type: ignore[return-value]


def chunks_of(rows: Iterable, size: int) -> Iterator[tuple[int, list, bool]]:
    """`(chunk, rows, last)` for consecutive chunks of `size` rows; no rows give one empty last chunk.

    `last` is known when a chunk is handed out: the row after it is read ahead.
    """
    rows, end = iter(rows), object()
    chunk, index = list(itertools.islice(rows, size)), 0
    while True:
        following = next(rows, end)
        yield index, chunk, following is end
        if following is end:
            return
        chunk, index = [following, *itertools.islice(rows, size - 1)], index + 1


def row_groups(rows: Iterable[dict]) -> Iterator[list[dict]]:
    """Rows gathered into parquet row groups of `ROW_GROUP_ROWS` rows or `ROW_GROUP_BYTES` of images."""
    group, size = [], 0
    for row in rows:
        group.append(row)
        size += len(row["image"]["bytes"]) if row["image"] else 0
        if len(group) == ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def write_shard(path: Path, schema: pa.Schema, rows: Iterable[dict]) -> int:
    """Write rows as they come (row group by row group) to a temporary file renamed onto `path` at the end.

    Returns:
        The number of rows written.
    """
    count = 0
    with atomic_path(path) as temporary:
        with pq.ParquetWriter(temporary, schema) as writer:
            for group in row_groups(rows):
                writer.write_table(pa.Table.from_pylist(group, schema=schema))
                count += len(group)
    return count


def colorize_shards(
    colorizer: Colorizer,
    source: Source,
    destination: str | os.PathLike,
    settings: JobSettings,
    work: Sequence[tuple[int, int]],
    *,
    batch_size: int = 1,
    on_rows: Callable[[int], None] | None = None,
) -> JobReport:
    """Colorize this process's source shards into `destination`, chunk by chunk.

    Args:
        colorizer: the model.
        source: the opened source (`open_source`).
        destination: the output folder (`start_job` has checked it).
        settings: the job's settings.
        work: `(shard, first_chunk)` pairs to do (this process's part of `unfinished_shards`).
        batch_size: rows colorized together (one forward pass for those of the same render shape).
        on_rows: called with the number of rows just done, after each batch (a progress bar).

    Returns:
        What this process did.
    """
    report, started = JobReport(), time.perf_counter()
    for shard, first_chunk in work:
        rows = ((source.row_id(row, shard, index), row) for index, row in enumerate(source.shard_rows(shard)))
        for chunk, chunk_rows, last in chunks_of(rows, settings.shard_size):
            if chunk < first_chunk:  # written by an earlier run: read past, not redone
                continue
            batches = (chunk_rows[start : start + batch_size] for start in range(0, len(chunk_rows), batch_size))
            colorized = (
                row for batch in batches for row in _colorized(colorizer, source, batch, settings, report, on_rows)
            )
            path = shard_path(destination, settings.split, shard, chunk)
            report.rows += write_shard(path, output_schema(settings, shard, chunk, last), colorized)
        report.shards += 1
    report.seconds = time.perf_counter() - started
    return report


def _colorized(colorizer, source, batch, settings, report, on_rows) -> list[dict]:
    """`colorize_rows` for one batch, counted in `report` and told to `on_rows`."""
    rows = colorize_rows(colorizer, source, batch, settings)
    report.errors += sum(row["error"] is not None for row in rows)
    if on_rows is not None:
        on_rows(len(rows))
    return rows


# ----------------------------------------------------------------------------- publishing
def push_job(destination: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None):
    """Upload a finished job's shards and job.json to a Hub dataset repo (created if needed).

    The repo's `data/` then holds exactly this job's shards: files there that the job did not write
    are deleted in the same commit.

    Returns:
        The `huggingface_hub.CommitInfo` of the commit.

    Raises:
        huggingface_hub.errors.HfHubHTTPError: the Hub refused (bad token, no write access...).
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(destination),
        allow_patterns=[JOB_FILE, f"{DATA_FOLDER}/[!.]*.parquet"],
        delete_patterns=[f"{DATA_FOLDER}/*"],
        commit_message=f"colorgan colorize-dataset: {sum(count_rows(destination).values())} rows",
    )
