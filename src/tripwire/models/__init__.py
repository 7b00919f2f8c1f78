"""Loading local language models and finding their decoder blocks."""

from tripwire.models.chat import Message, Rendered, render_chat, render_prompt, render_with_response
from tripwire.models.layers import BLOCK_PATHS, block_path, decoder_blocks, resolve_layers
from tripwire.models.loading import (
    DEFAULT_MODEL,
    EMBEDDED,
    LocalModel,
    from_pretrained_objects,
    load_model,
    tripwire_home,
)

__all__ = [
    "BLOCK_PATHS",
    "DEFAULT_MODEL",
    "EMBEDDED",
    "LocalModel",
    "Message",
    "Rendered",
    "block_path",
    "decoder_blocks",
    "from_pretrained_objects",
    "load_model",
    "render_chat",
    "render_prompt",
    "render_with_response",
    "resolve_layers",
    "tripwire_home",
]
