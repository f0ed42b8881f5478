"""GGUF file -> float32 Hugging Face model directory (safetensors + tokenizer + manifest).

transformers' GGUF loader reads the weights (dequantising every quantised tensor to float32), the
config and the tokenizer (vocabulary, merges, special tokens and chat template all live in the
GGUF's metadata). The loaded model is flagged as quantised; the flag is cleared before saving, so
the directory is an ordinary float32 model that loads without the ``gguf`` package.

The file is checked before transformers sees it (magic bytes, readable header, every tensor's data
inside the file, a tokenizer present), so a corrupt or truncated file is a
:class:`~slea.models.store.ModelFileError` naming it, not a stack trace from deep inside a reader.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from slea.errors import ModelFileError, require
from slea.models.store import MANIFEST, MANIFEST_FORMAT, read_manifest, write_manifest
from slea.rundir import install_dir, sha256_file, staging_dir

Log = Callable[[str], None]

_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GgufSummary:
    """What the header of a GGUF file says.

    Attributes:
        path: the file.
        architecture: ``general.architecture`` (``llama``, ``qwen2``, ...).
        name: ``general.name`` ("" when absent).
        tensors: number of tensors.
        size_bytes: file size in bytes.
        vocab_size: number of tokens in ``tokenizer.ggml.tokens``.
        chat_template: True when the file carries ``tokenizer.chat_template``.
    """

    path: Path
    architecture: str
    name: str
    tensors: int
    size_bytes: int
    vocab_size: int
    chat_template: bool


def inspect_gguf(path: str | os.PathLike[str]) -> GgufSummary:
    """Check a GGUF file's structure and summarise it; reads the header, not the tensor data.

    Raises:
        ModelFileError: naming the file when it is missing, not a GGUF file, truncated or corrupt,
            or has no tokenizer.
        MissingExtraError: the ``gguf`` package is not installed.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such GGUF file")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(4)
    if head != _MAGIC:
        raise ModelFileError(f"{p}: not a GGUF file (it does not start with the bytes 'GGUF')")
    gguf: Any = require("gguf", "models", "reading a GGUF file")
    try:
        reader = gguf.GGUFReader(str(p), "r")
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
        fields = reader.fields
        arch_field = fields.get("general.architecture")
        architecture = str(arch_field.contents()) if arch_field is not None else ""
        name_field = fields.get("general.name")
        name = str(name_field.contents()) if name_field is not None else ""
        tokens = fields.get("tokenizer.ggml.tokens")
        vocab = len(tokens.data) if tokens is not None else 0
        n_tensors = len(reader.tensors)
        has_template = "tokenizer.chat_template" in fields
    except Exception as exc:  # the reader fails in many ways on a damaged file
        raise ModelFileError(
            f"{p}: truncated or corrupt GGUF file ({type(exc).__name__}: {exc}); "
            "download or copy it again"
        ) from exc
    if end > size:
        raise ModelFileError(
            f"{p}: truncated GGUF file ({size} bytes, its tensors need {end}); download or copy it again"
        )
    if not architecture:
        raise ModelFileError(f"{p}: the GGUF header has no general.architecture")
    if vocab == 0:
        raise ModelFileError(
            f"{p}: the GGUF file has no tokenizer (tokenizer.ggml.tokens); slea needs one to convert it"
        )
    return GgufSummary(p, architecture, name, n_tensors, size, vocab, has_template)


def convert_gguf(
    gguf_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    log: Log | None = None,
) -> Path:
    """Convert a local GGUF file to a float32 Hugging Face model directory ``out_dir``.

    The directory is written next to ``out_dir`` under a hidden name and renamed into place when
    complete: a failure leaves ``out_dir`` as it was. ``out_dir`` must not exist, unless ``force``
    and it is empty or a directory this function wrote before (it has a manifest); it is then
    replaced.

    Returns:
        ``out_dir`` (holding ``config.json``, ``model.safetensors``, the tokenizer files and
        ``slea-model.json``).
    """
    src = Path(gguf_path)
    out = Path(out_dir)
    inspect_gguf(src)  # fail on a bad file before creating anything
    if out.exists():
        replaceable = out.is_dir() and (read_manifest(out) is not None or not any(out.iterdir()))
        if not force:
            raise FileExistsError(f"{out}: already exists; pass --force (force=True) to replace it")
        if not replaceable:
            raise FileExistsError(
                f"{out}: exists and is not a model directory written by slea (no {MANIFEST}); "
                "choose another output directory"
            )
    staged = staging_dir(out)
    try:
        source = {"kind": "file", "file": str(src.resolve()), "sha256": sha256_file(src)}
        convert_into(src, staged / "model", source=source, log=log)
        install_dir(staged / "model", out, replace=force)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


def convert_into(
    gguf_path: Path,
    dest: Path,
    *,
    source: dict[str, Any],
    preset: str | None = None,
    extra: dict[str, Any] | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Convert ``gguf_path`` into the new directory ``dest`` (no atomicity: callers stage it).

    Args:
        gguf_path: a GGUF file.
        dest: a directory that does not exist yet.
        source: where the GGUF came from (recorded in the manifest, key ``source``).
        preset: the preset name, if any (manifest key ``preset``).
        extra: more manifest keys (e.g. timings).
        log: called with progress lines.

    Returns:
        The manifest written to ``dest``.
    """
    summary = inspect_gguf(gguf_path)
    require("torch", "train", "converting a GGUF model")
    require("transformers", "train", "converting a GGUF model")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    say = log or (lambda _msg: None)
    say(
        f"converting {gguf_path.name} ({summary.architecture}, {summary.tensors} tensors) to float32"
    )
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"gguf_file": gguf_path.name, "local_files_only": True}
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), dtype=torch.float32, **kwargs
        )
    except Exception as exc:
        raise ModelFileError(
            f"{gguf_path}: transformers {_version('transformers')} could not load this "
            f"{summary.architecture} GGUF ({type(exc).__name__}: {exc})"
        ) from exc
    # The GGUF loader marks the model as quantised although every weight is now float32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    parameters = int(sum(p.numel() for p in model.parameters()))
    dest.mkdir(parents=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    seconds = time.perf_counter() - t0
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "preset": preset,
        "source": source,
        "architecture": summary.architecture,
        "gguf_name": summary.name,
        "parameters": parameters,
        "dtype": "float32",
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "converted_with": {
            "slea": _version("slea-rl"),
            "transformers": _version("transformers"),
            "gguf": _version("gguf"),
            "torch": _version("torch"),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": {"convert": round(seconds, 2)},
    }
    for key, value in (extra or {}).items():
        if key == "seconds":
            manifest["seconds"].update(value)
        else:
            manifest[key] = value
    write_manifest(dest, manifest)
    say(f"converted in {seconds:.1f} s: {parameters / 1e6:.1f}M parameters")
    return manifest


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        if dist == "slea-rl":
            from slea._core import __version__

            return str(__version__)
        return None
