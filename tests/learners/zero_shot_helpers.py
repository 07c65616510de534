"""A tiny Hugging Face CLIP saved offline for the zero-shot tests (a module of its own, not ``conftest``).

The tiny OpenCLIP model is `tests/tiny_foundation_models.py`'s.
"""

from __future__ import annotations

import json
from pathlib import Path


def save_tiny_hf_clip(folder: Path) -> Path:
    """A tiny Hugging Face ``CLIPModel`` with its image processor and a character-level tokenizer."""
    import string

    import transformers as tf

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + ".,-'!?:")
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({f"{c}</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = tf.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    end = vocab["<|endoftext|>"]
    text = {"vocab_size": len(vocab), "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1}
    text.update({"num_attention_heads": 2, "max_position_embeddings": 32, "eos_token_id": end})
    text.update({"bos_token_id": vocab["<|startoftext|>"], "pad_token_id": end})
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 16, "intermediate_size": 32}
    vision.update({"num_hidden_layers": 1, "num_attention_heads": 2})
    tf.utils.logging.disable_progress_bar()
    try:
        config = tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=12)
        tf.CLIPModel(config).save_pretrained(folder)
    finally:
        tf.utils.logging.enable_progress_bar()
    tokenizer.save_pretrained(folder)
    tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder
    )
    return folder
