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
                  "size", "reply", "tls", "auth_user"}; reply is the
                 reply sent after the final dot, or null with
                 --drop-after-dot; tls is the TLS version or null;
                 auth_user the AUTH login or null

The .json file is written last, each file through a rename, so a reader
that sees NNNN.json can read NNNN.eml whole.

The log (--log) gets one line per SMTP command received:
"SESSION COMMAND [ARGUMENT]", SESSION counting connections from 1 (AUTH
is logged with its mechanism only, never the credentials). It also gets
"SESSION TLS sni=NAME version=VERSION cipher=CIPHER" once a TLS handshake
completes (sni=none when the client sent none), "SESSION AUTH ok USER"
or "SESSION AUTH failed USER" after each AUTH exchange, and
"SESSION GREETING CODE TEXT" when --greeting-reply (or --gmail-throttle)
refuses the session.

TLS and AUTH: --tls-cert and --tls-key name the server's certificate and
key; with --starttls the server offers STARTTLS (--require-starttls
refuses MAIL and the like before it), with --implicit-tls it speaks TLS
from the first byte (SMTPS). --auth USER:PASS offers AUTH PLAIN LOGIN
(after STARTTLS on a --starttls server) and requires it for MAIL
unless --auth-optional.

Gmail: --gmail-auth, --gmail-limit, --gmail-throttle and --gmail-logins
answer as smtp.gmail.com does in those situations, with its reply codes,
enhanced status codes and texts.

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
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

REPLY_RE = re.compile(r"^[2-5][0-9][0-9]( .*)?$")
DEFAULT_SIZE_LIMIT = 33554432
DRAIN_SECONDS = 10
E1_PAUSE_SECONDS = 0.2

# What smtp.gmail.com answers (the message ids at the end vary there).
GMAIL_REPLIES = {
    "badcredentials":
        "535-5.7.8 Username and Password not accepted. For more "
        "information, go to\r\n"
        "535 5.7.8  https://support.google.com/mail/?p=BadCredentials "
        "a1b2c3d4e5f6 - gsmtp",
    "apppassword":
        "534-5.7.9 Application-specific password required. For more "
        "information, go to\r\n"
        "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor "
        "a1b2c3d4e5f6 - gsmtp",
    "limit":
        "550-5.4.5 Daily user sending limit exceeded. For more information "
        "on Gmail\r\n"
        "550-5.4.5 sending limits go to\r\n"
        "550 5.4.5  https://support.google.com/a/answer/166852 "
        "a1b2c3d4e5f6 - gsmtp",
    "throttle":
        "421 4.7.0 Try again later, closing connection. "
        "a1b2c3d4e5f6 - gsmtp",
    "logins":
        "454 4.7.0 Too many login attempts, please try again later. "
        "a1b2c3d4e5f6 - gsmtp",
}


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


def auth_arg(text):
    """Splits a 'USER:PASS' option value."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError(f"expected USER:PASS: {text!r}")
    return user, password


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
    p.add_argument("--tls-cert", metavar="PEM",
                   help="the server's certificate (chain) for TLS")
    p.add_argument("--tls-key", metavar="PEM",
                   help="the private key of --tls-cert")
    p.add_argument("--starttls", action="store_true",
                   help="offer STARTTLS (needs --tls-cert, --tls-key)")
    p.add_argument("--require-starttls", action="store_true",
                   help="with --starttls: answer 530 to MAIL, RCPT and "
                        "the like before STARTTLS")
    p.add_argument("--implicit-tls", action="store_true",
                   help="TLS from the first byte, SMTPS (needs --tls-cert, "
                        "--tls-key)")
    p.add_argument("--tls13-tickets-pause", action="store_true",
                   help="with --starttls: allow TLS 1.3 (whose session "
                        "tickets come after the handshake) and wait "
                        f"{E1_PAUSE_SECONDS} s before the STARTTLS reply "
                        "(libesmtp-facts.md, E1)")
    p.add_argument("--auth", metavar="USER:PASS", type=auth_arg,
                   help="offer AUTH PLAIN LOGIN and accept this login; "
                        "MAIL needs AUTH first")
    p.add_argument("--auth-optional", action="store_true",
                   help="with --auth: accept MAIL without AUTH too, as a "
                        "relay that lets anybody send would")
    p.add_argument("--auth-mechanisms", metavar="LIST", default="PLAIN,LOGIN",
                   help="with --auth: the mechanisms offered, of PLAIN and "
                        "LOGIN, comma-separated (default PLAIN,LOGIN)")
    p.add_argument("--gmail-auth", choices=["badcredentials", "apppassword"],
                   help="with --auth: refuse every login as Gmail does for "
                        "a wrong password (535 5.7.8) or when an app "
                        "password is needed (534 5.7.9)")
    p.add_argument("--gmail-limit", action="store_true",
                   help="answer MAIL with Gmail's 550 5.4.5 daily user "
                        "sending limit exceeded")
    p.add_argument("--gmail-throttle", action="store_true",
                   help="greet with Gmail's 421 4.7.0 Try again later, "
                        "closing connection, and close")
    p.add_argument("--gmail-logins", metavar="N", type=int,
                   help="with --auth: answer Gmail's 454 4.7.0 Too many "
                        "login attempts to every AUTH after the first N")
    opts = p.parse_args(argv)
    if (opts.starttls or opts.implicit_tls) and not (opts.tls_cert
                                                     and opts.tls_key):
        p.error("--starttls and --implicit-tls need --tls-cert and "
                "--tls-key")
    if opts.starttls and opts.implicit_tls:
        p.error("--starttls and --implicit-tls exclude each other")
    if (opts.require_starttls or opts.tls13_tickets_pause) \
            and not opts.starttls:
        p.error("--require-starttls and --tls13-tickets-pause need "
                "--starttls")
    if (opts.gmail_auth or opts.gmail_logins is not None
            or opts.auth_optional) and not opts.auth:
        p.error("--gmail-auth, --gmail-logins and --auth-optional need "
                "--auth")
    mechanisms = [m.strip().upper()
                  for m in opts.auth_mechanisms.split(",") if m.strip()]
    if not mechanisms or not set(mechanisms) <= {"PLAIN", "LOGIN"}:
        p.error("--auth-mechanisms takes PLAIN and LOGIN")
    opts.auth_mechanisms = mechanisms
    if opts.gmail_throttle:
        opts.greeting_reply = GMAIL_REPLIES["throttle"]
    if opts.gmail_limit:
        opts.mail_reply = GMAIL_REPLIES["limit"]
    return opts


def tls_context(opts):
    """The server's SSLContext, or None without TLS."""
    if not (opts.starttls or opts.implicit_tls):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if opts.tls13_tickets_pause:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.num_tickets = 2

    def note_sni(sslobj, name, _ctx):
        try:
            sslobj.rampmail_sni = name
        except AttributeError:
            pass
        return None

    ctx.sni_callback = note_sni
    return ctx


