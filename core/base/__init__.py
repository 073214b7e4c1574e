"""What every layer uses: errors, redaction of secrets, the item codec, paths, logging's masking, descriptor
and garbage-collector set-up. Imports nothing of core."""
