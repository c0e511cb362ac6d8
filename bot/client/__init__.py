"""The bot's only door to the Hub: `huggingface_hub` plus retries, pacing and typed errors.

Offers: `Hub` (every call, its budget and its retries: `hub`), the request pacing under the
account's rate limits (`pacing`), which of a repo's files a job needs (`repo_files`), who the bot
is (`identity`), and a Hub file's safetensors header read by range requests (`headers`).
"""
