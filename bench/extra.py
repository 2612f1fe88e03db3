#!/usr/bin/python3
"""bench/extra.py: the measurements the shared harness does not make.

    bench/extra.py [--quick] [--only queue,large,conc,floor] [--out DIR]

As root, after the harness's setup.sh (bench/run.sh runs it): the Postfix
smtp-sink and rawsmtp/rsswrap it prepares are used here too.  Everything
listens on 127.0.0.1; every loop has a count and every wait a timeout;
only processes started here are stopped, by PID.

  queue  N (10,000; --quick 2,000) messages queued with -odq (4 submitters
         at a time), then `rampmail -q` delivers them to 3 smtp-sinks;
         compared with rawsmtp sending many messages over one connection
         (the harness's "persist" floor), measured here in the same run.
  large  50 and 100 MiB messages (the harness's make_large), -odi, under
         rsswrap: peak RSS, time, CPU; rawsmtp with the same file.
  conc   50 submitters at once, -odi and the default (background) mode,
         against 50 one after the other, 3 sinks: exit codes, messages
         delivered, the split over servers, lock errors in the log; and
         caps: each server allows 10 a day, 50 -odi at once must deliver
         exactly 10 per server and keep the other 20 queued.
  floor  empty C programs linked like rampmail (its DT_NEEDED set), like
         the smtp plugin, and like the -odi path (both), under callgrind;
         rampmail's own instructions per 4 KiB message (-odi, -odq,
         background) with --trace-children=yes, and where they go.

Results: DIR/extra.json and DIR/extra.md (default
/tmp/rampbench/results/extra-STAMP).
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.environ.get("BENCH_HARNESS") or os.path.normpath(
    os.path.join(HERE, "..", "..", "shared", "bench"))
sys.dont_write_bytecode = True
sys.path.insert(0, HARNESS)
sys.path.insert(1, HERE)
import bench as harness  # noqa: E402  (make_4k, make_large, summarize, free_port)
import adapters  # noqa: E402
import rampmail_adapters as rma  # noqa: E402

HOST = "127.0.0.1"
SENDER, RCPT = adapters.SENDER, adapters.RCPT
BINDIR = "/tmp/rampbench/bin"
WORK = "/tmp/rampbench/extra-work"
SINK = f"{adapters.POSTFIX_ROOT}/usr/sbin/smtp-sink"
SINK_ENV = {"LD_LIBRARY_PATH": f"{adapters.POSTFIX_ROOT}/usr/lib/postfix",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C",
       "USER": "root", "LOGNAME": "root"}


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def rss_of(path):
    try:
        with open(path) as f:
            return harness.parse_kv(f.read())
    except OSError:
        return {}


# ------------------------------------------------------------------ sinks

class Sinks:
    """n Postfix smtp-sinks on 127.0.0.1, each counting messages (-c)."""

    def __init__(self, n, tag):
        self.procs, self.ports, self.outs = [], [], []
        for i in range(n):
            port = harness.free_port()
            out = os.path.join(WORK, f"sink-{tag}-{i}.out")
            fo = open(out, "wb")
            p = subprocess.Popen([SINK, "-4", "-u", "nobody", "-c", "-m", "512",
                                  f"{HOST}:{port}", "1024"], env=SINK_ENV,
                                 stdout=fo, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            fo.close()
            self.procs.append(p)
            self.ports.append(port)
            self.outs.append(out)
        time.sleep(0.3)
        for p in self.procs:
            if p.poll() is not None:
                raise SystemExit(f"smtp-sink exited: see {self.outs}")

    def counts(self):
        c = []
        for out in self.outs:
            with open(out, "rb") as f:
                m = re.findall(rb"mesg=(\d+)", f.read())
            c.append(int(m[-1]) if m else 0)
        return c

    def wait_total(self, target, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if sum(self.counts()) >= target:
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def make_ctx(name, sinks, delivery_mode=None, server_extra=""):
    ctx = adapters.Ctx(name, WORK, BINDIR, HOST, sinks.ports[0], {})
    servers = [(f"s{i}", HOST, p) for i, p in enumerate(sinks.ports)]
    conf = rma.write_config(ctx, delivery_mode=delivery_mode, servers=servers)
    if server_extra:                      # add keys to every [server] group
        with open(conf) as f:
            text = f.read()
        text = re.sub(r"(\[server [^\]]+\]\n)", lambda m: m.group(1) + server_extra, text)
        with open(conf, "w") as f:
            f.write(text)
    return ctx, conf


def submit_argv(conf, extra=()):
    return [rma.binary(), "-C", conf] + list(extra) + ["-f", SENDER, RCPT]


def run_many(argv, msg, n, parallel, timeout):
    """n commands, `parallel` in flight.  (wall s, [exit codes], cpu s)."""
    inflight, codes, started = {}, [], 0
    cpu = 0.0
    t0 = time.monotonic()
    end = t0 + timeout
    while (started < n or inflight) and time.monotonic() < end:
        while started < n and len(inflight) < parallel:
            with open(msg, "rb") as fi:
                p = subprocess.Popen(argv, stdin=fi, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=ENV)
            inflight[p.pid] = p
            started += 1
        pid, st, ru = os.wait4(-1, 0)
        p = inflight.pop(pid, None)
        if p is None:
            continue                      # not ours to count (cannot happen here)
        p.returncode = os.waitstatus_to_exitcode(st)
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
        if err.strip():
            codes.append((p.returncode, err.strip()[:300]))
        else:
            codes.append((p.returncode, ""))
        cpu += ru.ru_utime + ru.ru_stime
    for pid, p in inflight.items():       # only when the timeout hit
        p.kill()
        p.wait()
        codes.append((-9, "killed: timeout"))
    return time.monotonic() - t0, codes, cpu


def runner_idle(ctx, timeout):
    """Wait until no rampmail queue runner holds runner.lock."""
    import fcntl
    lock = ctx.path("queue", "runner.lock")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not os.path.exists(lock):
            return True
        with open(lock, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                return True
            except BlockingIOError:
                pass
        time.sleep(0.02)
    return False


def queued(ctx):
    d = ctx.path("queue", "env")
    return len(os.listdir(d)) if os.path.isdir(d) else 0


def log_problems(ctx):
    try:
        with open(ctx.path("rampmail.log"), errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return {"lines": 0, "locked": 0, "warnings": 0, "examples": []}
    locked = [l for l in lines if re.search(r"database is locked|SQLITE_BUSY|busy=[1-9]", l, re.I)]
    bad = [l for l in lines if ": warning: " in l or ": error: " in l]
    return {"lines": len(lines), "locked": len(locked), "warnings": len(bad),
            "examples": [l.strip()[:200] for l in (locked + bad)[:5]]}


def rawsmtp_persist(port, msg, n, runs=3):
    out = []
    for _ in range(runs):
        t0 = time.monotonic()
        with open(msg, "rb") as fi:
            r = subprocess.run([os.path.join(BINDIR, "rawsmtp"), "-h", HOST, "-p", str(port),
                                "-n", str(n), "-f", SENDER, RCPT], stdin=fi,
                               capture_output=True, timeout=300)
        w = time.monotonic() - t0
        out.append({"msgs": n, "wall_s": w, "msgs_per_s": n / w, "status": r.returncode})
    return out


# ------------------------------------------------------------------ queue

def phase_queue(a, res):
    n = a.queue_msgs
    sinks = Sinks(3, "queue")
    try:
        ctx, conf = make_ctx("queue-run", sinks, delivery_mode="queue")
        log(f"queue: submitting {n} messages with -odq, 4 at a time")
        wall, codes, cpu = run_many(submit_argv(conf, ["-odq"]), a.msg4k, n, 4, a.timeout)
        fails = [c for c in codes if c[0] != 0]
        fill = {"msgs": n, "parallel": 4, "wall_s": wall, "msgs_per_s": n / wall,
                "cpu_ms_per_msg": 1e3 * cpu / n, "failures": len(fails),
                "failure_examples": fails[:3], "queued": queued(ctx)}
        log(f"queue: fill {fill['msgs_per_s']:.0f} msgs/s, {fill['cpu_ms_per_msg']:.2f} ms CPU/msg, "
            f"{fill['queued']} queued, {len(fails)} failures")
        rfile = os.path.join(WORK, "queue-run.rusage")
        t0 = time.monotonic()
        r = subprocess.run([os.path.join(BINDIR, "rsswrap"), "-o", rfile, rma.binary(), "-C", conf, "-q"],
                           env=ENV, capture_output=True, timeout=a.timeout)
        t1 = time.monotonic()
        ok = sinks.wait_total(n, 30)
        counts = sinks.counts()
        ru = rss_of(rfile)
        run = {"msgs": n, "status": r.returncode, "wall_s": t1 - t0, "msgs_per_s": n / (t1 - t0),
               "delivered": sum(counts), "per_server": counts, "all_delivered": ok,
               "left_in_queue": queued(ctx), "maxrss_kb": ru.get("maxrss_kb"),
               "cpu_ms_per_msg": 1e3 * (ru.get("user_s", 0) + ru.get("sys_s", 0)) / n,
               "stderr": r.stderr.decode(errors="replace")[:300], "log": log_problems(ctx)}
        log(f"queue: -q {run['msgs_per_s']:.0f} msgs/s, delivered {counts}, left {run['left_in_queue']}")
        floor = rawsmtp_persist(sinks.ports[0], a.msg4k, a.persist_msgs)
        fl = statistics.median(x["msgs_per_s"] for x in floor)
        log(f"queue: rawsmtp -n {a.persist_msgs}: {fl:.0f} msgs/s")
        res["queue"] = {"fill": fill, "run": run, "rawsmtp_one_connection": floor,
                        "rawsmtp_median_msgs_per_s": fl,
                        "ratio_to_rawsmtp": run["msgs_per_s"] / fl}
    finally:
        sinks.stop()
        shutil.rmtree(os.path.join(WORK, "peers", "queue-run", "queue"), ignore_errors=True)


# ------------------------------------------------------------------ large

def phase_large(a, res):
    sinks = Sinks(1, "large")
    out = {}
    try:
        for mib in a.large:
            path = os.path.join(harness_work(), f"msg-{mib}m.eml")
            if not (os.path.exists(path) and os.path.getsize(path) > mib * 1000 * 1000):
                log(f"large: generating {path}")
                harness.make_large(path, mib)
            ctx, conf = make_ctx(f"large-{mib}", sinks)
            rows = {"rampmail": [], "rawsmtp": []}
            for i in range(a.large_runs):
                for name in (["rampmail", "rawsmtp"] if i % 2 == 0 else ["rawsmtp", "rampmail"]):
                    if name == "rampmail":
                        argv = submit_argv(conf, ["-odi"])
                    else:
                        argv = [os.path.join(BINDIR, "rawsmtp"), "-h", HOST, "-p", str(sinks.ports[0]),
                                "-f", SENDER, RCPT]
                    rfile = os.path.join(WORK, "large.rusage")
                    before = sum(sinks.counts())
                    t0 = time.monotonic()
                    with open(path, "rb") as fi:
                        r = subprocess.run([os.path.join(BINDIR, "rsswrap"), "-o", rfile] + argv,
                                           stdin=fi, env=ENV, capture_output=True, timeout=600)
                    t1 = time.monotonic()
                    got = sinks.wait_total(before + 1, 60)
                    ru = rss_of(rfile)
                    rows[name].append({"status": r.returncode, "wall_s": t1 - t0, "delivered": got,
                                       "maxrss_kb": ru.get("maxrss_kb"),
                                       "cpu_s": ru.get("user_s", 0) + ru.get("sys_s", 0),
                                       "stderr": r.stderr.decode(errors="replace")[:200]})
                    log(f"large {mib} MiB {name}: {rows[name][-1]}")
            summ = {}
            for name, rs in rows.items():
                okr = [x for x in rs if x["status"] == 0 and x["delivered"]]
                summ[name] = {"runs": len(rs), "ok": len(okr),
                              "wall_s_median": statistics.median(x["wall_s"] for x in okr) if okr else None,
                              "maxrss_kb_max": max(x["maxrss_kb"] or 0 for x in okr) if okr else None,
                              "cpu_s_median": statistics.median(x["cpu_s"] for x in okr) if okr else None}
            if summ["rampmail"]["wall_s_median"] and summ["rawsmtp"]["wall_s_median"]:
                summ["time_ratio"] = summ["rampmail"]["wall_s_median"] / summ["rawsmtp"]["wall_s_median"]
            out[mib] = {"runs": rows, "summary": summ, "left_in_queue": queued(ctx),
                        "log": log_problems(ctx)}
    finally:
        sinks.stop()
    res["large"] = out


def harness_work():
    d = "/tmp/rampbench/work"            # where the harness keeps its messages
    os.makedirs(d, exist_ok=True)
    return d


# ------------------------------------------------------------------- conc

def phase_conc(a, res):
    n = a.conc_n
    out = {}
    sinks = Sinks(3, "conc")
    try:
        for mode, extra in (("odi", ["-odi"]), ("background", [])):
            for how, par in (("sequential", 1), ("concurrent", n)):
                ctx, conf = make_ctx(f"conc-{mode}-{how}", sinks,
                                     delivery_mode="interactive" if mode == "odi" else "background")
                before = sinks.counts()
                t0 = time.monotonic()
                wall_cmds, codes, cpu = run_many(submit_argv(conf, extra), a.msg4k, n, par, a.timeout)
                got = sinks.wait_total(sum(before) + n, 120)
                idle = runner_idle(ctx, 120)
                t_done = time.monotonic() - t0
                after = sinks.counts()
                split = [y - x for x, y in zip(before, after)]
                fails = [c for c in codes if c[0] != 0]
                warns = [c for c in codes if c[1]]
                row = {"msgs": n, "in_flight": par, "commands_wall_s": wall_cmds,
                       "done_wall_s": t_done, "msgs_per_s_done": n / t_done,
                       "exit_nonzero": len(fails), "stderr_lines": len(warns),
                       "stderr_examples": warns[:3], "delivered": sum(split), "per_server": split,
                       "all_delivered": got, "runner_idle": idle, "left_in_queue": queued(ctx),
                       "cpu_ms_per_msg_commands": 1e3 * cpu / n, "log": log_problems(ctx)}
                out[f"{mode}-{how}"] = row
                log(f"conc {mode} {how}: {row['msgs_per_s_done']:.1f} msgs/s, delivered {split}, "
                    f"nonzero {len(fails)}, locked {row['log']['locked']}, left {row['left_in_queue']}")
            s, c = out[f"{mode}-sequential"], out[f"{mode}-concurrent"]
            out[f"{mode}-ratio_conc_to_seq"] = c["msgs_per_s_done"] / s["msgs_per_s_done"]
        # caps: each server allows 10 today; 50 at once must give exactly 10/10/10
        ctx, conf = make_ctx("conc-caps", sinks, delivery_mode="interactive",
                             server_extra="warmup = ramp\nwarmup_schedule = 10\n")
        before = sinks.counts()
        t0 = time.monotonic()
        wall_cmds, codes, cpu = run_many(submit_argv(conf, ["-odi"]), a.msg4k, n, n, a.timeout)
        time.sleep(1)
        after = sinks.counts()
        split = [y - x for x, y in zip(before, after)]
        out["caps"] = {"msgs": n, "cap_per_server": 10, "per_server": split,
                       "exact": split == [10, 10, 10], "left_in_queue": queued(ctx),
                       "exit_nonzero": len([c for c in codes if c[0] != 0]),
                       "wall_s": time.monotonic() - t0, "log": log_problems(ctx)}
        log(f"conc caps: {split}, left {out['caps']['left_in_queue']}")
    finally:
        sinks.stop()
    res["conc"] = out


# ------------------------------------------------------------------ floor

def needed(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def callgrind(argv, d, stdin=None, trace_children=False, env=None):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/cg.%p",
          f"--log-file={d}/vg.%p.log", "--vgdb=no"]
    if trace_children:
        vg += ["--trace-children=yes", "--dump-before=*fork*"]
    fi = open(stdin, "rb") if stdin else subprocess.DEVNULL
    try:
        r = subprocess.run(vg + argv, stdin=fi, capture_output=True, timeout=600, env=env or ENV)
    finally:
        if stdin:
            fi.close()
    # A forked, detached child (the background queue runner) writes its
    # cg.PID file when it exits, after the command returned: wait for every
    # traced process (named by its vg.PID.log) to be gone.
    end = time.monotonic() + 120
    while time.monotonic() < end:
        pids = [n.split(".")[1] for n in os.listdir(d) if n.startswith("vg.")]
        if not any(os.path.exists(f"/proc/{p}") for p in pids):
            break
        time.sleep(0.05)
    return harness.sum_ir(d), r.returncode


def by_object(d):
    """Exclusive Ir per shared object over every cg.* file in d."""
    tot = {}
    for name in sorted(os.listdir(d)):
        if not name.startswith("cg."):
            continue
        out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", os.path.join(d, name)],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$", line)
            if not m or "PROGRAM TOTALS" in line:
                continue
            ir = int(m.group(1).replace(",", ""))
            obj = re.search(r"\[([^\]]+)\]\s*$", m.group(2))
            if obj:
                key = os.path.basename(obj.group(1))
            elif m.group(2).startswith("./elf/"):    # inlined into the dynamic linker
                key = "ld-linux-x86-64.so.2"
            else:
                key = "(inlined, object not named)"
            tot[key] = tot.get(key, 0) + ir
    return dict(sorted(tot.items(), key=lambda kv: -kv[1])[:15])


def top_functions(d, k=15):
    """Top inclusive functions of the largest cg.* file in d."""
    files = [os.path.join(d, n) for n in os.listdir(d) if n.startswith("cg.")]
    if not files:
        return []
    big = max(files, key=os.path.getsize)
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=yes", "--threshold=99", big],
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(.*)$", line)
        if m and "PROGRAM TOTALS" not in line:
            rows.append(f"{m.group(1)} ({m.group(2)}%) {m.group(3)[:110]}")
        if len(rows) >= k:
            break
    return rows


def phase_floor(a, res):
    build = os.path.join(WORK, "floors")
    os.makedirs(build, exist_ok=True)
    src = os.path.join(build, "empty.c")
    with open(src, "w") as f:
        f.write("int main(void) { return 0; }\n")
    binary = rma.binary()
    pdir = rma.plugin_dir()
    core = needed(binary)
    smtp = needed(os.path.join(pdir, "smtp.so"))
    bal = needed(os.path.join(pdir, "balanced.so"))

    def libs(names):
        out = []
        for n in names:
            m = re.match(r"lib(.+)\.so", n)
            if m and m.group(1) != "c":
                out.append("-l:" + n)
        return out
    sets = {
        "none": [],
        "rampmail (its DT_NEEDED)": core,
        "rampmail without gmime/gobject": [x for x in core if "gmime" not in x and "gobject" not in x],
        "smtp plugin (its DT_NEEDED)": smtp,
        "-odi path: rampmail + smtp + balanced": list(dict.fromkeys(core + smtp + bal)),
    }
    floors = {}
    for label, names in sets.items():
        exe = os.path.join(build, re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_"))
        subprocess.run(["gcc", "-O2", "-o", exe, src, "-Wl,--no-as-needed"] + libs(names),
                       check=True)
        ir, st = callgrind([exe], exe + ".cg")
        floors[label] = {"libs": names, "ir": ir}
        log(f"floor {label}: {ir:,} Ir")
    res["floors"] = floors

    # rampmail itself, one 4 KiB message, after one warm-up run (state db exists)
    sinks = Sinks(1, "ir")
    ir = {}
    try:
        for mode, extra, dm in (("odi", ["-odi"], "interactive"), ("odq", ["-odq"], "queue"),
                                ("background", [], "background")):
            ctx, conf = make_ctx(f"ir-{mode}", sinks, delivery_mode=dm)
            with open(a.msg4k, "rb") as fi:
                subprocess.run(submit_argv(conf, extra), stdin=fi, env=ENV, timeout=60)
            runner_idle(ctx, 30)
            runs = []
            for i in range(a.ir_runs):
                d = os.path.join(WORK, f"cg-{mode}-{i}")
                n, st = callgrind(submit_argv(conf, extra), d, stdin=a.msg4k, trace_children=True)
                runner_idle(ctx, 60)
                runs.append(n if st == 0 else None)
            ok = [x for x in runs if x]
            ir[mode] = {"runs": runs, "median": statistics.median(ok) if ok else None,
                        "by_object": by_object(d), "top_inclusive": top_functions(d)}
            log(f"ir {mode}: {ir[mode]['median']}")
        ir["msmtp_baseline"] = 9651778
    finally:
        sinks.stop()
    res["ir"] = ir
    odi_floor = floors["-odi path: rampmail + smtp + balanced"]["ir"]
    if ir["odi"]["median"]:
        res["ir_ratio_to_path_floor"] = ir["odi"]["median"] / odi_floor


# ----------------------------------------------------------------- report

def fmt(x, nd=2):
    return harness.fmt(x, nd)


def report(res, path):
    L = [f"# bench/extra.py, {res['started']} to {res.get('finished')}", "",
         f"Command: `{res['command']}`  ", f"Load average at start {res['load_start']}, "
         f"at end {res.get('load_end')}", ""]
    q = res.get("queue")
    if q:
        f, r = q["fill"], q["run"]
        L += ["## queue run", "",
              f"- fill: {f['msgs']:,} × `-odq`, 4 at a time: {fmt(f['msgs_per_s'])} msgs/s, "
              f"{fmt(f['cpu_ms_per_msg'])} ms CPU/msg, {f['failures']} failures, {f['queued']:,} queued",
              f"- `rampmail -q` to 3 sinks: {fmt(r['wall_s'])} s, {fmt(r['msgs_per_s'])} msgs/s, "
              f"{fmt(r['cpu_ms_per_msg'], 3)} ms CPU/msg, peak RSS {fmt(r['maxrss_kb'])} KiB, "
              f"delivered {r['delivered']:,} ({r['per_server']}), left in queue {r['left_in_queue']}, "
              f"exit {r['status']}, log: {r['log']['warnings']} warnings, {r['log']['locked']} lock lines",
              f"- rawsmtp, {q['rawsmtp_one_connection'][0]['msgs']:,} msgs over one connection: "
              + ", ".join(fmt(x["msgs_per_s"]) for x in q["rawsmtp_one_connection"])
              + f" msgs/s (median {fmt(q['rawsmtp_median_msgs_per_s'])})",
              f"- ratio rampmail -q / rawsmtp: **{q['ratio_to_rawsmtp']:.3f}** (target ≥ 0.5)", ""]
    lg = res.get("large")
    if lg:
        L += ["## large messages (-odi, under rsswrap)", "",
              "| MiB | subject | ok | time s median | peak RSS KiB | CPU s median | time ×rawsmtp |",
              "|---|---|---|---|---|---|---|"]
        for mib, x in lg.items():
            for name in ("rampmail", "rawsmtp"):
                s = x["summary"][name]
                L.append(f"| {mib} | {name} | {s['ok']}/{s['runs']} | {fmt(s['wall_s_median'])} | "
                         f"{fmt(s['maxrss_kb_max'])} | {fmt(s['cpu_s_median'])} | "
                         f"{fmt(x['summary'].get('time_ratio')) if name == 'rampmail' else ''} |")
        L.append("")
    c = res.get("conc")
    if c:
        L += ["## 50 submitters", "",
              "| mode | in flight | msgs/s (until all delivered) | commands s | exit≠0 | delivered | split | "
              "left | lock lines | log warnings | CPU ms/msg (commands) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for k, x in c.items():
            if not isinstance(x, dict) or "in_flight" not in x:
                continue
            L.append(f"| {k} | {x['in_flight']} | {fmt(x['msgs_per_s_done'])} | {fmt(x['commands_wall_s'])} | "
                     f"{x['exit_nonzero']} | {x['delivered']} | {x['per_server']} | {x['left_in_queue']} | "
                     f"{x['log']['locked']} | {x['log']['warnings']} | {fmt(x['cpu_ms_per_msg_commands'])} |")
        L.append("")
        for mode in ("odi", "background"):
            if f"{mode}-ratio_conc_to_seq" in c:
                L.append(f"- {mode}: concurrent / sequential throughput **{c[f'{mode}-ratio_conc_to_seq']:.2f}**")
        cp = c.get("caps")
        if cp:
            L.append(f"- caps (10 per server, 50 at once, -odi): delivered {cp['per_server']}, exact: "
                     f"{cp['exact']}, left queued {cp['left_in_queue']}, exit≠0 {cp['exit_nonzero']}, "
                     f"lock lines {cp['log']['locked']}")
        L.append("")
    fl = res.get("floors")
    if fl:
        L += ["## instruction floors (empty program, callgrind)", "", "| linked like | Ir | libraries |",
              "|---|---|---|"]
        for k, x in fl.items():
            L.append(f"| {k} | {x['ir']:,} | {' '.join(x['libs'])} |")
        L.append("")
        ir = res.get("ir", {})
        L += ["## rampmail, instructions per 4 KiB message (callgrind --trace-children=yes)", "",
              "| mode | Ir median | runs |", "|---|---|---|"]
        for mode in ("odi", "odq", "background"):
            if mode in ir:
                L.append(f"| {mode} | {fmt(ir[mode]['median'])} | {ir[mode]['runs']} |")
        if res.get("ir_ratio_to_path_floor"):
            L.append(f"\n-odi / floor of its path: **{res['ir_ratio_to_path_floor']:.2f}** (target ≤ 1.3); "
                     f"/ msmtp's 9,651,778: {ir['odi']['median'] / 9651778:.2f}")
        for mode in ("odi",):
            if mode in ir:
                L += ["", f"{mode}: exclusive Ir by object:", ""]
                L += [f"- {k}: {v:,}" for k, v in ir[mode]["by_object"].items()]
                L += ["", f"{mode}: top inclusive (largest process):", ""]
                L += [f"    {r}" for r in ir[mode]["top_inclusive"]]
        L.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(L) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="queue,large,conc,floor")
    ap.add_argument("--out", default=None)
    ap.add_argument("--queue-msgs", type=int, default=None)
    ap.add_argument("--timeout", type=int, default=900, help="cap of each step, seconds")
    a = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("run as root (smtp-sink -u nobody needs it)")
    for tool in ("rawsmtp", "rsswrap"):
        if not os.access(os.path.join(BINDIR, tool), os.X_OK):
            raise SystemExit(f"{BINDIR}/{tool} missing: run ../shared/bench/setup.sh (bench/run.sh does)")
    if not os.path.exists(SINK):
        raise SystemExit(f"{SINK} missing: run ../shared/bench/setup.sh")
    a.queue_msgs = a.queue_msgs or (2000 if a.quick else 10000)
    a.persist_msgs = 2000
    a.large = [20] if a.quick else [50, 100]
    a.large_runs = 2 if a.quick else 3
    a.conc_n = 50
    a.ir_runs = 1 if a.quick else 3
    only = set(a.only.split(","))
    a.out = a.out or os.path.join("/tmp/rampbench/results", "extra-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(WORK, exist_ok=True)
    a.msg4k = os.path.join(WORK, "msg-4k.eml")
    harness.make_4k(a.msg4k)
    res = {"command": " ".join([sys.executable] + sys.argv), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "load_start": open("/proc/loadavg").read().strip(), "binary": rma.binary(),
           "machine": harness.machine_info()}
    try:
        for name, fn in (("queue", phase_queue), ("large", phase_large), ("conc", phase_conc),
                         ("floor", phase_floor)):
            if name in only:
                log(f"phase {name}")
                t0 = time.monotonic()
                fn(a, res)
                res.setdefault("phase_wall_s", {})[name] = time.monotonic() - t0
                with open(os.path.join(a.out, "extra.json"), "w") as f:
                    json.dump(res, f, indent=1, default=str)
    finally:
        res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        res["load_end"] = open("/proc/loadavg").read().strip()
        with open(os.path.join(a.out, "extra.json"), "w") as f:
            json.dump(res, f, indent=1, default=str)
        report(res, os.path.join(a.out, "extra.md"))
        log(f"results in {a.out}")


if __name__ == "__main__":
    main()
