"""A callvault on scratch resources of the local stack, for the tests and the benchmarks alike.

Neither a test nor a benchmark: the pieces both need, so that ``bench/`` imports nothing from
``tests/`` and neither keeps a copy of the other's. Not part of the product (not packaged);
it imports the product and nothing of ``tests/`` or ``bench/``.

- ``audio``: tones made on the fly (exact PCM) and transcoded by the real ffmpeg.
- ``catalog``: a recording row with its number sealed under the caller's key.
- ``worker``: the environment of a callvault process, scratch topics, and a real
  ``callvault worker`` on scratch topics, buckets and schema with producing and observing helpers.
"""
