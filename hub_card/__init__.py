"""colorgan's Hugging Face model card: the Jinja template (`model_card.md.j2`) and its rendering (`card.py`)."""
from .card import (
    GENERATED_CARD_MARKER,
    MIXIN_CARD_SIGNATURE,
    CardFacts,
    Evaluation,
    is_generated_card,
    render_model_card,
    sample_grid_name,
    write_model_card,
)

__all__ = [
    "GENERATED_CARD_MARKER",
    "MIXIN_CARD_SIGNATURE",
    "CardFacts",
    "Evaluation",
    "is_generated_card",
    "render_model_card",
    "sample_grid_name",
    "write_model_card",
]
