#!/usr/bin/python3
"""A Symfony-Mailer-like client of "sendmail -bs", for tests/callers.sh.

    bs-client.py [--helo] [--transcript FILE] --from ADDR --to ADDR...
                 --message FILE [--message FILE...] -- COMMAND [ARG...]

Runs COMMAND (for instance /usr/sbin/sendmail -bs) and speaks SMTP with it
over its standard input and output the way Symfony Mailer's SmtpTransport
does over its ProcessStream:

  - reads the greeting and wants 220;
  - EHLO [127.0.0.1] and wants 250 on every line of the reply (with
    --helo: HELO [127.0.0.1], which is what Symfony's SendmailTransport
    sends, as it uses the plain SmtpTransport for -bs);
  - per message: MAIL FROM:<ADDR> (250), one RCPT TO per --to (250, 251
    or 252), DATA (354), the message with CRLF line ends and every line
    that starts with a dot doubled (Symfony replaces CRLF "." with CRLF
    ".."), then CRLF "." CRLF (250);
  - QUIT (221), then waits for COMMAND to exit and wants status 0.

Each message FILE is read as bytes, its line ends made CRLF and its last
line end dropped (the final CRLF "." CRLF ends the last line). Every
command and reply goes to --transcript. Exit status: 0 when every reply
had the wanted code, 1 otherwise (the reason on stderr), 2 on bad usage.
"""

import argparse
import os
import select
import subprocess
import sys
import time

DEADLINE_SECONDS = 20


class Failure(Exception):
    pass


class Session:
    def __init__(self, argv, transcript):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.buf = b""
        self.deadline = time.monotonic() + DEADLINE_SECONDS
        self.log = transcript

    def note(self, prefix, data):
        if self.log is not None:
            text = data.decode("utf-8", "backslashreplace")
            self.log.write(f"{prefix} {text}\n")
            self.log.flush()

    def read_line(self):
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise Failure("no reply in time")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise Failure("the server closed its output "
                              f"(partial line {self.buf!r})")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        if not line.endswith(b"\r"):
            raise Failure(f"reply line without CRLF: {line!r}")
        line = line[:-1]
        self.note("S:", line)
        return line

    def reply(self):
        """The lines of one (possibly multi-line) reply."""
        lines = []
        while True:
            line = self.read_line()
            if len(line) < 3 or not line[:3].isdigit() \
                    or line[3:4] not in (b" ", b"-", b""):
                raise Failure(f"not an SMTP reply line: {line!r}")
            if lines and line[:3] != lines[0][:3]:
                raise Failure(f"reply code changed inside a reply: {line!r}")
            lines.append(line)
            if line[3:4] != b"-":
                return lines

    def expect(self, what, codes):
        lines = self.reply()
        code = int(lines[0][:3])
        if code not in codes:
            raise Failure(f"{what}: wanted {codes}, got "
                          + " | ".join(l.decode("utf-8", "replace")
                                       for l in lines))
        return lines

    def send(self, data, shown=None):
        self.note("C:", shown if shown is not None else data.rstrip(b"\r\n"))
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def command(self, text, codes):
        self.send(text.encode("ascii") + b"\r\n")
        return self.expect(text, codes)


def message_bytes(path):
    with open(path, "rb") as f:
        raw = f.read()
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"\r\n".join(lines)


def stuffed(data):
    """Symfony's dot-stuffing: a dot after every CRLF is doubled (the
    first line is a header field and never starts with a dot)."""
    return data.replace(b"\r\n.", b"\r\n..")


def run(opts):
    log = open(opts.transcript, "a") if opts.transcript else None
    try:
        s = Session(opts.command, log)
    except OSError as e:
        print(f"bs-client: cannot run {opts.command[0]}: {e}", file=sys.stderr)
        return 1
    try:
        s.expect("greeting", [220])
        if opts.helo:
            s.command("HELO [127.0.0.1]", [250])
        else:
            s.command("EHLO [127.0.0.1]", [250])
        for path in opts.message:
            s.command(f"MAIL FROM:<{opts.sender}>", [250])
            for rcpt in opts.to:
                s.command(f"RCPT TO:<{rcpt}>", [250, 251, 252])
            s.command("DATA", [354])
            body = stuffed(message_bytes(path))
            s.send(body, shown=b"(%d octets of message)" % len(body))
            s.send(b"\r\n.\r\n")
            s.expect("end of DATA", [250])
        s.command("QUIT", [221])
        s.proc.stdin.close()
        try:
            status = s.proc.wait(timeout=max(1, s.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise Failure("the server did not exit after QUIT")
        rest = s.proc.stdout.read()
        if rest:
            raise Failure(f"output after 221: {rest!r}")
        if status != 0:
            raise Failure(f"the server exited with status {status}")
    except Failure as e:
        print(f"bs-client: {e}", file=sys.stderr)
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        return 1
    finally:
        if log is not None:
            log.close()
    return 0


def main(argv):
    p = argparse.ArgumentParser(description="A Symfony-like -bs client.")
    p.add_argument("--helo", action="store_true",
                   help="greet with HELO, as Symfony's SendmailTransport")
    p.add_argument("--transcript", metavar="FILE",
                   help="append the dialogue here")
    p.add_argument("--from", dest="sender", required=True, metavar="ADDR")
    p.add_argument("--to", action="append", required=True, metavar="ADDR")
    p.add_argument("--message", action="append", required=True,
                   metavar="FILE")
    p.add_argument("command", nargs="+")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
