"""Run the runs of a suite as parallel subprocesses, each on its own devices or cores.

Every run is one ``python -m pdiff_jax.main`` process with its own workdir. A
run's stdout and stderr go to ``WORKDIR/run.log``; the runner records each
attempt (command, exit code, wall time, peak RSS) in
``WORKDIR/.sweep_status.json`` (hidden: the pipeline treats a workdir holding
only hidden files, config.json and metrics.jsonl as holding no work).

A run is *finished* when ``results.json`` is at least as new as ``config.json``
(the pipeline rewrites config.json at every start and results.json at the end)
and config.json is the config the suite asks for. Finished runs are skipped, so
invoking a suite again only runs what is missing; an unfinished run restarts in
its workdir and the pipeline skips its finished stages.

Where each run goes (its devices or cores): ``suite_placement``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pdiff_jax import artifacts
from pdiff_jax.config.diff import config_differences
from pdiff_jax.suites.placement import Slot
from pdiff_jax.suites.shared_zoos import finished_zoo, link_zoo

LOG_FILE, STATUS_FILE = artifacts.RUN_LOG, artifacts.SWEEP_STATUS_JSON


@dataclass
class Job:
    """One run: its name, command line, workdir and the config it must hold (None: any).

    ``zoo_key``: runs with the same key collect the same zoo (``zoo_key``), so one
    collects it and the others start from a link to it (None: never shared).
    """

    name: str
    argv: list[str]
    workdir: Path
    expected_config: dict | None = None
    zoo_key: str | None = None
    zoo_from: Path | None = None   # set by run_jobs when the zoo was linked from a donor


# ----------------------------------------------------------------------------- state


def read_status(workdir: Path) -> dict:
    path = Path(workdir) / STATUS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_status(workdir: Path, status: Mapping) -> None:
    path = Path(workdir) / STATUS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status, indent=1) + "\n")
    tmp.replace(path)


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def _holds_artifacts(workdir: Path) -> bool:
    """Whether the pipeline has written anything besides its config and metrics log."""
    return any(p.name not in (artifacts.CONFIG_JSON, artifacts.METRICS_JSONL, LOG_FILE)
               and not p.name.startswith(".") for p in workdir.iterdir())


def run_state(workdir, expected_config: Mapping | None = None) -> dict:
    """``{'state': ..., 'log': path, 'error': last error line or ''}`` of one run's workdir.

    States: 'finished', 'stale' (holds a run of another config), 'running',
    'failed', 'interrupted' (started, not running, no exit recorded) or 'pending'.
    """
    workdir = Path(workdir)
    log = workdir / LOG_FILE
    out = {"state": "pending", "log": str(log), "error": ""}
    config, results = workdir / artifacts.CONFIG_JSON, workdir / artifacts.RESULTS_JSON
    if config.exists() and expected_config is not None:
        try:
            saved = json.loads(config.read_text())
        except ValueError:
            saved = None
        # Keys added by a newer pdiff_jax, at their defaults, are no difference.
        if (saved is None or config_differences(saved, expected_config, limit=None)) \
                and _holds_artifacts(workdir):
            out.update(state="stale", error=f"{workdir} holds a run of a different config: "
                       "delete it or use another --workdir-root")
            return out
    if results.exists() and config.exists() \
            and results.stat().st_mtime_ns >= config.stat().st_mtime_ns:
        out["state"] = "finished"
        return out
    status = read_status(workdir)
    if status.get("state") == "running":
        out["state"] = "running" if _alive(status.get("pid")) else "interrupted"
    elif status.get("state") == "failed":
        out.update(state="failed", error=status.get("error", ""))
    elif workdir.exists() and (config.exists() or log.exists()):
        out["state"] = "interrupted"
    return out


# A traceback's last line, or the one line main prints for a user error.
_ERROR_LINE = re.compile(r"^([\w.]+(Error|Exception|Exit|Interrupt)|pdiff_jax: error|FATAL|Fatal|"
                         r"Killed)\b")


def last_error_line(log_path, max_bytes: int = 200_000) -> str:
    """The last line of a log that names an error (a traceback's last line), else its last line."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    # Progress bars rewrite a line with '\r': keep what a terminal would show last.
    lines = [ln.rsplit("\r", 1)[-1].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line
    return lines[-1] if lines else ""


# ----------------------------------------------------------------------------- running


def _release_stale_workdir(job: Job) -> None:
    # A run that stopped before producing artifacts (e.g. a bad override) may be taken
    # over by a corrected config, as the pipeline allows. Its config and log are moved
    # aside (hidden names), else the pipeline would count the log as work and refuse.
    for name in (artifacts.CONFIG_JSON, LOG_FILE):
        if (job.workdir / name).exists():
            (job.workdir / name).replace(job.workdir / f".{name}.previous")


def _start(job: Job, slot: Slot, attempt: int, base_env: Mapping[str, str]):
    job.workdir.mkdir(parents=True, exist_ok=True)
    if job.expected_config is not None and (job.workdir / artifacts.CONFIG_JSON).exists() \
            and not _holds_artifacts(job.workdir):
        try:
            if json.loads((job.workdir / artifacts.CONFIG_JSON).read_text()) != job.expected_config:
                _release_stale_workdir(job)
        except ValueError:
            pass
    log = open(job.workdir / LOG_FILE, "a")
    log.write(f"==== attempt {attempt} at {time.strftime('%Y-%m-%d %H:%M:%S')} "
              f"({slot.describe()}): {' '.join(job.argv)}\n")
    log.flush()
    cpus = slot.cpus
    pin = cpus is not None and hasattr(os, "sched_setaffinity")
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if pin else None
    proc = subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT,
                            env={**base_env, **slot.env}, preexec_fn=preexec)
    return proc, log


def _next_job(pending: deque, active_keys: set, donors: Callable[[], list]):
    """The first pending job that may start now, its zoo linked in if one is finished
    elsewhere; a job whose zoo another active job is still collecting waits.
    Returns ``(job, donor workdir or None)`` or ``(None, None)``."""
    finished = None
    for job in list(pending):
        if job.zoo_key is None or finished_zoo(job.workdir):
            pending.remove(job)
            return job, None
        if finished is None:
            finished = donors()
        donor = next((w for k, w in finished if k == job.zoo_key and w != job.workdir), None)
        if donor is not None:
            link_zoo(donor, job.workdir)
            pending.remove(job)
            return job, donor
        if job.zoo_key not in active_keys:
            pending.remove(job)
            return job, None
    return None, None


def run_jobs(jobs: Sequence[Job], slots: Sequence[Slot], *,
             say: Callable[[str], None] = print,
             env: Mapping[str, str] | None = None,
             donors: Callable[[], list] = list, poll_s: float = 2.0) -> dict[str, dict]:
    """Run ``jobs`` with at most ``len(slots)`` at once; returns ``{name: outcome}``.

    An outcome has state ('finished' or 'failed'), returncode, wall_s, max_rss_mb
    (this attempt's peak resident memory, from ``wait4``), log and error (the log's
    last error line). A failed job never stops the others.

    ``donors()`` lists ``(zoo key, workdir)`` of finished zoos (``zoo_donors``): a job
    with a matching ``zoo_key`` starts from a link to that zoo; while another running
    job collects its zoo, it waits (other jobs go first), polling every ``poll_s``.
    """
    base_env = dict(os.environ if env is None else env)
    pending = deque(jobs)
    free = list(range(len(slots)))
    active: dict[int, tuple] = {}
    outcomes: dict[str, dict] = {}
    try:
        while pending or active:
            while pending and free:
                active_keys = {entry[0].zoo_key for entry in active.values()}
                job, donor = _next_job(pending, active_keys, donors)
                if job is None:
                    break
                job.zoo_from = donor
                slot_index = free.pop(0)
                status = read_status(job.workdir)
                attempts = list(status.get("attempts", []))
                proc, log = _start(job, slots[slot_index], len(attempts) + 1, base_env)
                started = time.time()
                _write_status(job.workdir, {"state": "running", "pid": proc.pid,
                                            "started": started, "argv": job.argv,
                                            "attempts": attempts,
                                            **({"zoo_from": str(donor)} if donor else {})})
                active[proc.pid] = (job, slot_index, proc, log, started, attempts)
                shared = f"; zoo linked from {donor}" if donor else ""
                say(f"started  {job.name} ({slots[slot_index].describe()}); "
                    f"log {job.workdir / LOG_FILE}{shared}")
            # Wait for a job to end; while jobs wait for a zoo, look again every poll_s.
            pid, wait_status, usage = os.wait4(-1, os.WNOHANG if pending and free else 0)
            if pid == 0:
                time.sleep(poll_s)
                continue
            if pid not in active:
                continue
            job, slot_index, proc, log, started, attempts = active.pop(pid)
            proc.returncode = os.waitstatus_to_exitcode(wait_status)
            log.close()
            free.append(slot_index)
            outcome = _outcome(job, proc.returncode, time.time() - started,
                               usage.ru_maxrss / 1024)   # ru_maxrss is in KiB on Linux
            attempts.append({k: outcome[k] for k in ("returncode", "wall_s", "max_rss_mb")}
                            | {"started": started}
                            | ({"zoo_from": str(job.zoo_from)} if job.zoo_from else {}))
            _write_status(job.workdir, {"state": outcome["state"], "error": outcome["error"],
                                        "argv": job.argv, "attempts": attempts})
            outcomes[job.name] = outcome
            if outcome["state"] == "finished":
                say(f"finished {job.name} in {outcome['wall_s']:.0f} s "
                    f"(peak RSS {outcome['max_rss_mb']:.0f} MB)")
            else:
                say(f"FAILED   {job.name} (exit {proc.returncode}): {outcome['error']}\n"
                    f"         log: {outcome['log']}")
    except BaseException:   # Ctrl-C or a bug: stop the children, record them as interrupted
        for entry in active.values():
            entry[2].terminate()
        for job, _, proc, log, _, attempts in active.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            _write_status(job.workdir, {"state": "failed", "error": "interrupted",
                                        "argv": job.argv, "attempts": attempts})
        raise
    return outcomes


def _outcome(job: Job, returncode: int, wall_s: float, max_rss_mb: float) -> dict:
    log = job.workdir / LOG_FILE
    state = run_state(job.workdir, job.expected_config)["state"] if returncode == 0 else "failed"
    error = ""
    if returncode != 0:
        error = last_error_line(log) or f"exit code {returncode}"
    elif state != "finished":
        state, error = "failed", "exited 0 but wrote no results.json (were --stages restricted?)"
    return {"state": state, "returncode": returncode, "wall_s": round(wall_s, 1),
            "max_rss_mb": round(max_rss_mb, 1), "log": str(log), "error": error}
