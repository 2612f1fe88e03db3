"""rampmail as subjects of the shared benchmark harness (../shared/bench).

This module registers more adapters in the harness's own `adapters`
module (the `@adapter("name")` pattern of its README, "Adding a
subject"); it copies nothing from the harness.  It must be imported
after the harness directory is on sys.path, so that `import adapters`
finds the very module bench.py uses (bench/launch.py does that).

Subjects (every one: `warmup = none`, `tls = none`, no auth, a fresh
queue and state under the harness's per-subject directory, plugins from
the build tree, `domain`/`hostname` fixed so no resolver is asked):

  rampmail      -odi: the command delivers before it exits (like msmtp).
  rampmail-bg   the default mode (background): the command commits and
                forks a queue runner if none is at work, then returns; the
                runner (reparented to the harness, a subreaper) delivers,
                and its CPU is charged to the subject.  queued=True.
  rampmail-odq  -odq: commit only, nothing is delivered (delivers=False):
                the figure is the queue-only submission, to compare with
                the queueing peers' submission.  Queue runs over many
                queued messages are measured by bench/extra.py.

Environment: RAMPMAIL (the binary, default /tmp/build-bench/rampmail),
RAMPMAIL_PLUGIN_DIR (default: plugins/.libs next to the binary).
"""

import os
import shutil

import adapters  # the harness's module: bench.py has put its folder on sys.path
from adapters import Peer, adapter, need

DEFAULT_BINARY = "/tmp/build-bench/rampmail"


def binary():
    return os.environ.get("RAMPMAIL", DEFAULT_BINARY)


def plugin_dir():
    return os.environ.get("RAMPMAIL_PLUGIN_DIR",
                          os.path.join(os.path.dirname(binary()), "plugins", ".libs"))


def write_config(ctx, delivery_mode=None, host=None, port=None, servers=None):
    """A fresh queue and state under ctx.path(); returns the config path.

    servers: list of (name, host, port); default one server, the sink."""
    for d in ("queue", "state"):
        shutil.rmtree(ctx.path(d), ignore_errors=True)
        os.makedirs(ctx.path(d))
    log = ctx.path("rampmail.log")
    if os.path.exists(log):
        os.unlink(log)
    if servers is None:
        servers = [("sink", host or ctx.host, port or ctx.port)]
    mode = f"delivery_mode = {delivery_mode}\n" if delivery_mode else ""
    text = f"""[rampmail]
queue_dir = {ctx.path("queue")}
state_dir = {ctx.path("state")}
plugin_dir = {plugin_dir()}
log_file = {log}
domain = bench.example.org
hostname = bench.example.org
selector = balanced
warmup = none
{mode}"""
    for name, h, p in servers:
        text += f"""
[server {name}]
host = {h}
port = {p}
tls = none
"""
    return ctx.write("rampmail.conf", text)


def _peer(ctx, conf, extra_argv, **kw):
    b = need(binary())
    need(os.path.join(plugin_dir(), "smtp.so"))
    return Peer(argv=[b, "-C", conf] + extra_argv, env={"HOME": ctx.path()},
                version=ctx.cmd_version([b, "--version"]), **kw)


@adapter("rampmail")
def rampmail(ctx):
    conf = write_config(ctx)
    return _peer(ctx, conf, ["-odi"], queued=False,
                 notes="-odi (interactive): delivers before it exits; durable commit first; "
                       "warmup=none, tls=none, fresh queue and state")


@adapter("rampmail-bg")
def rampmail_bg(ctx):
    conf = write_config(ctx, delivery_mode="background")
    return _peer(ctx, conf, [], queued=True,
                 # the runner removes env/ID after the server's 250: the harness
                 # waits for that before the next subject runs
                 queue_dir=ctx.path("queue", "env"),
                 notes="default mode (background): commits, forks a queue runner if none "
                       "holds runner.lock, returns; the runner waits 0.3 s for more mail, "
                       "delivers over one session and exits")


@adapter("rampmail-odq")
def rampmail_odq(ctx):
    conf = write_config(ctx, delivery_mode="queue")
    return _peer(ctx, conf, ["-odq"], queued=True, delivers=False,
                 notes="-odq: durable commit only; nothing is delivered in the harness "
                       "(bench/extra.py times queue runs)")


__all__ = ["adapters", "write_config", "binary", "plugin_dir"]
