"""docker-compose.yml without Docker: check it against the binary, or run it as local processes.

    python3 scripts/lib/compose.py check [--bin DNSORCH]
    python3 scripts/lib/compose.py smoke --bin DNSORCH --postgres HOST:PORT --redis HOST:PORT
        --kafka HOST:PORT --tansu TANSU --work DIR

`check` (scripts/check-shipping.sh) reads the compose file and verifies that every dnsorch
service runs a real `dnsorch` subcommand and sets only environment variables the binary reads
(its `environment:` keys and the keys of every profile its `env_file` can select, also those
shown commented out as `# KEY=value`), and that the file's wiring holds together (dependencies
exist, `service_healthy` targets have a health check, one-shot services do not restart, scalable
services have no container_name or fixed host port). The operator commands of the header
comment (`docker compose run [--rm] [-T] SERVICE ARGS...`) must name a dnsorch service and a
subcommand. The subcommands and variables are read from src/cli.rs and src/config.rs (clap's
`env = "..."` attributes and `std::env::var("...")` calls, and the prefixes of families of
variables, `..._PREFIX: &str = "KAFKA_PROPERTY_"`); with --bin, each command line is also parsed
by the binary itself (`dnsorch <command> --help`) and the variables are also looked up in its
--help.

`smoke` (scripts/compose-smoke.sh) runs the dnsorch services with the commands, env files,
`environment:` blocks and start order of the compose file, as local processes: the runtime
stage's ENV of the Dockerfile, then the env file, then `environment:`, with the compose service
addresses (postgres:5432, redis:6379, kafka:9092) replaced by the local servers the caller
started, the listen addresses (BIND_ADDR, OPS_ADDR) by a free loopback port per container port
and replica (as the container's port 8000 is a port of its own in each replica), and
SIMULATED_DELAY_SECONDS made short. Each process runs in an empty directory with no other
environment, as in the image. It waits for each dependency's condition (healthy: /healthz
answers on the port the service's health check probes; completed: exited 0), runs the header's
`docker compose run` commands (the first admin token), creates a token for the smoke's account
with `dnsorch token create`, checks that the API refuses a request without a token, posts a
request to the API with the token and produces one to Kafka with an `authorization: Bearer`
header, and waits for both to be COMPLETED (read with the token; /metrics with the admin token).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
# The services the smoke replaces with local servers, and the port each listens on in the network.
INFRA_PORTS = {"postgres": 5432, "redis": 6379, "kafka": 9092}
# Values the smoke changes beyond addresses: a request should not take the profile's 10 s.
SMOKE_OVERRIDES = {"SIMULATED_DELAY_SECONDS": "0.2"}
# Replicas the smoke starts, as `docker compose up --scale api=2 --scale worker=2` would.
SMOKE_SCALE = {"api": 2, "worker": 2}
# The variables that name an address a dnsorch process listens on (`ip:port`).
LISTEN_VARS = ("BIND_ADDR", "OPS_ADDR")
# The smoke's own account and token: requests and the Kafka message are submitted with it.
SMOKE_ACCOUNT = "acct-smoke"
SMOKE_TOKEN_ARGS = ["token", "create", "--account", SMOKE_ACCOUNT, "--name", "smoke", "--policy", "example.test=read,create"]
# `docker compose run` options the header's commands may use (none takes a value).
RUN_FLAGS = {"--rm", "-T", "--no-TTY", "--no-deps", "-i", "--interactive", "--quiet-pull"}


# --- reading the compose file ---------------------------------------------------------------


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR, and
    ${VAR:?message} / ${VAR?message}, which fail (ValueError) when VAR is unset (or empty)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        op, default = match.group("op"), match.group("default") or ""
        value = env.get(name)
        if op == ":-" and not value:
            return default
        if op == "-" and value is None:
            return default
        if (op == ":?" and not value) or (op == "?" and value is None):
            raise ValueError(f"docker-compose.yml: {name} is required: {default or 'not set'}")
        return value or ""

    pattern = r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    return re.sub(pattern, replace, text)


def default_passwords(text: str) -> list[str]:
    """Variables of the compose file that name a password but are not required (`${VAR:?...}`):
    a default (or an empty value) would be a password everyone knows."""
    found = []
    for match in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?[^}]*\}", text):
        name, op = match.group(1), match.group(2)
        if ("PASSWORD" in name or "SECRET" in name) and op != ":?":
            found.append(match.group(0))
    return found


def load_compose() -> dict:
    with COMPOSE.open() as f:
        return yaml.safe_load(f)


def is_dnsorch(service: dict) -> bool:
    """A service that runs the dnsorch image: built from this directory, or named dnsorch."""
    build = service.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    image = interpolate(str(service.get("image", "")), dict(os.environ))
    return context in (".", "./") or image.split("/")[-1].startswith("dnsorch")


def command_of(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def env_file_patterns(service: dict) -> list[str]:
    files = service.get("env_file") or []
    files = [files] if isinstance(files, (str, dict)) else files
    return [f["path"] if isinstance(f, dict) else f for f in files]


def env_files_selectable(pattern: str) -> list[Path]:
    """Every existing file a pattern can name: variables become wildcards (.env.${APP_ENV:-dev}
    is .env.dev by default and any .env.* with APP_ENV set)."""
    wildcard = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*", "*", pattern)
    return sorted(Path(p) for p in glob.glob(str(ROOT / wildcard)) if Path(p).is_file())


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose reads them (comments and blank lines skipped, quotes removed)."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        if "=" not in line:
            raise ValueError(f"{path.name}:{number}: not KEY=VALUE: {line!r}")
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def commented_variables(path: Path) -> dict[str, int]:
    """Variables a profile shows commented out (`# KEY=value`), with their line numbers."""
    found = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = re.match(r"^#\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            found.setdefault(match.group(1), number)
    return found


def operator_commands() -> list[tuple[str, list[str], str]]:
    """The `docker compose run [FLAGS] SERVICE ARGS...` lines of the compose file's comments:
    (service, dnsorch arguments, the line as written)."""
    commands = []
    for line in COMPOSE.read_text().splitlines():
        match = re.match(r"^#\s+(docker compose run\s.*?)\s*(?:#.*)?$", line)
        if not match:
            continue
        words = shlex.split(match.group(1))[3:]
        while words and words[0].startswith("-"):
            if words[0] not in RUN_FLAGS:
                raise ValueError(f"docker-compose.yml: `{match.group(1)}`: the smoke does not know the option {words[0]}")
            words.pop(0)
        if not words:
            raise ValueError(f"docker-compose.yml: `{match.group(1)}` names no service")
        commands.append((words[0], words[1:], match.group(1)))
    return commands


def healthcheck_port(service: dict) -> int:
    """The container port a service's health check probes (the image's: EXPOSE)."""
    check = service.get("healthcheck") or {}
    test = check.get("test") or []
    text = test if isinstance(test, str) else " ".join(str(t) for t in test)
    match = re.search(r"https?://[^/\s:]+:(\d+)/healthz", text)
    if match:
        return int(match.group(1))
    exposed = re.search(r"^EXPOSE (\d+)", DOCKERFILE.read_text().split("\nFROM ")[-1], re.M)
    if not exposed:
        raise ValueError("Dockerfile: the runtime stage exposes no port")
    return int(exposed.group(1))


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def start_order(services: dict) -> list[str]:
    """The services in an order that starts every dependency first (compose's order)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"dependency cycle through {name}")
        visiting.add(name)
        for dep in depends_on(services[name]):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in services:
        visit(name)
    return order


def has_healthcheck(service: dict) -> bool:
    check = service.get("healthcheck")
    if check is None:
        # The image's HEALTHCHECK applies; ours has one.
        return is_dnsorch(service)
    return not check.get("disable", False) and check.get("test") not in (["NONE"], "NONE")


# --- what the binary accepts ------------------------------------------------------------------


def subcommands_from_source() -> set[str]:
    """The variants of `enum Command` in src/cli.rs, as clap names them (kebab-case)."""
    text = (ROOT / "src/cli.rs").read_text()
    body = re.search(r"pub enum Command \{(.*?)\n\}", text, re.S)
    if not body:
        raise ValueError("src/cli.rs: no `pub enum Command`")
    names = re.findall(r"^    ([A-Z][A-Za-z0-9]*)\b", body.group(1), re.M)
    return {re.sub(r"(?<!^)([A-Z])", r"-\1", n).lower() for n in names}


def env_vars_from_source() -> set[str]:
    """clap `env = "..."` attributes and `env::var("...")` reads anywhere in src/."""
    names: set[str] = set()
    for path in (ROOT / "src").rglob("*.rs"):
        text = path.read_text()
        names.update(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
        names.update(re.findall(r'env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"\s*\)', text))
    return names


def env_prefixes_from_source() -> tuple[str, ...]:
    """Prefixes of variable families read from the environment (`KAFKA_PROPERTY_<NAME>`)."""
    prefixes: set[str] = set()
    for path in (ROOT / "src").rglob("*.rs"):
        prefixes.update(re.findall(r'_PREFIX:\s*&str\s*=\s*"([A-Z][A-Z0-9_]*_)"', path.read_text()))
    return tuple(sorted(prefixes))


def binary_help(binary: str, args: list[str]) -> tuple[int, str]:
    done = subprocess.run(
        [binary, *args, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ.get("PATH", "")},
        cwd="/",
    )
    return done.returncode, done.stdout + done.stderr


# --- check --------------------------------------------------------------------------------------


def check(binary: str | None) -> list[str]:
    compose = load_compose()
    services = compose.get("services") or {}
    errors: list[str] = []
    commands = subcommands_from_source()
    variables = env_vars_from_source()
    prefixes = env_prefixes_from_source()

    def unknown(keys) -> list[str]:
        return sorted(k for k in set(keys) - variables if not k.startswith(prefixes))

    if not commands or not variables:
        errors.append("could not read the subcommands or variables from src/")
    top_help = ""
    if binary:
        binary = str(Path(binary).resolve())
        code, top_help = binary_help(binary, [])
        if code != 0:
            errors.append(f"{binary} --help exited {code}")
        listed = set(re.findall(r"^  ([a-z][a-z-]*)\s{2,}", top_help.split("Options:")[0], re.M))
        listed.discard("help")
        if listed != commands:
            errors.append(f"src/cli.rs names {sorted(commands)} but the binary lists {sorted(listed)}")
        in_help = set(re.findall(r"\[env: ([A-Z][A-Z0-9_]*)", top_help)) | {"APP_ENV"}
        if in_help != variables:
            errors.append(f"src/ reads {sorted(variables ^ in_help)} but `dnsorch --help` differs there")
    print(f"subcommands: {', '.join(sorted(commands))}")
    print(f"variables the binary reads: {len(variables)}, and those beginning {', '.join(prefixes) or '(none)'}")

    dnsorch = [name for name, service in services.items() if is_dnsorch(service)]
    if not dnsorch:
        errors.append("no dnsorch service found")
    try:
        order = start_order(services)
    except (KeyError, ValueError) as e:
        return errors + [f"depends_on: {e}"]
    print(f"start order: {' -> '.join(order)}")

    one_shot = {dep for s in services.values() for dep, c in depends_on(s).items() if c == "service_completed_successfully"}
    checked_files: set[Path] = set()
    for name, service in services.items():
        where = f"services.{name}"
        for dep, condition in depends_on(service).items():
            if dep not in services:
                errors.append(f"{where}.depends_on: no service {dep}")
                continue
            if condition == "service_healthy" and not has_healthcheck(services[dep]):
                errors.append(f"{where} waits for {dep} to be healthy, but {dep} has no health check")
            if condition == "service_completed_successfully":
                restart = str(services[dep].get("restart", "no"))
                if restart not in ("no", "on-failure") and not restart.startswith("on-failure"):
                    errors.append(f"{where} waits for {dep} to complete, but {dep} restarts ({restart})")
        for pattern in env_file_patterns(service):
            files = env_files_selectable(pattern)
            default = ROOT / interpolate(pattern, {k: v for k, v in os.environ.items() if k != "APP_ENV"})
            if not default.is_file():
                errors.append(f"{where}.env_file: {default.name} (the default) does not exist")
            if is_dnsorch(service):
                for path in files:
                    if path in checked_files:
                        continue
                    checked_files.add(path)
                    try:
                        keys = read_env_file(path)
                    except ValueError as e:
                        errors.append(str(e))
                        continue
                    for key in unknown(keys):
                        errors.append(f"{path.name}: {key} is not a variable dnsorch reads")
                    for key, number in sorted(commented_variables(path).items()):
                        if unknown([key]):
                            errors.append(f"{path.name}:{number}: {key} (commented out) is not a variable dnsorch reads")
        if name not in dnsorch:
            continue
        command = command_of(service)
        if not command:
            errors.append(f"{where}: no command (the image's default is `run`, not a role of this topology)")
        elif command[0] not in commands:
            errors.append(f"{where}.command: {command[0]!r} is not a dnsorch subcommand ({', '.join(sorted(commands))})")
        elif binary:
            code, output = binary_help(binary, command)
            if code != 0:
                errors.append(f"{where}.command: `dnsorch {' '.join(command)}` is refused: {output.strip()[:300]}")
        if "entrypoint" in service:
            errors.append(f"{where}: sets an entrypoint; the image's is dnsorch")
        for key in unknown(environment_of(service)):
            errors.append(f"{where}.environment: {key} is not a variable dnsorch reads")
        if name not in one_shot:
            # A long-running dnsorch service may be scaled.
            if "container_name" in service:
                errors.append(f"{where}: container_name prevents --scale")
            for port in service.get("ports") or []:
                if isinstance(port, dict):
                    host_port = str(port.get("published") or "")
                else:
                    parts = str(port).split(":")
                    host_port = parts[-2] if len(parts) >= 2 else ""
                if host_port:
                    errors.append(f"{where}.ports: fixed host port {host_port} prevents --scale")
    print(f"dnsorch services: {', '.join(dnsorch)}; env files checked: {', '.join(p.name for p in sorted(checked_files))}")

    try:
        documented = operator_commands()
    except ValueError as e:
        documented = []
        errors.append(str(e))
    for name, command, line in documented:
        # `run` hands the arguments to the image's entrypoint (dnsorch) in place of `command`.
        if name not in dnsorch:
            errors.append(f"`{line}`: {name} is not a dnsorch service")
        elif "entrypoint" in services[name]:
            errors.append(f"`{line}`: {name} sets an entrypoint, so the arguments do not go to dnsorch")
        elif not command or command[0] not in commands:
            errors.append(f"`{line}`: {command[:1]} is not a dnsorch subcommand")
        elif binary:
            code, output = binary_help(binary, command)
            if code != 0:
                errors.append(f"`{line}`: `dnsorch {' '.join(command)}` is refused: {output.strip()[:300]}")
    if not any(c[:2] == ["token", "create"] and "--admin" in c for _, c, _ in documented):
        errors.append("the header documents no `docker compose run ... token create ... --admin` (serve creates no token)")
    print(f"operator commands in the header: {len(documented)}")

    for variable in default_passwords(COMPOSE.read_text()):
        errors.append(f"docker-compose.yml: {variable} is not required (use ${{VAR:?message}}: no default passwords)")
    redis = services.get("redis") or {}
    if redis and "--requirepass" not in command_of(redis):
        errors.append("services.redis: no --requirepass (Redis must have a password)")

    text = DOCKERFILE.read_text()
    runtime = text.split("\nFROM ")[-1]
    for needle, what in [
        (r"^EXPOSE 8000\b", "EXPOSE 8000"),
        (r"^HEALTHCHECK\b.*\n?.*?/healthz", "a HEALTHCHECK on /healthz"),
        (r'^ENTRYPOINT \["[^"]*dnsorch"\]', "dnsorch as the ENTRYPOINT"),
        (r"^USER (?!root\b|0\b)\S+", "a non-root USER"),
    ]:
        if not re.search(needle, runtime, re.M):
            errors.append(f"Dockerfile: the runtime stage lacks {what}")
    return errors


# --- smoke --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dockerfile_env() -> dict[str, str]:
    """ENV of the Dockerfile's last stage (the runtime image)."""
    runtime = DOCKERFILE.read_text().split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for statement in re.findall(r"^ENV ((?:.*\\\n)*.*)$", runtime, re.M):
        for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", statement.replace("\\\n", " ")):
            env[key] = value
    return env


def healthcheck_command() -> str:
    """The shell command of the Dockerfile's HEALTHCHECK."""
    runtime = DOCKERFILE.read_text().split("\nFROM ")[-1]
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", runtime.replace("\\\n", " "), re.M)
    if not match:
        raise ValueError("Dockerfile: no HEALTHCHECK CMD [...]")
    argv = json.loads(match.group(1))
    if argv[:2] != ["/bin/sh", "-c"]:
        raise ValueError(f"Dockerfile: HEALTHCHECK is not /bin/sh -c: {argv}")
    return argv[2]


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], work: Path, pids: Path):
        self.name = name
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = work / f"{name}.log"
        self.env = env
        with self.log.open("w") as out:
            self.popen = subprocess.Popen(
                argv, cwd=self.dir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        with pids.open("a") as f:
            f.write(f"{self.popen.pid}\n")
        print(f"  started {name} (pid {self.popen.pid}): {' '.join(argv[1:])}")

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(f"    {name_line}" for name_line in text[-lines:])

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                return None
        return self.popen.returncode


def http(
    method: str, url: str, body: dict | None = None, timeout: float = 5, token: str | None = None
) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def run_once(name: str, argv: list[str], env: dict[str, str], work: Path) -> str:
    """Runs a one-shot dnsorch command like `docker compose run -T`: standard output is
    returned, standard error goes to work/NAME.log."""
    directory = work / name
    directory.mkdir(parents=True, exist_ok=True)
    log = work / f"{name}.log"
    with log.open("w") as err:
        done = subprocess.run(argv, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=err, text=True, timeout=120)
    if done.returncode != 0:
        tail = "\n".join(f"    {line}" for line in log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{name}: `dnsorch {' '.join(argv[1:])}` exited {done.returncode}:\n{tail}")
    return done.stdout


def secret_of(output: str, what: str) -> str:
    """The secret `dnsorch token create` printed: alone on standard output."""
    lines = output.splitlines()
    if len(lines) != 1 or not re.fullmatch(r"dnsorch_[0-9a-f]{48}", lines[0]):
        raise RuntimeError(f"{what}: standard output is not one secret alone ({len(lines)} lines)")
    return lines[0]


# --- a Kafka producer with headers (tansu's `cat produce` sends none) ----------------------------


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(value: int) -> bytes:
    """A zigzag varint, as records and their headers are framed."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def kafka_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def record_batch(value: bytes, headers: list[tuple[str, bytes]], key: bytes | None = None) -> bytes:
    """One record in a v2 record batch (magic 2, uncompressed, not transactional)."""
    record = b"\x00" + varint(0) + varint(0)  # attributes, timestamp delta, offset delta
    record += varint(-1) if key is None else varint(len(key)) + key
    record += varint(len(value)) + value + varint(len(headers))
    for name, header_value in headers:
        record += varint(len(name.encode())) + name.encode() + varint(len(header_value)) + header_value
    record = varint(len(record)) + record
    now = int(time.time() * 1000)
    # attributes, last offset delta, first and max timestamp, producer id, epoch, base sequence,
    # record count: what the CRC (Castagnoli) covers.
    checked = struct.pack(">hiqqqhii", 0, 0, now, now, -1, -1, -1, 1) + record
    after_length = struct.pack(">ibI", -1, 2, crc32c(checked)) + checked
    return struct.pack(">qi", 0, len(after_length)) + after_length


def kafka_produce(broker: str, topic: str, value: bytes, headers: list[tuple[str, bytes]], partition: int = 0) -> int:
    """Produces one record (Produce v3, acks=all) to a single-broker cluster; returns its
    offset. Retries while the broker does not know the topic's partition yet."""
    host, port = broker.rsplit(":", 1)
    batch = record_batch(value, headers)
    body = struct.pack(">hhi", -1, -1, 10_000)  # no transactional id, acks=all, timeout
    body += struct.pack(">i", 1) + kafka_string(topic)
    body += struct.pack(">i", 1) + struct.pack(">ii", partition, len(batch)) + batch
    deadline = time.monotonic() + 30
    correlation = 0
    while True:
        correlation += 1
        header = struct.pack(">hhi", 0, 3, correlation) + kafka_string("dnsorch-compose-smoke")
        request = header + body
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _read_exactly(conn, 4))[0]
            answer = _read_exactly(conn, size)
        got_correlation, topics = struct.unpack_from(">ii", answer, 0)
        if got_correlation != correlation or topics != 1:
            raise RuntimeError(f"Produce: an unexpected answer ({got_correlation}, {topics} topics)")
        name_length = struct.unpack_from(">h", answer, 8)[0]
        offset = 10 + name_length
        partitions, _index, error, base_offset = struct.unpack_from(">iihq", answer, offset)
        if partitions == 1 and error == 0:
            return base_offset
        # 3 UNKNOWN_TOPIC_OR_PARTITION, 5 LEADER_NOT_AVAILABLE, 6 NOT_LEADER_OR_FOLLOWER
        if error not in (3, 5, 6) or time.monotonic() > deadline:
            raise RuntimeError(f"Produce to {topic}[{partition}] answered error code {error}")
        time.sleep(0.5)


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise RuntimeError("the broker closed the connection")
        data += chunk
    return bytes(data)


def wait_for(what: str, bound: float, ready, processes: list[Process]) -> None:
    deadline = time.monotonic() + bound
    while True:
        try:
            if ready():
                return
        except (OSError, urllib.error.URLError):
            pass
        for process in processes:
            code = process.popen.poll()
            if code is not None and code != 0:
                raise RuntimeError(f"{process.name} exited {code} while waiting for {what}:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {bound:.0f} s")
        time.sleep(0.2)


def smoke(args: argparse.Namespace) -> None:
    compose = load_compose()
    services = compose["services"]
    work = Path(args.work)
    pids = work / "dnsorch.pids"
    local = {"postgres": args.postgres, "redis": args.redis, "kafka": args.kafka}
    base_env = dockerfile_env()
    outer = dict(os.environ)
    processes: dict[str, list[Process]] = {}
    addresses: dict[str, list[str]] = {}

    def localize(value: str) -> str:
        for service, port in INFRA_PORTS.items():
            value = re.sub(rf"(?<![\w.-]){service}:{port}\b", local[service], value)
        return value

    def service_env(name: str, service: dict) -> tuple[dict[str, str], dict[int, str]]:
        """The process's environment, and where each container port it listens on is here."""
        env = dict(base_env)
        for pattern in env_file_patterns(service):
            env.update(read_env_file(ROOT / interpolate(pattern, outer)))
        env.update({k: interpolate(v, outer) for k, v in environment_of(service).items()})
        env = {k: localize(v) for k, v in env.items()}
        # Each replica is a container of its own: one free loopback port per container port,
        # shared by the listen variables that name it (BIND_ADDR and OPS_ADDR may both say
        # 8000: a process binds only one of them). Port 0 stays "any free port".
        ports: dict[int, str] = {}
        for var in LISTEN_VARS:
            if var not in env:
                continue
            host, _, port = env[var].rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"services.{name}: {var}={env[var]!r} is not ip:port")
            if int(port) == 0:
                env[var] = "127.0.0.1:0"
                continue
            ports.setdefault(int(port), f"127.0.0.1:{free_port()}")
            env[var] = ports[int(port)]
        env.update(SMOKE_OVERRIDES)
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        return env, ports

    one_shot = {dep for s in services.values() for dep, c in depends_on(s).items() if c == "service_completed_successfully"}
    try:
        for name in start_order(services):
            service = services[name]
            print(f"{name}:")
            for dep, condition in depends_on(service).items():
                if dep in processes:
                    group = processes[dep]
                    if condition == "service_completed_successfully":
                        for p in group:
                            code = p.popen.wait(timeout=120)
                            if code != 0:
                                raise RuntimeError(f"{p.name} exited {code}:\n{p.tail()}")
                    elif condition == "service_healthy":
                        for p, address in zip(group, addresses[dep]):
                            wait_for(f"{p.name} healthy", 120, lambda a=address: http("GET", f"http://{a}/healthz")[0] == 200, [p])
                print(f"  after {dep}: {condition}")
            if name in INFRA_PORTS:
                print(f"  the local server at {local[name]}")
                continue
            if name == "kafka-init":
                env = dict(read_env_file(ROOT / interpolate(env_file_patterns(service)[0], outer)))
                topic = env.get("KAFKA_DNS_TOPIC", "dns_requests")
                for topic_name in (topic, f"{topic}.dlq"):
                    subprocess.run(
                        [args.tansu, "topic", "create", topic_name, "--partitions", "3", "--broker", f"tcp://{args.kafka}"],
                        check=True,
                        stdout=subprocess.DEVNULL,
                    )
                print(f"  created {topic} and {topic}.dlq with tansu (as kafka-init does with kafka-topics.sh)")
                processes[name] = []
                continue
            if not is_dnsorch(service):
                raise RuntimeError(f"the smoke does not know how to run service {name}")
            replicas = SMOKE_SCALE.get(name, 1)
            print(f"  dnsorch {' '.join(command_of(service))} x{replicas}")
            processes[name], addresses[name] = [], []
            health_port = healthcheck_port(service)
            for index in range(1, replicas + 1):
                env, ports = service_env(name, service)
                # Where the health check (and a client in the network) reaches this replica; a
                # process that does not bind the variable naming that port fails its health wait.
                if health_port not in ports and has_healthcheck(service) and name not in one_shot:
                    raise RuntimeError(f"services.{name}: its health check probes port {health_port}, which none of {', '.join(LISTEN_VARS)} names")
                address = ports.get(health_port, f"127.0.0.1:{free_port()}")
                processes[name].append(Process(f"{name}-{index}", [args.bin, *command_of(service)], env, work, pids))
                addresses[name].append(address)
                listens = ", ".join(f"{v}={env[v]}" for v in LISTEN_VARS if v in env)
                print(f"    {name}-{index}: {listens}; port {health_port} is {address}")

        by_command: dict[str, str] = {}
        for name, group in processes.items():
            if group:
                by_command[command_of(services[name])[0]] = name
            for p in group:
                code = p.popen.poll()
                if code is not None and name not in one_shot:
                    raise RuntimeError(f"{p.name} exited {code}:\n{p.tail()}")
            if name not in one_shot and has_healthcheck(services[name]):
                for p, address in zip(group, addresses[name]):
                    wait_for(f"{p.name} healthy", 60, lambda a=address: http("GET", f"http://{a}/healthz")[0] == 200, [p])
        if "serve" not in by_command or "consume" not in by_command:
            raise RuntimeError("the compose file has no `serve` or no `consume` service")

        api = addresses[by_command["serve"]]
        probe = healthcheck_command()
        for name, group in processes.items():
            if name in one_shot or not group or not has_healthcheck(services[name]):
                continue
            probe_env = {"PATH": os.environ["PATH"], **{v: group[0].env[v] for v in LISTEN_VARS if v in group[0].env}}
            done = subprocess.run(["/bin/sh", "-c", probe], env=probe_env, stdout=subprocess.DEVNULL)
            if done.returncode != 0:
                raise RuntimeError(f"the Dockerfile's HEALTHCHECK command failed for {group[0].name} ({probe_env}): {probe}")
            print(f"the Dockerfile's HEALTHCHECK command passes for {group[0].name}")

        # The operator's first token, as the header comment says to create it.
        documented = operator_commands()
        if not documented:
            raise RuntimeError("docker-compose.yml documents no `docker compose run` command for the first token")
        admin_token, token_service = None, None
        for index, (name, command, line) in enumerate(documented, 1):
            if name not in services or not is_dnsorch(services[name]):
                raise RuntimeError(f"`{line}`: {name} is not a dnsorch service")
            env, _ = service_env(name, services[name])
            output = run_once(f"run-{index}-{name}", [args.bin, *command], env, work)
            print(f"`{line}`: exited 0")
            if command[:2] == ["token", "create"] and "--admin" in command:
                admin_token, token_service = secret_of(output, line), name
        if admin_token is None or token_service is None:
            raise RuntimeError("no documented `docker compose run` command creates an admin token")
        print("the first admin token: printed alone on standard output")

        # The smoke's own token, the same way (the settings of the service the header names).
        env, _ = service_env(token_service, services[token_service])
        token = secret_of(run_once("token-create", [args.bin, *SMOKE_TOKEN_ARGS], env, work), "token create")
        print(f"dnsorch {' '.join(SMOKE_TOKEN_ARGS)} (settings of {token_service}): a token")

        domain = f"smoke-{uuid.uuid4().hex[:8]}.example.test"
        change = {"context": {"account_id": SMOKE_ACCOUNT}, "resource": {"record_type": "A", "domain": domain, "target": "192.0.2.53"}}
        status, refused = http("POST", f"http://{api[0]}/api/v1/dns/create", change)
        if status != 401:
            raise RuntimeError(f"POST without a token answered {status}, not 401: {refused}")
        print("POST /api/v1/dns/create without a token: 401")
        status, accepted = http("POST", f"http://{api[0]}/api/v1/dns/create", change, token=token)
        if status != 202:
            raise RuntimeError(f"POST answered {status}: {accepted}")
        ids = {accepted["request_id"]: "api"}
        print(f"POST /api/v1/dns/create on api-1 with the token: 202, request {accepted['request_id']}")

        consumer_env = processes[by_command["consume"]][0].env
        topic = consumer_env.get("KAFKA_DNS_TOPIC", "dns_requests")
        message = {"context": {"account_id": SMOKE_ACCOUNT}, "resource": {"record_type": "A", "domain": f"kafka-{domain}", "target": "192.0.2.54"}}
        offset = kafka_produce(args.kafka, topic, json.dumps(message).encode(), [("authorization", f"Bearer {token}".encode())])
        kafka_domain = message["resource"]["domain"]
        print(f"produced one message to {topic} (offset {offset}) with the header 'authorization: Bearer <token>'")

        reader = api[-1]
        deadline = time.monotonic() + 60
        while True:
            if len(ids) < 2:
                status, page = http("GET", f"http://{reader}/api/v1/dns/requests?domain={kafka_domain}", token=token)
                if status == 200 and page.get("items"):
                    ids.setdefault(page["items"][0]["request_id"], "kafka")
            answers = {rid: http("GET", f"http://{reader}/api/v1/dns/requests/{rid}", token=token)[1] for rid in ids}
            states = {rid: a.get("status") if isinstance(a, dict) else a for rid, a in answers.items()}
            if len(states) == 2 and all(s == "COMPLETED" for s in states.values()):
                break
            if time.monotonic() > deadline:
                logs = "\n".join(f"  {p.name}:\n{p.tail()}" for g in processes.values() for p in g)
                raise RuntimeError(f"not COMPLETED within 60 s: {states}\n{logs}")
            time.sleep(0.2)
        for rid, source in ids.items():
            submitter = answers[rid].get("submitted_by") or {}
            if submitter.get("token_name") != "smoke" or submitter.get("account_id") != SMOKE_ACCOUNT:
                raise RuntimeError(f"request {rid} (from {source}) was not submitted by the smoke's token: {submitter}")
            print(f"request {rid} (from {source}) is COMPLETED, submitted by token smoke, read on api-{len(api)} with it")

        status, ready = http("GET", f"http://{api[0]}/readyz")
        if status != 200 or ready.get("status") != "ready":
            raise RuntimeError(f"api /readyz: {status} {ready}")
        print(f"api /readyz: {ready}")
        for role in ("consume", "worker"):
            name = by_command.get(role)
            if name is None:
                continue
            for p, address in zip(processes[name], addresses[name]):
                status, ready = http("GET", f"http://{address}/readyz")
                if status != 200 or ready.get("status") != "ready":
                    raise RuntimeError(f"{p.name} /readyz on {address}: {status} {ready}")
                print(f"{p.name} /readyz on {address}: {ready}")
        status, _ = http("GET", f"http://{api[0]}/metrics")
        public = str(processes[by_command["serve"]][0].env.get("METRICS_PUBLIC", "false")).lower() in ("1", "true", "yes", "on")
        if not public and status != 401:
            raise RuntimeError(f"api /metrics without a token answered {status}, not 401")
        print(f"api /metrics without a token: {status}")
        status, metrics = http("GET", f"http://{api[0]}/metrics", token=admin_token)
        completed = re.search(r'^dnsorch_requests\{status="COMPLETED"\} (\d+)', metrics if isinstance(metrics, str) else "", re.M)
        if status != 200 or not completed or int(completed.group(1)) < len(ids):
            raise RuntimeError(f"api /metrics with the admin token ({status}) does not count {len(ids)} COMPLETED")
        print(f"api /metrics with the admin token: dnsorch_requests{{status=\"COMPLETED\"}} {completed.group(1)}")
    finally:
        failed = []
        for group in reversed(list(processes.values())):
            for p in group:
                code = p.stop()
                if code not in (0,):
                    failed.append(f"{p.name} ({code})")
        if failed:
            print(f"not a clean exit on SIGTERM: {', '.join(failed)}")
    if failed:
        raise RuntimeError("every dnsorch process must exit 0 on SIGTERM")
    print("every dnsorch process exited 0 on SIGTERM")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("check")
    c.add_argument("--bin")
    s = sub.add_parser("smoke")
    for flag in ("--bin", "--postgres", "--redis", "--kafka", "--tansu", "--work"):
        s.add_argument(flag, required=True)
    args = parser.parse_args()
    if args.mode == "check":
        errors = check(args.bin)
        for error in errors:
            print(f"error: {error}")
        print("compose check: " + ("FAILED" if errors else "ok"))
        return 1 if errors else 0
    try:
        smoke(args)
    except (RuntimeError, subprocess.SubprocessError, OSError, KeyError, ValueError) as e:
        print(f"smoke FAILED: {e}")
        return 1
    print("compose smoke: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
