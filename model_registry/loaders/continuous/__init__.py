"""Continuous batching for decoder-only generation (the way vLLM and TGI schedule).

A model's generations share one running batch: each sequence keeps its own rows
of a KV cache (kv_batch.py), new requests are prefilled in chunks and join
between decoding steps, a sequence that ends leaves at once, and every sequence
picks its next token with its own parameters (sampling.py). scheduler.py runs
the loop on one thread per model and shares it fairly between accounts;
task_queues.py is what ServedModel's task runners submit to.
"""
