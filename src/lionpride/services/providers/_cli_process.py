"""One run of an agent CLI that prints newline-delimited JSON events (Claude Code, Gemini).

:func:`run_cli` spawns the executable in its own process group (no shell), writes a long
prompt to stdin within the call's deadline, drains stderr into a bounded tail so the pipe
never fills, and yields each stdout line's JSON object under the call deadline and the idle
timeout. Once a final event arrived the CLI gets a short grace to exit, and the final event
is yielded with its exit status under :data:`EXIT_STATUS`. On every exit path
(success, error, timeout, cancellation, a consumer leaving early) the whole process group is
terminated, then killed, in a shielded cleanup, and with it the process groups of the CLI's
descendants: both CLIs run a shell command in a session of its own. The provider modules
own the arguments and the meaning of the events; nothing here knows either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncGenerator, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lionpride import errors
from lionpride.errors import CLIError

__all__ = [
    "EXIT_STATUS",
    "MAX_ARG_BYTES",
    "CLIError",
    "CLIRun",
    "find_executable",
    "resolve_workspace",
    "run_cli",
]

#: Longer prompts go through stdin: Linux refuses a single argument over 128 KiB.
MAX_ARG_BYTES = 100_000

#: The key under which the final event carries the CLI's exit status (``None``: still running
#: after the grace period).
EXIT_STATUS = "lionpride_exit_status"

#: Upper bound of one event line (a tool result may carry a whole file).
LINE_LIMIT = 64 * 1024 * 1024
_STDERR_TAIL = 16 * 1024
#: Seconds between SIGTERM and SIGKILL when a run is stopped.
_KILL_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class CLIRun:
    """What one run needs besides its arguments: who it is and how strictly to read it.

    Attributes:
        name: The endpoint's name, the prefix of every error message.
        label: The CLI in messages, e.g. ``"Claude Code CLI `claude`"``.
        install_hint: How to install it, appended to "not found" errors.
        error: The error class raised for a failed run.
        final_types: Event ``type`` values that carry the run's result.
        exit_grace: Seconds the CLI may take to exit after its final event.
        skip_noise: Ignore stdout lines that are not JSON objects instead of failing.
    """

    name: str
    label: str
    install_hint: str
    error: type[CLIError]
    final_types: Collection[str]
    exit_grace: float
    skip_noise: bool = False


def find_executable(cli_path: str | None, default: str, label: str, install_hint: str) -> str:
    """The executable to run, resolved now (a path, or a name looked up on ``PATH``).

    Raises:
        ConfigurationError: It cannot be found or is not executable.
    """
    name = cli_path or default
    found = shutil.which(name)
    if found is None:
        where = f"at {name!r}" if os.sep in name else f"{name!r} on PATH"
        raise errors.ConfigurationError(f"{label} not found ({where}): {install_hint}")
    return found


def resolve_workspace(repo: str, ws: str | None) -> Path:
    """The directory a run happens in: ``repo/ws`` resolved, or ``repo``.

    Raises:
        ValueError: ``ws`` is absolute, contains ``..``, or resolves outside ``repo``
            (through a symlink, say).
    """
    root = Path(repo).resolve()
    if ws is None:
        return root
    sub = Path(ws)
    if sub.is_absolute() or ".." in sub.parts:
        raise ValueError(f"ws must be a relative sub-directory of repo without '..', got {ws!r}")
    workspace = (root / sub).resolve()
    if not workspace.is_relative_to(root):
        raise ValueError(f"ws {ws!r} resolves outside the repository {root}")
    return workspace


async def run_cli(
    run: CLIRun,
    exe: str,
    args: list[str],
    *,
    cwd: Path,
    stdin_text: str | None,
    env: Mapping[str, str] | None,
    deadline: float,
    limit: float,
    idle: float | None,
) -> AsyncGenerator[dict[str, Any], None]:
    """Spawn one CLI run and yield its JSON events; the process never outlives this.

    Raises:
        ConfigurationError: The executable cannot be started.
        CLIError: (``run.error``) non-zero exit without a final event, a line that is not a
            JSON object (unless ``run.skip_noise``), or an end without a final event.
        TimeoutError: The call's deadline or the idle timeout passed.
    """
    proc = await _spawn(run, exe, args, cwd, stdin_text, env)
    stderr = bytearray()
    assert proc.stdout is not None and proc.stderr is not None
    drain = asyncio.create_task(_drain(proc.stderr, stderr))
    loop = asyncio.get_running_loop()
    try:
        if stdin_text is not None and proc.stdin is not None:
            await _send_prompt(proc.stdin, stdin_text, deadline)
        while line := await _read_line(proc.stdout, loop, deadline, limit, idle, run):
            event = _event(run, line, stderr)
            if event is None:
                continue
            if event.get("type") in run.final_types:
                # The result is the answer. The CLI exits right after it; one that lingers,
                # or a tool left holding its pipes, gets a short grace and is then stopped
                # (below), never waited on until the call's deadline. Its exit status says
                # more than the event for some CLIs (Gemini's is the HTTP status mod 256).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(run.exit_grace, deadline - loop.time())):
                        await proc.wait()
                event[EXIT_STATUS] = proc.returncode
                yield event
                return
            yield event
        async with asyncio.timeout_at(deadline):
            code = await proc.wait()
            await drain
        raise _no_result(run, code, _tail(stderr))
    except TimeoutError as exc:
        if isinstance(exc, errors.TimeoutError):
            raise
        raise errors.TimeoutError(
            f"{run.name}: the CLI did not finish within {limit:.3g}s"
        ) from exc
    finally:
        await asyncio.shield(_stop(proc, drain))


async def _spawn(
    run: CLIRun,
    exe: str,
    args: list[str],
    cwd: Path,
    stdin_text: str | None,
    env: Mapping[str, str] | None,
) -> asyncio.subprocess.Process:
    """Start the CLI in ``cwd`` (made if missing), in a process group of its own.

    Raises:
        ConfigurationError: The executable cannot be started.
    """
    os.makedirs(cwd, exist_ok=True)  # a local mkdir: not worth a thread
    try:
        return await asyncio.create_subprocess_exec(
            exe,
            *args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=asyncio.subprocess.PIPE if stdin_text else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
            # Its own process group, so that stopping it also stops the tools it started.
            start_new_session=True,
        )
    except OSError as exc:
        raise errors.ConfigurationError(
            f"cannot run {run.label} {exe!r}: {exc}; {run.install_hint}", cause=exc
        ) from exc


def _event(run: CLIRun, line: bytes, stderr: bytearray) -> dict[str, Any] | None:
    """The JSON event on one line of the CLI's output; ``None`` for a blank line or, with
    ``run.skip_noise``, a banner or log line the CLI printed among its events.

    Raises:
        CLIError: (``run.error``) a line that is not a JSON object.
    """
    text = line.strip()
    if not text:
        return None
    try:
        event = json.loads(text)
    except ValueError:
        event = None
    if isinstance(event, dict):
        return event
    if run.skip_noise:
        return None
    raise run.error(
        f"{run.name}: the CLI printed a line that is not a JSON event: "
        f"{text[:200].decode('utf-8', 'replace')!r}",
        stderr=_tail(stderr),
    )


def _no_result(run: CLIRun, code: int, tail: str) -> CLIError:
    """The error of a CLI that ended without a final event (``code``: its exit status)."""
    if code != 0:
        return run.error(
            f"{run.name}: the CLI exited with status {code}: {tail or '(no stderr)'}",
            returncode=code,
            stderr=tail,
        )
    return run.error(f"{run.name}: the CLI ended without a result event", stderr=tail)


async def _send_prompt(stdin: asyncio.StreamWriter, prompt: str, deadline: float) -> None:
    """Write the prompt to stdin and close it, within the call's deadline."""
    try:
        async with asyncio.timeout_at(deadline):
            stdin.write(prompt.encode())
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # The CLI exited without reading it: its exit status and stderr say why.
    finally:
        stdin.close()


