"""Data: text -> token shards (`gpt2 prepare`), the shard format, and loaders."""
