"""Uploaded tokenizers cannot run unbounded work in the service's process.

A Hugging Face folder's tokenizer runs in the service (its normaliser and
pre-tokeniser see every request's text), on the tokenizers library's
backtracking regex engine. Two checks, at build, before it is ever loaded:

- its patterns: every Regex in the folder's JSON files (tokenizer.json's
  normalizer, pre_tokenizer, decoder and post_processor at any depth, through
  Sequence; a Mistral tekken.json's pattern) must be one that widely used
  tokenizers ship (uploads/tokenizer_patterns.py). uploads/hf_inspect.py lists
  them in the check's own process (parsing a large JSON file costs memory);
  this module judges the list. Literal String patterns are fine.
- its size: the files a tokenizer is read from (is_tokenizer_file) are held in
  the service's memory, outside the model's size, so uploads/hf_checks.py bounds
  them (HF_FILE_MAX_MB).
"""

from .build_errors import BuildFailed
from .tokenizer_patterns import KNOWN, REFUSED, canonical

SOURCE = "uploads/tokenizer_patterns.py: the patterns of GPT-2, Llama 3, GPT-4o, Qwen, Mistral Tekken, BLOOM, " \
         "Falcon, DeepSeek, CLIP and the SentencePiece models' converters"
# Names of the files tokenizers are read from (the tokenizer.json and
# tokenizer_config.json family, vocabularies, merges, SentencePiece and tiktoken
# models, Mistral's tekken.json).
TOKENIZER_NAME_PARTS = ("tokenizer", "vocab", "merges", "tekken", "spiece", "sentencepiece")
TOKENIZER_SUFFIXES = (".model", ".tiktoken")


def unknown_patterns(found: list[dict]) -> list[dict]:
    """The listed patterns (hf_inspect's {"file", "where", "pattern"}) outside the known set."""
    return [entry for entry in found if canonical(entry["pattern"]) not in KNOWN]


def check_patterns(found: list[dict], truncated: bool = False) -> None:
    """BuildFailed naming the first pattern outside the known set."""
    unknown = unknown_patterns(found)
    if unknown:
        first = unknown[0]
        more = f" ({len(unknown) - 1} more)" if len(unknown) > 1 else ""
        known_slow = REFUSED.get(canonical(first["pattern"]))
        more += f" ({known_slow})" if known_slow else ""
        raise BuildFailed(
            f"{first['file']}: the regex {first['pattern'][:300]!r} at {first['where']}{more} is not one of the "
            f"patterns widely used tokenizers ship ({SOURCE}). A regex can take exponential time on some texts, "
            "and a tokenizer runs inside the service, so only those patterns are accepted: use the pattern of the "
            "tokenizer yours derives from, or a literal String pattern.")
    if truncated:
        raise BuildFailed(f"The folder's JSON files hold more than {len(found)} regex patterns; a tokenizer "
                          "needs a handful.")


def is_tokenizer_file(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in TOKENIZER_NAME_PARTS) or lowered.endswith(TOKENIZER_SUFFIXES)
