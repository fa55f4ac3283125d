"""Running a suite's jobs (pdiff_jax.suites.runner): each run's state from its workdir,
the last error line of its log, a failed run reported while the others finish pinned to
their CPUs, and runs that share a zoo waiting for it."""

import json
import os
import sys

from pdiff_jax.suites import placement as suite_placement
from pdiff_jax.suites import runner as suite_runner


def test_run_state_sees_stale_and_takeover_workdirs(tmp_path):
    held = tmp_path / "held"
    (held / "zoo").mkdir(parents=True)
    (held / "config.json").write_text('{"a": 1}')
    (held / "results.json").write_text("{}")
    assert suite_runner.run_state(held, {"a": 1})["state"] == "finished"
    assert suite_runner.run_state(held, {"a": 2})["state"] == "stale"
    empty = tmp_path / "empty"   # stopped before any artifact: a new config may take it over
    empty.mkdir()
    (empty / "config.json").write_text('{"a": 1}')
    (empty / suite_runner.LOG_FILE).write_text("ValueError: bad\n")
    assert suite_runner.run_state(empty, {"a": 2})["state"] == "interrupted"
    assert suite_runner.run_state(tmp_path / "never", {"a": 2})["state"] == "pending"
    busy = tmp_path / "busy"   # another invocation's live process: not to be started again
    busy.mkdir()
    (busy / suite_runner.STATUS_FILE).write_text(json.dumps({"state": "running",
                                                              "pid": os.getpid()}))
    assert suite_runner.run_state(busy)["state"] == "running"
    (busy / suite_runner.STATUS_FILE).write_text(json.dumps({"state": "running", "pid": -5}))
    assert suite_runner.run_state(busy)["state"] == "interrupted"


def test_last_error_line_finds_the_traceback_end_past_progress_bars(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("I1127 main.py] workdir\nTraceback (most recent call last):\n"
                   '  File "x.py", line 1\npdiff_jax.params.subset.SubsetError: no variable\n'
                   "step 1/2\rstep 2/2\n\n")
    assert suite_runner.last_error_line(log) == "pdiff_jax.params.subset.SubsetError: no variable"
    log.write_text("only\rlast words\n")
    assert suite_runner.last_error_line(log) == "last words"


def test_a_failed_run_is_reported_and_the_other_finishes_pinned(tmp_path):
    cpu = min(os.sched_getaffinity(0))
    finish = ("import json, os, pathlib, time; w = pathlib.Path(os.environ['W']); "
              "(w / 'config.json').write_text('{}'); time.sleep(0.05); "
              "(w / 'results.json').write_text('{}'); "
              "print('affinity', sorted(os.sched_getaffinity(0)))")
    fail = "print('working'); raise ValueError('boom: bad override')"
    jobs = [suite_runner.Job("bad", [sys.executable, "-c", fail], tmp_path / "bad"),
            suite_runner.Job("ok", [sys.executable, "-c", finish], tmp_path / "ok")]
    said = []
    outcomes = suite_runner.run_jobs(jobs, [suite_placement.Slot(cpus=(cpu,)),
                                            suite_placement.Slot(cpus=(cpu,))],
                                     say=said.append, env={**os.environ, "W": str(tmp_path / "ok")})
    assert outcomes["bad"]["state"] == "failed" and outcomes["bad"]["returncode"] == 1
    assert outcomes["bad"]["error"] == "ValueError: boom: bad override"
    assert outcomes["bad"]["log"] == str(tmp_path / "bad" / "run.log")
    assert outcomes["ok"]["state"] == "finished" and outcomes["ok"]["max_rss_mb"] > 1
    assert f"affinity [{cpu}]" in (tmp_path / "ok" / "run.log").read_text()
    assert any("FAILED   bad" in m and "boom" in m for m in said)
    assert suite_runner.run_state(tmp_path / "bad")["state"] == "failed"
    assert suite_runner.read_status(tmp_path / "ok")["attempts"][0]["returncode"] == 0


def test_runs_with_the_same_zoo_wait_for_it_and_start_from_a_link(tmp_path):
    """'first' collects a zoo slowly; 'second' (same key) must not start until it exists and
    must find it linked in; 'other' (another key) starts at once in the free slot."""
    script = (
        "import json, os, pathlib, sys, time\n"
        "w = pathlib.Path(sys.argv[1]); zoo = w / 'zoo'\n"
        "log = {'had_zoo': zoo.is_dir(), 'start': time.time()}\n"
        "(w / 'config.json').write_text(json.dumps({'zoo': sys.argv[2]}))\n"
        "if not zoo.is_dir():\n"
        "    time.sleep(1.0); tmp = w / '.zoo.partial'; (tmp / 'arrays').mkdir(parents=True)\n"
        "    (tmp / 'arrays' / 'data').write_text('zoo of ' + str(w)); (tmp / 'meta.json')"
        ".write_text('{}')\n"
        "    os.replace(tmp, zoo)\n"
        "(w / 'trace.json').write_text(json.dumps(log)); time.sleep(0.05)\n"
        "(w / 'results.json').write_text('{}')\n")

    def job(name, key):
        w = tmp_path / "suite" / name
        return suite_runner.Job(name, [sys.executable, "-c", script, str(w), key], w,
                                zoo_key=key)

    jobs = [job("first", "A"), job("second", "A"), job("other", "B")]
    said = []
    donors = lambda: [(json.loads((w / "config.json").read_text())["zoo"], w)
                      for w in (tmp_path / "suite").glob("*")
                      if (w / "zoo" / "meta.json").is_file()]
    outcomes = suite_runner.run_jobs(jobs, [suite_placement.Slot(), suite_placement.Slot()],
                                     say=said.append, donors=donors, poll_s=0.1)
    assert all(o["state"] == "finished" for o in outcomes.values()), outcomes
    trace = {n: json.loads((tmp_path / "suite" / n / "trace.json").read_text())
             for n in ("first", "second", "other")}
    assert not trace["first"]["had_zoo"] and not trace["other"]["had_zoo"]
    assert trace["second"]["had_zoo"]
    assert trace["other"]["start"] < trace["second"]["start"]   # did not wait behind it
    linked = tmp_path / "suite" / "second" / "zoo" / "arrays" / "data"
    first = tmp_path / "suite" / "first" / "zoo" / "arrays" / "data"
    assert linked.read_text() == f"zoo of {tmp_path / 'suite' / 'first'}"
    assert os.stat(linked).st_ino == os.stat(first).st_ino        # a hard link, not a copy
    status = suite_runner.read_status(tmp_path / "suite" / "second")
    assert status["attempts"][0]["zoo_from"] == str(tmp_path / "suite" / "first")
    assert any("zoo linked from" in m for m in said)
