"""Writing a PEFT LoRA adapter as a GGUF LoRA file that llama.cpp loads (`lora_path=`).

Owns the translation only: tensor names from Hugging Face's to llama.cpp's (through gguf-py's
own name map, not a hand-kept table), the adapter metadata llama.cpp reads (type, alpha), and
one subtle step. llama.cpp's GGUF conversion reorders the rows of the attention q and k weights
of llama-architecture models (its rotary embedding pairs dimensions differently), and
transformers undoes that on loading a GGUF. An adapter trained on the loaded model therefore
lives in Hugging Face's row order; its B matrices for q and k must be reordered the same way
the base weights were, or llama.cpp applies the update to the wrong rows and the adapter
silently does something else. The pipeline's verify step
(`next_token_agreement` in feedback/refresh/train.py) proves each export.

gguf-py does the file format; this module never writes bytes itself. The file is written under
a temporary name and renamed into place, so a crash never leaves half an adapter.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# Architectures whose conversion permutes q/k rows (convert_hf_to_gguf.py's LlamaModel).
PERMUTED = {"llama"}


def permute_rows(b: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder rows as llama.cpp's converter reorders q/k weights: within each head, the two
    rotary halves are interleaved.

    >>> permute_rows(np.arange(8).reshape(8, 1), n_head=2).ravel().tolist()
    [0, 2, 1, 3, 4, 6, 5, 7]
    """
    rows = b.shape[0]
    return b.reshape(n_head, 2, rows // n_head // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def base_name(peft_name: str) -> tuple[str, str]:
    """('model.layers.0.self_attn.q_proj', 'A') from a PEFT state-dict key.

    >>> base_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
    ('model.layers.0.self_attn.q_proj', 'A')
    """
    name = peft_name.removeprefix("base_model.model.")
    for part in ("A", "B"):
        suffix = f".lora_{part}.weight"
        if name.endswith(suffix):
            return name.removesuffix(suffix), part
    raise ValueError(f"not a LoRA weight: {peft_name}")


def write_adapter(
    state: dict[str, np.ndarray],
    path: Path,
    arch: str,
    n_layers: int,
    n_head: int,
    n_head_kv: int,
    alpha: float,
    base_model: str,
) -> Path:
    """Write PEFT LoRA weights (`state`: key -> array) as a GGUF adapter for `arch`."""
    import gguf

    arch_enum = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch)
    names = gguf.get_tensor_name_map(arch_enum, n_layers)
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        module, part = base_name(key)
        pairs.setdefault(module, {})[part] = np.asarray(value, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=arch)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        writer.add_string("general.base_model", base_model)
        for module in sorted(pairs):
            ab = pairs[module]
            if set(ab) != {"A", "B"}:
                raise ValueError(f"{module} has only lora_{''.join(ab)}")
            target = names.get_name(module + ".weight", try_suffixes=(".weight",))
            if target is None:
                raise ValueError(f"llama.cpp has no tensor for {module}")
            a, b = ab["A"], ab["B"]
            if arch in PERMUTED and target.endswith("attn_q.weight"):
                b = permute_rows(b, n_head)
            elif arch in PERMUTED and target.endswith("attn_k.weight"):
                b = permute_rows(b, n_head_kv)
            writer.add_tensor(target + ".lora_a", np.ascontiguousarray(a))
            writer.add_tensor(target + ".lora_b", np.ascontiguousarray(b))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def architecture(base_gguf: Path) -> str:
    """The `general.architecture` a GGUF model file declares (e.g. 'llama')."""
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    field = reader.fields["general.architecture"]
    return bytes(field.parts[field.data[0]]).decode()


def export_peft(
    peft_dir: Path, out: Path, base_gguf: Path, n_layers: int, n_head: int, n_head_kv: int
) -> Path:
    """The PEFT adapter saved in `peft_dir` (safetensors and adapter_config.json), written as a
    GGUF adapter for `base_gguf` at `out`."""
    import json

    from safetensors.numpy import load_file

    alpha = json.loads((peft_dir / "adapter_config.json").read_text())["lora_alpha"]
    return write_adapter(
        load_file(str(peft_dir / "adapter_model.safetensors")),
        out,
        arch=architecture(base_gguf),
        n_layers=n_layers,
        n_head=n_head,
        n_head_kv=n_head_kv,
        alpha=alpha,
        base_model=base_gguf.name,
    )
