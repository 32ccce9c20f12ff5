"""The Jinja template of colorgan's Hugging Face model card (`model_card.md.j2`), rendered by `colorgan.hub`."""
