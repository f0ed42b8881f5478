"""Policies: Hugging Face transformers (generate and choice modes), vLLM, tiny offline models."""
