"""omnizoo.weights: how to get the bytes, safely (internal; the public API is omnizoo.__all__).

Hashing, the content-addressed cache, transport (mirrors, the Hub), lock files, archives and
the safe file opener (:mod:`.fsafe`).

**One download entry point.** The layers above ``weights/`` get verified bytes through
:func:`omnizoo.weights.download.fetch_verified` and nothing else: a card's
:class:`~omnizoo.values.card.WeightsFile` or a bare URL in, a
:class:`~omnizoo.weights.verification.Fetched` (path, sha256, verification state) out.
``omnizoo.download_weights`` (a model name or a URL, for users) is built on it. The chain
behind it (:mod:`.lookup`: served without a download; :mod:`.download_chain`: downloaded,
checked and published) is private to this package. ``tests/test_download_entry.py`` holds the
rule; ``docs/cache.md`` ("Python API") states it for readers.
"""