def tls_facts(sslobj):
    """'sni=NAME version=VERSION cipher=CIPHER' for a finished handshake."""
    name = getattr(sslobj, "rampmail_sni", None)
    cipher = sslobj.cipher()
    return (f"sni={name or 'none'} version={sslobj.version()} "
            f"cipher={cipher[0] if cipher else 'none'}")


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
        self.logins = 0
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
        if not self.opts.auth:
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
        if self.opts.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    def handle_STARTTLS(self, server, session, envelope):
        """Called once the STARTTLS handshake is done: logs it, goes on."""
        sslobj = (session.ssl or {}).get("ssl_object")
        if sslobj is not None:
            server.tls_version = sslobj.version()
            self.log_command(server.number, "TLS", tls_facts(sslobj))
        return True

    def authenticate(self, server, session, envelope, mechanism, data):
        """aiosmtpd's authenticator: the --auth login, or Gmail's refusals."""
        user = password = None
        if isinstance(data, LoginPassword):
            user = data.login.decode("utf-8", "backslashreplace")
            password = data.password.decode("utf-8", "backslashreplace")
        self.logins += 1
        shown = (user or "?").encode("ascii", "backslashreplace").decode()
        refusal = None
        if (self.opts.gmail_logins is not None
                and self.logins > self.opts.gmail_logins):
            refusal = GMAIL_REPLIES["logins"]
        elif self.opts.gmail_auth:
            refusal = GMAIL_REPLIES[self.opts.gmail_auth]
        elif (user, password) != self.opts.auth:
            refusal = "535 5.7.8 Authentication credentials invalid"
        if refusal is None:
            server.auth_user = user
            self.log_command(server.number, "AUTH", f"ok {shown}")
            return AuthResult(success=True, auth_data=data)
        self.log_command(server.number, "AUTH", f"failed {shown}")
        return AuthResult(success=False, handled=False, message=refusal)

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
                "tls": server.tls_version,
                "auth_user": server.auth_user,
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
        self.tls_version = None
        self.auth_user = None
        self._smtp_methods = {
            name: self._logged(name, method)
            for name, method in self._smtp_methods.items()
        }

    def _logged(self, name, method):
        @functools.wraps(method)
        async def wrapper(arg):
            shown = arg
            if name == "AUTH" and arg:
                # the mechanism only: an initial response holds a password
                shown = arg.split()[0]
            self.handler.log_command(self.number, name, shown)
            await method(arg)
        return wrapper

    def connection_made(self, transport):
        if self.number == 0:
            self.number = self.handler.new_session()
            self.active.add(self)
            sslobj = transport.get_extra_info("ssl_object")
            if sslobj is not None:
                # implicit TLS: the handshake is done before this call
                self.tls_version = sslobj.version()
                self.handler.log_command(self.number, "TLS",
                                         tls_facts(sslobj))
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
        self.handler.log_command(self.number, "GREETING",
                                 greeting.split("\r\n")[0])
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

    async def smtp_STARTTLS(self, arg):
        if self.handler.opts.tls13_tickets_pause and not arg \
                and self.tls_context:
            await asyncio.sleep(E1_PAUSE_SECONDS)
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg):
        if not self.handler.opts.auth:
            await self.push("502 5.5.1 AUTH not offered")
            return
        await super().smtp_AUTH(arg)

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

    ctx = tls_context(opts)
    excluded = [m for m in ("PLAIN", "LOGIN")
                if m not in opts.auth_mechanisms]

    def factory():
        return ScriptedSMTP(handler, active, loop=loop,
                            hostname=opts.hostname, ident="rampmail-smtpd",
                            decode_data=False,
                            enable_SMTPUTF8=opts.smtputf8,
                            data_size_limit=opts.size_limit or None,
                            tls_context=ctx if opts.starttls else None,
                            require_starttls=opts.require_starttls,
                            authenticator=handler.authenticate,
                            auth_required=bool(opts.auth
                                               and not opts.auth_optional),
                            auth_require_tls=opts.starttls,
                            auth_exclude_mechanism=excluded)

    server = await loop.create_server(
        factory, opts.host, opts.port,
        ssl=ctx if opts.implicit_tls else None)
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
