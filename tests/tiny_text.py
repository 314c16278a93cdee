"""A tiny real Hugging Face text tower (BERT, 32-d, random weights) inside an importable package, standing in
for the all-MiniLM-L6-v2 package the everyday bundle references (same code path: ``package:NAME/model``)."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "an", "the", "of", "sound", "photo", "drawing", "dog", "cat",
         "cow", "rain", "bell", "bells", "car", "bird", "birds", "barking", "ringing", "engine", "church", "duck",
         "##s", "##ing", "clock", "piano", "wind", "horse", "sheep"]


def text_tower_config(package: str, dim: int = 32, image_size: int = 32) -> dict:
    """An open_clip config: a small ViT image tower and the package's BERT as the (projection-free) text tower."""
    return {"embed_dim": dim, "custom_text": True,
            "vision_cfg": {"image_size": image_size, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
            "text_cfg": {"hf_model_name": f"package:{package}/model", "hf_tokenizer_name": f"package:{package}/model",
                         "hf_pooler_type": "mean_pooler", "hf_proj_type": None, "context_length": 16}}


def make_text_package(root: Path, name: str = "tiny_text_tower", dim: int = 32) -> dict:
    """Write ``root/name/model`` (config, weights, tokenizer), put ``root`` on ``sys.path``; return the config."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = root / name / "model"
    if not (folder / "model.safetensors").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text("")
        BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(folder)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            BertModel(BertConfig(vocab_size=len(WORDS), hidden_size=dim, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=37, max_position_embeddings=64)).save_pretrained(folder)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return text_tower_config(name, dim)
