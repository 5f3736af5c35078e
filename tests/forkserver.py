"""Short Python programs in processes of their own, without each paying for `import torch`.

The CLI's hostile-input cases and the explorer's copied snippets are many short
programs; in a fresh `python` each would spend seconds importing torch. A
`ForkServer` is a Python that has imported the programs' modules once; each
program then runs in a fork of it: a process of its own, with its own folder,
environment, stdin (empty), stdout and stderr, running its code as
``__main__`` with its own ``sys.argv``, and ending as ``python -c`` ends (the
status of SystemExit, or 1 after an uncaught exception, with its traceback).
For `memory`, the process may take that many bytes of address space beyond
its start (RLIMIT_AS): a runaway allocation then fails the program, not the
machine. Where fork is not to be trusted (Windows, macOS), `Spawn` runs each
program in a fresh ``python -c`` instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SERVER = r"""
import json, os, resource, signal, sys, traceback
preload = sys.argv[1:]
for name in preload:
    __import__(name)

def exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1

for line in sys.stdin:
    case = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(case["cwd"])
            os.environ.clear()
            os.environ.update(case["env"])
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            for fd, path in ((1, case["stdout"]), (2, case["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            if case["memory"] is not None:
                if "torch" in sys.modules:
                    sys.modules["torch"].cuda.is_available()  # CUDA's driver reserves address space as it starts
                start = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
                resource.setrlimit(resource.RLIMIT_AS, (start + case["memory"],) * 2)
            signal.alarm(300)  # a hung program dies by SIGALRM and fails with status -14
            sys.argv = case["argv"]
            exec(compile(case["code"], "<string>", "exec"), {"__name__": "__main__"})
            status = 0
        except SystemExit as exit_:
            status = exit_status(exit_.code)
        except BaseException:
            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class ForkServer:
    """A Python that has imported `preload`; run() runs one program in a fork of it.

    `isolated` starts it with ``python -I`` (no PYTHONPATH, no user site), as a
    reader's ``python -I -c`` would run. `folder` receives each program's stdout and stderr.
    """

    def __init__(self, preload: list[str], env: dict, folder: Path, isolated: bool = False):
        self.folder, self.runs = folder, 0
        command = [sys.executable, *(["-I"] if isolated else []), "-c", SERVER, *preload]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def run(
        self, code: str, argv: list[str], env: dict, cwd: Path, memory: int | None = None
    ) -> subprocess.CompletedProcess:
        """Run `code` as __main__ with sys.argv = `argv`; its exit status (negative: killed by that signal) and output."""
        self.runs += 1
        out, err = (self.folder / f"{self.runs}.{name}" for name in ("stdout", "stderr"))
        case = {"code": code, "argv": argv, "env": env, "cwd": str(cwd), "memory": memory}
        self.proc.stdin.write(json.dumps({**case, "stdout": str(out), "stderr": str(err)}) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, f"the fork server died (exit status {self.proc.wait()})"
        return subprocess.CompletedProcess(argv, int(answer), out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


class Spawn:
    """The same interface, each program in a fresh ``python -c`` (no memory limit: that needs Linux's /proc)."""

    def __init__(self, isolated: bool = False):
        self.flags = ["-I"] if isolated else []

    def run(
        self, code: str, argv: list[str], env: dict, cwd: Path, memory: int | None = None
    ) -> subprocess.CompletedProcess:
        assert memory is None, "the memory limit needs Linux's /proc"
        command = [sys.executable, *self.flags, "-c", code, *argv[1:]]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)

    def close(self) -> None:
        pass


def server(preload: list[str], env: dict, folder: Path, isolated: bool = False) -> ForkServer | Spawn:
    """A ForkServer on Linux, where each fork is trusted; a Spawn elsewhere."""
    return ForkServer(preload, env, folder, isolated) if sys.platform.startswith("linux") else Spawn(isolated)
