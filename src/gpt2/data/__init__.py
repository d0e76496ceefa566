"""Data: text -> token shards (`gpt2 prepare`), the shard format, and loaders.

Submodules import lazily so that `import gpt2.data.shards` stays light (no torch).
"""
