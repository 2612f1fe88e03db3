#!/usr/bin/python3
"""A programmable SMTP server for rampmail's tests, built on aiosmtpd.

It listens on one loopback address, stores every transaction it accepts
in a maildir-like folder and can be told to misbehave in the ways a real
relay does: refuse a sender or a recipient, refuse the message after the
final dot, greet late or never, drop the connection during or after DATA.

Stored files, numbered from 0001 in the order transactions are accepted:

  DIR/NNNN.eml   the DATA bytes exactly as received: dot-unstuffed, CRLF
                 kept, without the terminating ".\\r\\n"
  DIR/NNNN.json  {"mail_from", "rcpt_tos", "mail_options", "rcpt_options",
                  "peer": [host, port], "session", "helo", "smtputf8",
                  "size", "reply"}; reply is the reply sent after the
                 final dot, or null with --drop-after-dot

The .json file is written last, each file through a rename, so a reader
that sees NNNN.json can read NNNN.eml whole.

The log (--log) gets one line per SMTP command received:
"SESSION COMMAND [ARGUMENT]", SESSION counting connections from 1.

Exit status: 0 after SIGTERM or SIGINT, or after --max-messages
transactions once their connections have closed; 2 for a bad option.
"""

import argparse
import asyncio
import functools
import json
import os
import re
import signal
import sys

from aiosmtpd.smtp import SMTP

REPLY_RE = re.compile(r"^[2-5][0-9][0-9]( .*)?$")
DEFAULT_SIZE_LIMIT = 33554432
DRAIN_SECONDS = 10


def reply_arg(text):
    """Checks a 'CODE TEXT' option value."""
    if not REPLY_RE.match(text):
        raise argparse.ArgumentTypeError(f"not an SMTP reply: {text!r}")
    return text


def rcpt_reply_arg(text):
    """Splits an 'ADDR=CODE TEXT' option value."""
    addr, sep, reply = text.partition("=")
    if not sep or not addr:
        raise argparse.ArgumentTypeError(f"expected ADDR=CODE TEXT: {text!r}")
    return addr.lower(), reply_arg(reply)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Programmable SMTP server for rampmail's tests.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0,
                   help="port to listen on; 0 picks a free one (default)")
    p.add_argument("--port-file", metavar="PATH",
                   help="write the port here once listening")
    p.add_argument("--maildir", metavar="DIR",
                   help="store accepted transactions here")
    p.add_argument("--log", metavar="PATH",
                   help="append one line per SMTP command received")
    p.add_argument("--rcpt-reply", metavar="ADDR=CODE TEXT", action="append",
                   type=rcpt_reply_arg, default=[],
                   help="answer RCPT for ADDR with this reply (repeatable)")
    p.add_argument("--mail-reply", metavar="CODE TEXT", type=reply_arg,
                   help="answer every MAIL with this reply")
    p.add_argument("--data-reply", metavar="CODE TEXT", type=reply_arg,
                   help="reply this after the final dot instead of 250")
    p.add_argument("--greeting-reply", metavar="CODE TEXT", type=reply_arg,
                   help="greet with this reply instead of 220, then answer "
                        "503 to everything but QUIT (421 closes at once)")
    p.add_argument("--greeting-delay", metavar="SECONDS", type=float,
                   default=0.0, help="wait before sending the greeting")
    p.add_argument("--silent", action="store_true",
                   help="accept connections but never send the greeting")
    p.add_argument("--drop-after-dot", action="store_true",
                   help="close the connection after the final dot, "
                        "without replying (the message is stored)")
    p.add_argument("--drop-in-data", action="store_true",
                   help="close the connection after the first line of "
                        "DATA (nothing is stored)")
    p.add_argument("--no-8bitmime", action="store_true",
                   help="do not offer 8BITMIME")
    p.add_argument("--smtputf8", action="store_true",
                   help="offer SMTPUTF8")
    p.add_argument("--pipelining", action="store_true",
                   help="offer PIPELINING")
    p.add_argument("--size-limit", metavar="BYTES", type=int,
                   default=DEFAULT_SIZE_LIMIT,
                   help="SIZE offered and enforced; 0 for none "
                        f"(default {DEFAULT_SIZE_LIMIT})")
    p.add_argument("--max-messages", metavar="N", type=int, default=0,
                   help="exit after accepting N transactions")
    p.add_argument("--hostname", default="smtpd.test",
                   help="name in the greeting and EHLO reply")
    return p.parse_args(argv)


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


