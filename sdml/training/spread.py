"""The runs of a job divided among torchrun's ranks: each run trained alone by one rank.

``torchrun --nproc_per_node N [--nnodes M ...] -m sdml train-many ...`` starts N x M copies of the
command; each copy finds its place in :func:`sdml.training.distributed.torchrun_env` and trains its
share of the runs (:func:`sdml.training.distributed.share`) one after another with
:func:`sdml.training.train.train`, on its own device. A run is therefore the very run that
``sdml train`` gives for its config (bit for bit on the CPU), and it writes only its own folder.

The ranks talk once, at the start, through torch.distributed (gloo, over TCP): rank 0 checks every
run folder and fetches the data while the others wait, then tells them to go or why not. After
that they share nothing but the file system: a rank that finishes writes a short status file,
and rank 0 gathers those to report the job. A collective at the end would not do: shares train
for hours of different lengths, and a rank that crashed would keep the others waiting (torchrun
stops the remaining workers when one fails; the run folders stay consistent, since every
checkpoint is written atomically, and running the job again with ``--resume``, or torchrun's own
``--max-restarts``, continues only the unfinished runs).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from sdml.io.atomic import atomic_write_json
from sdml.training import runs
from sdml.training.config import Config
from sdml.training.distributed import RankEnv, agree, init_group, leave_group, rank_device, share

#: Under the job's root: one status file per rank once its share is done.
STATUS_DIR = ".ranks"


@dataclass
class JobSummary:
    """What rank 0 reports: a line per run, and whether every run finished."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True


def finished(run_dir: Path, epochs: int) -> bool:
    """The run holds every epoch's metrics and its predictions."""
    rows = runs.read_metrics(run_dir) if (run_dir / runs.CONFIG).is_file() else []
    return bool(rows) and rows[-1]["epoch"] >= epochs and (run_dir / runs.PREDICTIONS).is_file()


def check_folders(cfgs: list[Config], run_dirs: list[Path], resume: bool) -> None:
    """Refuse, before any rank writes, a job whose folders hold runs it may not continue."""
    for cfg, d in zip(cfgs, run_dirs):
        if cfg.ddp:
            raise ValueError("ddp: train-many spreads whole runs over the ranks; data-parallel "
                             "training of one run is `sdml train --ddp`")
        if not (d / runs.CONFIG).exists():
            continue
        if not resume:
            raise ValueError(f"out: {str(d)!r} already holds a run; pass --resume to continue the "
                             f"job, or choose another --out-root")
        saved = runs.read_config(d).to_dict()
        for name, value in cfg.to_dict().items():
            if name not in runs.RESUMABLE and name != "profile" and saved[name] != value:
                raise ValueError(f"{name}: {value!r} differs from the run in {str(d)!r} "
                                 f"({saved[name]!r}); only {', '.join(runs.RESUMABLE)} may change")


def start_job(cfgs: list[Config], run_dirs: list[Path], status_dir: Path, env: RankEnv,
              resume: bool) -> None:
    """Rank 0 checks the folders and clears old status files, the first rank of each node
    fetches the data (once per node, not once per rank); every rank then goes on, or every
    rank raises the same one-line error."""
    from sdml.data.load import dataset_for

    created = init_group(rank_device("cpu", env.local_rank))  # gloo: a few words, then gone
    try:
        error = None
        try:
            if env.is_main:
                check_folders(cfgs, run_dirs, resume)
                status_dir.mkdir(parents=True, exist_ok=True)
                for old in status_dir.glob("rank*.json"):
                    old.unlink()
            if env.local_rank == 0:
                dataset_for(cfgs[0])  # a download or generation, written atomically
        except (ValueError, FileNotFoundError) as err:
            error = str(err)
        agree(error)  # raises the same error on every rank
    finally:
        leave_group(created)