async def _read_line(
    reader: asyncio.StreamReader,
    loop: asyncio.AbstractEventLoop,
    deadline: float,
    limit: float,
    idle: float | None,
    run: CLIRun,
) -> bytes:
    """One line of stdout, bounded by the call's deadline and the idle timeout."""
    when = deadline if idle is None else min(deadline, loop.time() + idle)
    try:
        async with asyncio.timeout_at(when):
            return await reader.readline()
    except TimeoutError as exc:
        if idle is not None and when < deadline:
            raise errors.TimeoutError(
                f"{run.name}: the CLI was silent for more than {idle:.3g}s"
            ) from exc
        raise errors.TimeoutError(
            f"{run.name}: the CLI did not finish within {limit:.3g}s"
        ) from exc
    except ValueError as exc:  # the line is longer than the reader's limit
        raise run.error(f"{run.name}: an event line exceeded {LINE_LIMIT} bytes") from exc


async def _drain(reader: asyncio.StreamReader, buffer: bytearray) -> None:
    """Read stderr to the end, keeping only its tail, so the pipe never fills up."""
    while chunk := await reader.read(65536):
        buffer += chunk
        if len(buffer) > _STDERR_TAIL:
            del buffer[: len(buffer) - _STDERR_TAIL]


def _tail(buffer: bytearray) -> str:
    return buffer.decode("utf-8", "replace").strip()[-2000:]


async def _stop(proc: asyncio.subprocess.Process, drain: asyncio.Task[None]) -> None:
    """Terminate the run's process groups, kill them after a grace period, and reap the CLI.

    The groups are the CLI's and those of its descendants that left it: a shell command
    the CLI runs for a tool leads a group (and session) of its own, which a signal to the
    CLI's group misses and which the CLI, stopped, leaves running.
    """
    groups = [proc.pid]
    if proc.returncode is None:
        # Read while the CLI lives: once it exits, its children belong to init.
        groups += sorted(_groups_below(proc.pid) - {proc.pid, os.getpgrp()})
        _signal(proc, groups, signal.SIGTERM)
        try:
            async with asyncio.timeout(_KILL_GRACE):
                await proc.wait()
        except TimeoutError:
            _signal(proc, groups, signal.SIGKILL)
            await proc.wait()
    # Whatever is left in the groups (a tool the CLI started and left running) would be
    # orphaned: kill it. A group id stays reserved while any member lives, so this cannot
    # reach an unrelated process; an empty group is ignored.
    _signal(proc, groups, signal.SIGKILL)
    drain.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drain


def _groups_below(pid: int) -> set[int]:
    """The process groups of ``pid``'s descendants, from ``/proc`` (none without it)."""
    children: dict[int, list[tuple[int, int]]] = {}
    with contextlib.suppress(OSError), os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as file:
                    stat = file.read()
            except OSError:
                continue  # it ended meanwhile
            # The fields after the command name, which may itself hold spaces and ")".
            fields = stat[stat.rindex(b")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append((int(entry.name), int(fields[2])))
    groups: set[int] = set()
    todo = [pid]
    while todo:
        for child, group in children.get(todo.pop(), ()):
            groups.add(group)
            todo.append(child)
    return groups


def _signal(proc: asyncio.subprocess.Process, groups: list[int], sig: signal.Signals) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if hasattr(os, "killpg"):
                os.killpg(group, sig)
            else:  # pragma: no cover - Windows has no process groups of this kind
                proc.send_signal(sig)
