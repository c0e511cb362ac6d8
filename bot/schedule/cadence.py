"""The scheduled workflow's cadence, derived from what one source costs (README "Cadence").

GitHub's limits for a free account's hosted runners (docs.github.com, "Actions limits"): 20 jobs
at once across the account, 256 jobs in one matrix, 6 hours per job. The workflow
(.github/workflows/bot.yml) fans a run out over `CHUNKS` matrix jobs of at most `MAX_MATRIX`
entries each, `MAX_PARALLEL` at a time per chunk, and one run at a time (its `concurrency`
group): a scheduled run that fires while the previous one still converts waits for it, so two
runs never plan the same repos.

`derive` turns the measured cost of one job (benchmarks/per_repo.py, `MEASURED`) into the
settings the shipped files carry: the run interval (cron), `budget.max_repos`, the matrix width
and the job timeouts. tests/bot/actions/test_workflows.py checks that bot.yml and
.github/unetbot.yml hold exactly these values and that the README shows this arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FREE_CONCURRENT_JOBS = 20  # jobs at once, a free account
MAX_MATRIX = 256  # jobs in one matrix
JOB_LIMIT_MINUTES = 360  # 6 hours per job on a hosted runner
CHUNKS = 4  # fan-out jobs in bot.yml (convert-0..convert-3)
RESERVED_JOBS = 4  # left for the plan/report jobs and the project's CI (ci.yml: 2 jobs)
MAX_PARALLEL = (FREE_CONCURRENT_JOBS - RESERVED_JOBS) // CHUNKS  # per chunk


@dataclass(frozen=True)
class Measured:
    """What one job costs, in minutes (benchmarks/RESULTS.md, "One source through a job")."""

    job: float  # one source with the shipped config (byte budget): the step's wall
    full_set_job: float  # a popular source: every configured variant
    fixed: float  # runner start, checkout, restoring the prebuilt environment
    plan: float  # the plan job at most (scan.max_minutes, below its timeout)
    report: float  # the report job


# benchmarks/per_repo.py, 2026-12-08, on the 2-core reference machine with nothing else running
# (a hosted runner is a VM of its own): a full-size fp16 SD1.5 pipeline with the shipped config
# took 112.5 s through the embedded Hub (convert + validate 71.9 s, fetch 8.6 s and publish 29.9 s
# over loopback). The real Hub is further away: the job moves 11.3 GB (2.13 GB down, 5.35 GB into
# the bot's repo, 3.85 GB into the PR), taken at an assumed 50 MB/s, 3.8 min. So 1.9 min - 0.5
# min of local transfer + 3.8 min = 5.2 min, rounded up: 6 min. A popular source's full set
# (benchmarks/real_layout.py: `--variants all` of a pipeline with fp32 and fp16 weights, 234 s)
# moves ~26 GB: 3.9 + 8.7 min, rounded up: 15 min. Estimated, not measured here: the fixed start
# of a job (runner, checkout, restoring the prebuilt environment and `pip install -e .` over it:
# 18 s measured for that install). The plan is bounded by `scan.max_minutes`.
# (2026-12-07, while other jobs loaded the machine to load average 7-12, the same job took 1,195 s.)
MEASURED = Measured(job=6.0, full_set_job=15.0, fixed=1.0, plan=20.0, report=2.0)


@dataclass(frozen=True)
class Cadence:
    interval_hours: int  # one scheduled run every N hours
    max_repos: int  # budget.max_repos: sources converted per run
    max_parallel: int  # per chunk job (strategy.max-parallel)
    chunks: int
    convert_timeout: int  # minutes (timeout-minutes of a convert job)
    plan_timeout: int
    waves: int  # rounds of `concurrency` jobs a run has time for

    @property
    def concurrency(self) -> int:
        return self.chunks * self.max_parallel

    @property
    def runs_per_day(self) -> int:
        return 24 // self.interval_hours

    @property
    def repos_per_day(self) -> int:
        return self.max_repos * self.runs_per_day

    def run_minutes(self, m: Measured) -> float:
        """Wall of one run: the plan, `waves` rounds of jobs, the report."""
        return m.plan + self.waves * (m.job + m.fixed) + m.report

    def days_to_clear(self, backlog: int) -> float:
        """Days until `backlog` sources are converted, runs starting on schedule."""
        return math.ceil(backlog / self.max_repos) * self.interval_hours / 24

    def cron(self, minute: int = 23, first_hour: int = 4) -> str:
        hours = sorted(
            (first_hour + i * self.interval_hours) % 24 for i in range(self.runs_per_day)
        )
        return f"{minute} {','.join(str(h) for h in hours)} * * *"


def derive(m: Measured = MEASURED, interval_hours: int = 12, margin: float = 0.1) -> Cadence:
    """The cadence for measured costs: as many rounds of `concurrency` jobs as fit in the
    interval after the plan and report, keeping `margin` of it spare (slower runners, retries),
    capped by the matrices (`CHUNKS` x `MAX_MATRIX`). A convert job may take 3x a full-set job
    (a slow runner) but never the 6 h limit; the plan job gets its budget plus 10 minutes."""
    usable = interval_hours * 60 * (1 - margin) - m.plan - m.report
    waves = max(1, math.floor(usable / (m.job + m.fixed)))
    concurrency = CHUNKS * MAX_PARALLEL
    max_repos = min(waves * concurrency, CHUNKS * MAX_MATRIX)
    timeout = min(JOB_LIMIT_MINUTES, math.ceil(3 * m.full_set_job / 10) * 10)
    return Cadence(
        interval_hours,
        max_repos,
        MAX_PARALLEL,
        CHUNKS,
        timeout,
        math.ceil(m.plan + 10),
        math.ceil(max_repos / concurrency),
    )
