"""A broken environment fails loudly and marks nothing final: telling a broken decode machine from bad files.

A node whose decoder cannot load, or lacks the codec the corpus uses (a minimal FFmpeg build: Fedora's ffmpeg-free
has no H.264/HEVC decoder; a PyAV wheel built against it), would otherwise give every input it sees a *final*
`unsupported_codec` / `corrupt` row and the job would end "complete" with those inputs lost for good. The rule, kept
per decode worker process (`MachineCheck`, one per process in `pipeline/tokenize/stages.py`):

    outcome in the decode process                                       verdict
    the decoder stack does not load in the decode child                 the machine, at once (no file was read:
      (ImportError, a missing FFmpeg library: `DecoderUnavailable`)     nothing else can explain it)
    the process's first `decode_task.machine_burst` (8) inputs all      the machine
      fail with the same machine-pointing reason (`unsupported_codec`,
      or a decoder crash), none succeeded
    any input ok, or any other failure                                  healthy for the rest of the process's life

Why this rule: a broken environment is broken from its first input and fails every input the same way, while a
genuinely bad corpus mixes failure kinds with good files, and a healthy process decodes the good ones; so only the
start of a process is judged, and one success clears it (a later burst on a healthy process is the corpus: final
rows). It needs no extra I/O and no self-test video. Its limit: a corpus (or a listing order) whose first inputs are
all of one undecodable codec stops the run too; the message says so, and `decode_task.machine_burst=0` turns the
rule off when the files really are in a codec no node has. Per process, not per node: Ray reuses worker processes,
each sees many inputs, and a broken node trips in every process that lands on it.

What happens on the verdict: the decode task commits *pending* rows (`final = false`, the reason kept, the message
saying the machine is suspected) for the inputs of the burst — they supersede the final rows that earlier tasks of
the same process committed (newest row wins) — and raises `MachineBroken`. Ray Data does not retry an application
error: the chain stops, the driver commits what finished, and the job exits with its own code (4, `EXIT_BROKEN_ENV`
in jobs/tokenize_corpus.py) naming the node and the reason. After the fix, re-running the same command decodes the
pending inputs again. Pure: no Ray.
"""

from __future__ import annotations

from pipeline.decode.status import UNSUPPORTED_CODEC, is_decoder_crash
from pipeline.errors import BROKEN_ENV, JobError


class MachineBroken(JobError):
    """The decode environment of a node is broken (`node`, `reason`, `sources` whose rows were left pending); the job
    ends with exit code 5 (`pipeline/errors.py`)."""

    exit_code = BROKEN_ENV
    label = "STOPPED"

    def __init__(self, node: str, reason: str, message: str, sources: list[str] | tuple = ()):
        self.node, self.reason, self.detail, self.sources = node, reason, message, list(sources)
        burst = (f" on the first {len(self.sources)} inputs of a decode process, their status rows left pending "
                 "(final = false)" if self.sources else "")
        super().__init__(f"decode environment broken on node {node}: {reason}{burst} ({message}). Fix the node's "
                         "decoder (PyAV / FFmpeg build) or drain it, then re-run the same command: every input "
                         "without a final row is decoded again. If the files really are in a codec no node decodes, "
                         "set decode_task.machine_burst=0.")

    def __reduce__(self):  # crosses Ray's process boundary intact
        return (MachineBroken, (self.node, self.reason, self.detail, self.sources))


def machine_reason(status: str, message: str | None) -> str | None:
    """The machine-pointing class of an outcome (`unsupported_codec`, `decoder crash`), else None."""
    if status == UNSUPPORTED_CODEC:
        return UNSUPPORTED_CODEC
    if is_decoder_crash(status, message):
        return "decoder crash"
    return None


def find_cause(e: BaseException, cls: type) -> BaseException | None:
    """`e` or the first exception of class `cls` in its chain (Ray and Ray Data wrap a task's error in their own)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, cls):
            return e
        e = getattr(e, "cause", None) or e.__cause__ or e.__context__
    return None


class MachineCheck:
    """The rule of the module docstring for one decode process. Feed every finished input to `see`."""

    def __init__(self, burst: int):
        self.burst = burst
        self.healthy = burst <= 0  # 0: the rule is off
        self.rows: list[dict] = []  # status rows of the burst so far (dicts with source, status, message)

    def see(self, row: dict) -> bool:
        """One finished input's outcome (`status`, `message`); True when the burst makes the machine suspect."""
        if self.healthy:
            return False
        why = machine_reason(row.get("status", "ok"), row.get("message"))
        if why is None or (self.rows and why != machine_reason(self.rows[0]["status"], self.rows[0]["message"])):
            self.healthy, self.rows = True, []
            return False
        self.rows.append(dict(row))
        return len(self.rows) >= self.burst

    def pending_rows(self, node: str) -> list[dict]:
        """The burst's rows, made pending, their messages saying why."""
        return [{**r, "final": False, "message": f"machine suspected ({node}): {r.get('message') or ''}"}
                for r in self.rows]
