"""A character-level tokenizer as a real ``transformers`` fast tokenizer.

One token per character of the alphabet, plus ``<pad>`` (id 0), ``<s>`` (BOS, 1), ``</s>``
(EOS, 2) and ``<unk>`` (3). Like Llama tokenizers, encoding with special tokens prepends BOS
and does not append EOS (training appends it: see ``encode_prompt_completion``). It is a
``PreTrainedTokenizerFast``, so ``save_pretrained``/``AutoTokenizer.from_pretrained``,
batching and ``padding_side="left"`` work as for any Hugging Face checkpoint.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def build_char_tokenizer(alphabet: str) -> PreTrainedTokenizerFast:
    """A tokenizer with one token per distinct character of ``alphabet`` (in order of first
    appearance), ids after the four special tokens. Characters outside it map to ``<unk>``."""
    chars = list(dict.fromkeys(alphabet))
    if not chars:
        raise ValueError("build_char_tokenizer: empty alphabet")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for c in chars:
        vocab[c] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    # Split into single characters (whitespace and newlines included), join back on decode.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def encode_prompt_completion(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, *, add_eos: bool = True
) -> tuple[list[int], int]:
    """Token ids of ``prompt`` + ``completion`` (+ EOS) as a model sees them in training,
    and the index of the first completion token.

    The prompt is encoded exactly as generation encodes it (with the tokenizer's special
    tokens, i.e. BOS), so a model trained on these ids is asked the same way at test time.
    Prompt and completion are encoded separately, so a completion never merges into the
    prompt's last token."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = list(prompt_ids) + list(completion_ids)
    if add_eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("encode_prompt_completion: the tokenizer has no EOS token")
        ids.append(tokenizer.eos_token_id)
    return ids, len(prompt_ids)
