"""Online serving: tenant routing with global fallback, model cache, micro-batching, shadows."""
