"""The regex patterns an uploaded tokenizer may carry: those that real, widely used
tokenizers ship, exact strings, each with where it comes from.

A tokenizers Regex runs on Oniguruma, a backtracking engine, in the service's
process: a pattern such as "(a+)+$" takes exponential time on some inputs. So an
uploaded tokenizer's patterns must be among these (uploads/tokenizer_check.py);
literal String patterns are always fine. These have served billions of requests
in the models named, and each was timed here on hostile 20,000-character inputs
(the longest text a request may carry; the figures are in docs/security.md).

Some shipped patterns are left out (LEFT_OUT), as they take quadratic time in
the length of a text; the tokenizers that carry them are refused.

Tokenizers that need no entry because they carry no Regex object at all: BERT
(BertPreTokenizer, as in the packaged all-MiniLM-L6-v2), GPT-2, RoBERTa, GPT-NeoX,
OPT and OLMo (ByteLevel's built-in regex), SmolLM/SmolLM2 (Digits + ByteLevel; the
packaged GGUF's too), StarCoder/StarCoder2 and Command-R (Digits + ByteLevel),
Gemma 1-3, Llama 2, Mistral v1-v3 and Phi-3 (Metaspace, String splits).

Compared after writing carriage return, line feed and tab characters as the
escapes \\r, \\n, \\t: JSON files hold both spellings of the same pattern.
"""

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_CL100K = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_O200K = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
          r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
          r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN3_5 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
           r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
           r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# DeepSeek LLM, DeepSeek-V2: letters of the cased scripts, written as code points
# (several have look-alikes in other blocks).
_DEEPSEEK_LETTERS = (
    r"\s?[A-Za-z"
    "\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373"
    "\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481"
    "\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF"
    "\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D"
    "\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4"
    "\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107"
    "\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F"
    "\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D"
    "\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17"
    "\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB"
    "\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF\U0001E900-\U0001E943]+"
)
_DEEPSEEK_CJK = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"
_DEEPSEEK_V3 = (r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
                r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_CLIP = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"

# (pattern, where it comes from)
KNOWN_PATTERNS: tuple[tuple[str, str], ...] = (
    (_GPT2, "GPT-2's byte-level split, written out as a Split (tokenizers' ByteLevel regex)"),
    (_CL100K, "OpenAI cl100k_base; Llama 3.x, DBRX, Falcon 3, Pixtral tokenizer.json; transformers' "
              "TikTokenConverter and GGUF llama-bpe mapping"),
    (_O200K, "OpenAI o200k_base (GPT-4o, gpt-oss); Llama 4, MiniMax-M2 tokenizer.json"),
    (_QWEN2, "Qwen2/2.5/3 and DeepSeek-R1-Distill-Qwen tokenizer.json (transformers' Qwen2Tokenizer)"),
    (_QWEN3_5, "Qwen3.5 tokenizer.json (transformers' Qwen3_5Tokenizer)"),
    (_TEKKEN, "Mistral Tekken (Mistral NeMo, Pixtral, Mistral Small 3): tekken.json and tokenizer.json"),
    (r" ?[^(\s|[.,!?" "\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C" "])]+", "BLOOM tokenizer.json"),
    ("[0-9][0-9][0-9]", "Falcon (7B/40B/180B) tokenizer.json"),
    (r"[\r\n]", "DeepSeek LLM, DeepSeek Coder, DeepSeek-V2 tokenizer.json"),
    (_DEEPSEEK_LETTERS, "DeepSeek LLM, DeepSeek-V2 tokenizer.json"),
    (r"\s?[!-/:-~" "\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+",
     "DeepSeek LLM, DeepSeek-V2 tokenizer.json"),
    (_DEEPSEEK_CJK, "DeepSeek LLM, DeepSeek Coder, DeepSeek-V2 tokenizer.json"),
    (r"\p{N}+", "DeepSeek LLM, DeepSeek-V2 tokenizer.json"),
    (r"\s?\p{L}+", "DeepSeek Coder tokenizer.json"),
    (r"\s?\p{P}+", "DeepSeek Coder tokenizer.json"),
    (r"\p{N}", "DeepSeek Coder tokenizer.json"),
    (r"\p{N}{1,3}", "DeepSeek-V3/R1 tokenizer.json"),
    ("[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+", "DeepSeek-V3/R1 tokenizer.json"),
    (_DEEPSEEK_V3, "DeepSeek-V3/R1 tokenizer.json"),
    (_CLIP, "CLIP tokenizer.json (transformers' CLIP converter)"),
    (r"<\|startoftext\|>|<\|endoftext\|>|" + _CLIP, "CLIP (transformers' CLIPTokenizer)"),
    (r"\s+", "CLIP's normalizer (whitespace runs to one space)"),
    (" {2,}", "SentencePiece models converted by transformers: T5, XLM-RoBERTa, ALBERT, mBART, NLLB, "
              "BigBird, Pegasus, LayoutXLM, RemBERT, XGLM, Reformer"),
    (r"\s{2,}|[\n\r\t]", "DeBERTa-v2/v3 and BARThez (transformers' converters)"),
    (r"\n", "Pegasus (transformers' PegasusTokenizer)"),
    (r"[\n\r\t]", "SeamlessM4T (transformers' SeamlessM4TTokenizer)"),
    ("^\u2581+$", "SeamlessM4T (transformers' SeamlessM4TTokenizer)"),
)


# (pattern, who ships it and why it is refused): measured on 19,999 spaces and a "!".
LEFT_OUT: tuple[tuple[str, str], ...] = (
    (r"\s+$", "DeepSeek LLM and DeepSeek-V2 ship it, but it takes quadratic time: 6.7 s on one 20,000-character text"),
    (" +\u2581", "SeamlessM4T ships it, but it takes quadratic time: 1.4 s on one 20,000-character text"),
)


def canonical(pattern: str) -> str:
    """The pattern with CR, LF and tab characters written as escapes (the same regex)."""
    return pattern.replace("\r", r"\r").replace("\n", r"\n").replace("\t", r"\t")


KNOWN = {canonical(pattern): origin for pattern, origin in KNOWN_PATTERNS}
REFUSED = {canonical(pattern): why for pattern, why in LEFT_OUT}
