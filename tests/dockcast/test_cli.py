import subprocess
import sys

import jwt

from dockcast.cli import main


def test_token_prints_a_verifiable_jwt(capsys):
    assert main(["token", "--api-key", "k", "--api-secret", "s" * 32, "--identity", "alice",
                 "--room", "dock-1", "--grants", "publish,subscribe", "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, "s" * 32, algorithms=["HS256"])
    assert (claims["iss"], claims["sub"], claims["room"]) == ("k", "alice", "dock-1")
    assert claims["grants"]["publish"] and claims["grants"]["subscribe"]
    assert not claims["grants"].get("admin")
    assert claims["exp"] - claims["nbf"] <= 61


def test_token_refuses_unknown_grant(capsys):
    assert main(["token", "--api-key", "k", "--api-secret", "s", "--identity", "a",
                 "--room", "r", "--grants", "superuser"]) == 2
    assert "superuser" in capsys.readouterr().err


def test_serve_refuses_bad_config_with_a_clear_message(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dockcast.cli", "serve", "--port", "70000",
                        "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "port" in r.stderr


def test_serve_refuses_a_plugin_that_cannot_load(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text('[[plugins.webhooks.endpoints]]\nurl = "http://127.0.0.1:9/x"\n'
                      'secret_env = "DOCKCAST_TEST_UNSET_SECRET"\n')
    # port 1 is never bound: the plugins load first
    r = subprocess.run([sys.executable, "-m", "dockcast.cli", "serve", "--port", "1",
                        "--data-dir", str(tmp_path / "d"), "--config", str(config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "DOCKCAST_TEST_UNSET_SECRET" in r.stderr and "Traceback" not in r.stderr


def test_serve_on_a_taken_port_says_so_without_a_traceback(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "dockcast.cli", "serve", "--port", str(port),
                            "--data-dir", str(tmp_path), "--api-key", "k", "--api-secret", "s" * 32],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"127.0.0.1:{port}" in r.stderr and "in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_with_an_unreadable_certificate_says_so(tmp_path, free_port):
    r = subprocess.run([sys.executable, "-m", "dockcast.cli", "serve", "--port", str(free_port),
                        "--data-dir", str(tmp_path), "--api-key", "k", "--api-secret", "s" * 32,
                        "--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", str(tmp_path / "missing.key")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "tls_cert" in r.stderr and "Traceback" not in r.stderr


def _serve(tmp_path, *args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "dockcast.cli", "serve", "--port", "1",
                           "--data-dir", str(tmp_path / "d"), *args],
                          capture_output=True, text=True, timeout=60,
                          env=None if env is None else dict(os.environ, **env))


def test_serve_refuses_a_short_api_secret(tmp_path):
    # port 1 is never bound: the configuration is checked first
    r = _serve(tmp_path, "--api-key", "k", "--api-secret", "s" * 31)
    assert r.returncode == 2 and "api_secret" in r.stderr and "32 bytes" in r.stderr
    assert "Traceback" not in r.stderr and "s" * 31 not in r.stderr + r.stdout


def test_serve_refuses_an_empty_api_secret(tmp_path):
    r = _serve(tmp_path, env={"DOCKCAST_API_KEY": "k", "DOCKCAST_API_SECRET": ""})
    assert r.returncode == 2 and "api_secret" in r.stderr and "Traceback" not in r.stderr


def test_serve_refuses_a_short_secret_in_api_keys(tmp_path):
    r = _serve(tmp_path, "--api-keys", "old:" + "o" * 40 + ",new:short")
    assert r.returncode == 2 and "'new'" in r.stderr and "32 bytes" in r.stderr
    assert "short" not in r.stderr.replace("'new'", "")


def _serve_on_a_terminal(data_dir, tty: bool) -> str:
    """``serve`` without API keys, its stdout a terminal (a pty) or a pipe; what it wrote.
    The missing certificate stops it right after the credentials are made."""
    import os
    import pty

    args = [sys.executable, "-m", "dockcast.cli", "serve", "--port", "1", "--data-dir", str(data_dir),
            "--tls-cert", str(data_dir / "missing.crt"), "--tls-key", str(data_dir / "missing.key")]
    if not tty:
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        return r.stdout + r.stderr
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(args, stdout=slave, stderr=subprocess.PIPE, text=True)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err
    finally:
        os.close(master)
    return b"".join(chunks).decode() + err


def test_dev_credentials_are_printed_once_on_a_terminal_never_in_logs(tmp_path):
    import json

    first = _serve_on_a_terminal(tmp_path / "d", tty=True)
    secret = json.loads((tmp_path / "d" / "dev-credentials.json").read_text())["api_secret"]
    assert secret in first and "dev-credentials.json" in first
    assert first.count(secret) == 2  # the secret and the token command, once
    assert "open in two browser tabs" in first and "mode=publish" in first
    assert "plugins=['shipments', 'webhooks', 'inspection', 'assistant']" in first  # what will load, not just what was added
    again = _serve_on_a_terminal(tmp_path / "d", tty=True)
    assert secret not in again and "dev-credentials.json" in again
    assert "mode=subscribe" in again  # the URLs every time, on a terminal
    # stdout not a terminal (a service, a log file): the secret is never written there
    piped = _serve_on_a_terminal(tmp_path / "e", tty=False)
    other = json.loads((tmp_path / "e" / "dev-credentials.json").read_text())["api_secret"]
    assert other not in piped and "dev-credentials.json" in piped
    assert "token=" not in piped


def test_every_option_has_a_help_text():
    import argparse

    from dockcast import cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli._serve_parser(sub)
    cli._token_parser(sub)
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"dockcast {name} {action.option_strings[0]} has no help"


def test_dev_urls_open_the_readme_room_with_working_tokens():
    from urllib.parse import parse_qs, urlsplit

    from dockcast import cli
    from dockcast.config import NodeConfig
    from signalling.tokens import TokenVerifier

    config = NodeConfig(api_key="devkey", api_secret="s" * 43, host="0.0.0.0", port=9000)
    urls = cli.dev_urls(config)
    verifier = TokenVerifier({"devkey": "s" * 43})
    for mode, grant in (("publish", "publish"), ("subscribe", "subscribe")):
        parts = urlsplit(urls[mode])
        assert (parts.scheme, parts.netloc, parts.path) == ("http", "127.0.0.1:9000", "/web/test.html")
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert (q["url"], q["room"], q["mode"]) == ("ws://127.0.0.1:9000/ws", "dock-7", mode)
        claims = verifier.verify(q["token"])
        assert claims.room == "dock-7" and claims.grants.allows(grant)


def test_the_printed_token_command_runs(tmp_path):
    import shlex

    from dockcast import cli

    command = shlex.split(cli.dockcast_command())
    run = subprocess.run([*command, "token", "--api-key", "k", "--api-secret", "s" * 40,
                          "--identity", "alice", "--room", "dock-7"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.count(".") == 2, run.stderr

