"""Item embeddings: each wardrobe item's description and attributes as a vector.

``text`` (what is embedded), ``client`` (the OpenAI-compatible ``/v1/embeddings`` call),
``index`` (the vector index: sqlite-vec, per-user nearest neighbours), ``online`` (the vectors
in Feast's online store, searched with ``retrieve_online_documents_v2``), ``backfill`` (which
items need a vector, idempotent and bounded), ``similar`` (similar items, the same garment twice).
"""
