"""Keras layers and models, tokenizers, the one beam search, and SavedModel export."""
