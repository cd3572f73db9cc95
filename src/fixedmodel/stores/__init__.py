"""Storage backends for the cache and the rate limiter."""
