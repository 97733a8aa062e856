"""Item embeddings: each wardrobe item's description and attributes as a vector.

``text`` (what is embedded), ``client`` (the OpenAI-compatible ``/v1/embeddings`` call),
``index`` (the vector index: sqlite-vec, per-user nearest neighbours), ``backfill`` (which items
need a vector, idempotent and bounded), ``similar`` (similar items, the same garment twice).
"""
