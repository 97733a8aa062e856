"""The online stylist, ``dresscode serve``: outfit suggestions streamed on demand.

One concern per module:

* :mod:`.app` — the HTTP face: ``POST /v1/outfits`` (Server-Sent Events) and its checks;
* :mod:`.service` — one request from checked inputs to the last event;
* :mod:`.context` — what the stylist knows: profile, wardrobe, Feast features, weather answers;
* :mod:`.batching` — the inputs of the requests in flight read in one batch per reader;
* :mod:`.aliases` — the production and candidate blueprints, re-read in the background;
* :mod:`.routing` — the canary split (by user) and the shadow sample (by request);
* :mod:`.shadow` — the live shadow: the candidate on real requests, compared, in the background;
* :mod:`.logbook` — buffered ``inference_log`` and ``serve_shadow`` writes to the lake;
* :mod:`.access` — the caller's API key and the per-user rate limit;
* :mod:`.main` — wiring it all from the settings, and running it with uvicorn.
"""
