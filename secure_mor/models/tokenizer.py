"""A byte-level BPE tokenizer trained locally on a dataset's text, with the Qwen2-VL special tokens.

Hub downloads are impossible here, so the tiny base VLM gets its own tokenizer: byte-level BPE trained
with ``tokenizers`` on the questions and answers (any string stays encodable), wrapped as a
``PreTrainedTokenizerFast`` so that ``save_pretrained`` / ``from_pretrained`` work as for any HF model.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, EOS, IM_START = "<|endoftext|>", "<|im_end|>", "<|im_start|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
SPECIAL_TOKENS = (PAD, EOS, IM_START, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)

# Qwen-style chat template restricted to text and image parts (the tiny model has no video path).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on ``texts`` (plus the chat template's role words), wrapped for transformers."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    role_words = ["user\n", "assistant\n", "system\n"] * 64
    tokenizer.train_from_iterator([*texts, *role_words], trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=None,
        unk_token=None,
        padding_side="left",
        additional_special_tokens=list(SPECIAL_TOKENS[2:]),
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped
