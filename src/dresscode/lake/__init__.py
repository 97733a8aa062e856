"""The lake stage: upkeep of the lake's Delta tables (``lake_maintenance``)."""
