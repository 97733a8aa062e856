"""Item embeddings: each wardrobe item's description and attributes as a vector.

``text`` (what is embedded), ``client`` (the OpenAI-compatible ``/v1/embeddings`` call),
``online`` (the vectors in Feast's online store — the one store of them, shared by every
worker — searched per user with ``retrieve_online_documents_v2``), ``backfill`` (which items
need a vector, idempotent and bounded), ``similar`` (similar items, the same garment twice),
``clusters`` (a wardrobe's style clusters).
"""