def train_share(cfgs: list[Config], run_dirs: list[Path], env: RankEnv, resume: bool,
                progress: bool, log) -> list[dict]:
    """Train this rank's runs one after another; a run that fails (non-finite loss, a bad
    folder) is recorded and the next one goes on."""
    from sdml.training.train import train

    rank_device(cfgs[0].device, env.local_rank)  # "cuda" now means this rank's GPU
    out = []
    for i in share(len(cfgs), env.rank, env.world_size):
        cfg, d = cfgs[i], run_dirs[i]
        if finished(d, cfg.epochs):
            log(f"{d.name}: finished before, skipped")
            out.append({"run": d.name, "state": "done"})
            continue
        try:
            train(cfg, d, resume=resume, progress=progress and env.is_main,
                  log=lambda text, name=d.name: log(f"{name}: {text}"))
            out.append({"run": d.name, "state": "done"})
        except (FloatingPointError, ValueError, FileNotFoundError) as err:
            log(f"{d.name}: stopped: {err}")
            out.append({"run": d.name, "state": "failed", "error": str(err)})
    return out


def wait_for_ranks(status_dir: Path, ranks: list[int], wait_s: float, poll_s: float = 2.0
                   ) -> dict[int, dict]:
    """The status of each of ``ranks`` that reported within ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        got = {r: json.loads((status_dir / f"rank{r}.json").read_text()) for r in ranks
               if (status_dir / f"rank{r}.json").is_file()}
        if len(got) == len(ranks) or time.monotonic() >= deadline:
            return got
        time.sleep(poll_s)


def summarise(cfgs: list[Config], run_dirs: list[Path], env: RankEnv,
              reports: dict[int, dict]) -> JobSummary:
    """One line per run: its rank, state, epochs and last accuracies, read from its folder."""
    states = {item["run"]: item for rep in reports.values() for item in rep["runs"]}
    summary = JobSummary()
    for i, (cfg, d) in enumerate(zip(cfgs, run_dirs)):
        rank = i % env.world_size
        rows = runs.read_metrics(d) if (d / runs.CONFIG).is_file() else []
        item = states.get(d.name)
        if item is None:
            state = f"rank {rank} did not report"
        elif item["state"] == "failed":
            state = f"failed: {item['error']}"
        else:
            state = "done" if finished(d, cfg.epochs) else "unfinished"
        summary.ok &= state == "done"
        accs = ""
        evaluated = [r for r in rows if "test_acc" in r]
        if evaluated:
            last = evaluated[-1]
            accs = (f" | test top-1 {' '.join(f'{a:.2f}' for a in last['test_acc'])} "
                    f"ens {last['ensemble_acc']:.2f}")
        summary.lines.append(f"{d.name}: rank {rank} | {state} | epoch "
                             f"{rows[-1]['epoch'] if rows else 0}/{cfg.epochs}{accs}")
    return summary


def spread_many(cfgs: list[Config], run_dirs: list, out_root, env: RankEnv, resume: bool = False,
                progress: bool = True, log=print, wait_s: float = 3600.0) -> JobSummary:
    """Train this rank's share of the job; rank 0 then reports the whole job.

    A restart by torchrun (``--max-restarts``) resumes, as ``--resume`` does. Rank 0 waits at
    most ``wait_s`` seconds for the other ranks' reports after its own share is done (it has
    the largest share, so they are usually done by then); what is missing is reported as such.
    """
    run_dirs = [Path(d) for d in run_dirs]
    status_dir = Path(out_root) / STATUS_DIR
    resume = resume or env.restarts > 0
    tag = f"[rank {env.rank}/{env.world_size}]"
    say = lambda text: log(f"{tag} {text}")  # noqa: E731 - a prefix, not a function worth a name
    start_job(cfgs, run_dirs, status_dir, env, resume)
    mine = share(len(cfgs), env.rank, env.world_size)
    if not mine:
        say(f"no run for this rank: the job has {len(cfgs)} runs for {env.world_size} ranks; "
            f"nothing to do")
        return JobSummary()
    say(f"{len(mine)} of the job's {len(cfgs)} runs: {', '.join(run_dirs[i].name for i in mine)}")
    report = {"rank": env.rank, "runs": train_share(cfgs, run_dirs, env, resume, progress, say)}
    atomic_write_json(status_dir / f"rank{env.rank}.json", report)
    if not env.is_main:  # rank 0 reports this share; failing here would make torchrun stop it
        return JobSummary()
    working = list(range(min(len(cfgs), env.world_size)))
    reports = wait_for_ranks(status_dir, working, wait_s)
    summary = summarise(cfgs, run_dirs, env, reports)
    log(f"[sdml] job of {len(cfgs)} runs over {env.world_size} ranks:")
    for line in summary.lines:
        log(f"  {line}")
    return summary
