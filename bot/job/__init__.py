"""One source through the whole cycle: judge, choose, fetch, convert + validate, publish, record.

Offers: `run_job` (`run`: a `JobRequest` in, a `JobResult` out: `types`), the Hub half of a job
(`hub_source`, imported only for a Hub source), fetching the needed files (`fetch`), the convert
stage and its output folder's rules (`convert_stage`, `outdir`), and what the job tells the
ledger (`ledger_hooks`).
"""