class Handler:
    """aiosmtpd hooks: the scripted replies, the store and the log."""

    def __init__(self, opts, done):
        self.opts = opts
        self.done = done
        self.rcpt_replies = dict(opts.rcpt_reply)
        self.sessions = 0
        self.stored = 0
        self.log = open(opts.log, "a", buffering=1) if opts.log else None

    def new_session(self):
        self.sessions += 1
        return self.sessions

    def log_command(self, session, command, arg):
        if self.log is None:
            return
        line = command if arg is None else f"{command} {arg}"
        line = line.encode("ascii", "backslashreplace").decode("ascii")
        self.log.write(f"{session} {line}\n")

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        session.host_name = hostname
        if self.opts.no_8bitmime:
            responses = [r for r in responses if r[4:] != "8BITMIME"]
        if self.opts.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, options):
        reply = self.opts.mail_reply
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return reply or "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        reply = self.rcpt_replies.get(address.lower())
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return reply or "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.opts.drop_after_dot:
            self.store(server, session, envelope, None)
            server.transport.close()
            await asyncio.Event().wait()
        reply = self.opts.data_reply
        if reply is not None and not reply.startswith("2"):
            return reply
        number = self.store(server, session, envelope, reply)
        return reply or f"250 OK queued as {number:04d}"

    def store(self, server, session, envelope, reply):
        self.stored += 1
        number = self.stored
        if self.opts.maildir:
            base = os.path.join(self.opts.maildir, f"{number:04d}")
            meta = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "mail_options": envelope.mail_options,
                "rcpt_options": envelope.rcpt_options,
                "peer": list(session.peer[:2]),
                "session": server.number,
                "helo": session.host_name,
                "smtputf8": envelope.smtp_utf8,
                "size": len(envelope.original_content),
                "reply": reply or (None if self.opts.drop_after_dot
                                   else f"250 OK queued as {number:04d}"),
            }
            write_atomic(base + ".eml", envelope.original_content)
            write_atomic(base + ".json",
                         (json.dumps(meta, indent=1) + "\n").encode())
        if self.opts.max_messages and number >= self.opts.max_messages:
            self.done.set()
        return number


class ScriptedSMTP(SMTP):
    """aiosmtpd's SMTP with a logged command table and the misbehaviours
    that need the protocol itself: late or no greeting, drop in DATA."""

    def __init__(self, handler, active, **kwargs):
        super().__init__(handler, **kwargs)
        self.handler = handler
        self.active = active
        self.number = 0
        self._smtp_methods = {
            name: self._logged(name, method)
            for name, method in self._smtp_methods.items()
        }

    def _logged(self, name, method):
        @functools.wraps(method)
        async def wrapper(arg):
            self.handler.log_command(self.number, name, arg)
            await method(arg)
        return wrapper

    def connection_made(self, transport):
        if self.number == 0:
            self.number = self.handler.new_session()
            self.active.add(self)
        super().connection_made(transport)

    def connection_lost(self, error):
        self.active.discard(self)
        super().connection_lost(error)

    async def _handle_client(self):
        opts = self.handler.opts
        if opts.silent:
            await asyncio.Event().wait()
        if opts.greeting_delay > 0:
            await asyncio.sleep(opts.greeting_delay)
        if opts.greeting_reply:
            await self.refuse_session(opts.greeting_reply)
            return
        await super()._handle_client()

    async def refuse_session(self, greeting):
        await self.push(greeting)
        while not greeting.startswith("421"):
            line = await self._reader.readline()
            if not line:
                break
            command, _, arg = line.strip().partition(b" ")
            command = command.decode("ascii", "replace").upper()
            self.handler.log_command(self.number, command,
                                     arg.decode("ascii", "replace") or None)
            if command == "QUIT":
                await self.push("221 Bye")
                break
            await self.push("503 5.5.1 Error: session refused")
        self.transport.close()

    async def smtp_DATA(self, arg):
        if not self.handler.opts.drop_in_data or not self.envelope.rcpt_tos:
            await super().smtp_DATA(arg)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            await self._reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as e:
            await self._reader.read(e.consumed)
        self.transport.abort()
        await asyncio.Event().wait()


async def drain(active):
    """Waits up to DRAIN_SECONDS for the open connections to close."""
    for _ in range(DRAIN_SECONDS * 10):
        if not active:
            return
        await asyncio.sleep(0.1)


async def serve(opts):
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    stop = asyncio.Event()
    active = set()
    handler = Handler(opts, done)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def factory():
        return ScriptedSMTP(handler, active, loop=loop,
                            hostname=opts.hostname, ident="rampmail-smtpd",
                            decode_data=False,
                            enable_SMTPUTF8=opts.smtputf8,
                            data_size_limit=opts.size_limit or None)

    server = await loop.create_server(factory, opts.host, opts.port)
    port = server.sockets[0].getsockname()[1]
    if opts.port_file:
        write_atomic(opts.port_file, f"{port}\n".encode())

    waiters = [asyncio.ensure_future(done.wait()),
               asyncio.ensure_future(stop.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    server.close()
    if not stop.is_set():
        await drain(active)
    for conn in list(active):
        if conn.transport is not None:
            conn.transport.abort()
    for w in waiters:
        w.cancel()
    await asyncio.sleep(0)


def main(argv):
    opts = parse_args(argv)
    if opts.maildir:
        os.makedirs(opts.maildir, exist_ok=True)
    asyncio.run(serve(opts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
