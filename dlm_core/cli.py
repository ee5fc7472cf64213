r"""Command line: watch a masked diffusion model denoise, record the run, replay a recording.

    python -m dlm_core generate --prompt "Once upon a time" --gen-length 32 --steps 16 --out traj.json
    python -m dlm_core generate --prompt "HAMLET:\nTo be, or [MASK:6]" --gen-length 32
    python -m dlm_core generate --prompt "The [MASK:5] sat on the mat" --gen-length 0 --strategy entropy
    python -m dlm_core replay traj.json [--animate]

``generate`` takes every ``SamplerConfig`` field as ``--field-name`` (``--remask confidence``,
``--top-p 0.9``, ``--record-topk``; ``none`` for optional ones). Display (``--display``): on a
terminal the canvas redraws in place (masks as a block glyph, this step's commits highlighted in
green, re-masks in red, text after end-of-text dimmed) with a progress line under it; when stdout is
not a terminal, plain progress lines (at most about 20) instead; ``canvas`` forces frames (plain,
one per step, when not a terminal), ``none`` shows only the result. ``--color`` overrides colour
detection (``auto`` honours NO_COLOR). Then the final text and the stats (steps, NFE, tokens per
forward, wall time) are printed and, with ``--out``, the trajectory JSON is written.

``--prompt`` honours three escapes, as a shell's ``echo -e`` would: ``\n`` a newline, ``\t`` a tab,
``\\`` one backslash (``prompt_escapes``). Any other backslash is kept as typed, so the prompt
syntax's own ``\[MASK`` (a literal "[MASK") still works. ``--raw-prompt`` turns the escapes off.

Exit codes: 0 ok; 2 bad arguments or input (one line ``error: --field: message``, no traceback);
1 a file could not be written; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any, NoReturn, TextIO

from .sampler import ConfigError, PromptError, SamplerConfig, StepState, denoise
from .sampler.config import SETTINGS
from .sampler.strategies import STRATEGIES
from .state import MASK_GLYPH
from .trajectory import Trajectory, TrajectoryBuilder, TrajectoryError

# The app's default unless DIFFUSION_CANVAS_MODEL names another (the test suite sets tiny-random).
DEFAULT_MODEL = os.environ.get("DIFFUSION_CANVAS_MODEL", "").strip() or "canvas-diffusion"

# ANSI styles (used only when colour is on).
GREEN, RED, DIM, BOLD, RESET = "\x1b[1;32m", "\x1b[31m", "\x1b[2m", "\x1b[1m", "\x1b[0m"


class CLIError(Exception):
    """A bad argument: printed as ``error: --field: message`` with exit status 2."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


# -- models ------------------------------------------------------------------------------------------


def load_model(name: str):
    """The ONE place the CLI turns a model name into a ``ModelAdapter``.

    The tiny random test models are built locally (no registry import, so tests stay fast); any
    other name goes to ``dlm_core.models.registry.load_model`` when that module exists.
    """
    from .models import tiny_random_model

    local: dict[str, Callable[[], Any]] = {
        "tiny-random": lambda: tiny_random_model(),
        "tiny-random-ar": lambda: tiny_random_model(causal=True),
    }
    if name in local:
        return local[name]()
    try:
        from .models import registry
    except ModuleNotFoundError as error:
        if error.name != "dlm_core.models.registry":
            raise
        raise CLIError("model", f"unknown model {name!r}; available: {', '.join(local)}") from None
    known_errors = tuple(
        getattr(registry, name)
        for name in ("ModelNotFoundError", "ModelUnavailableError", "ModelRefusedError", "ModelTooLargeError")
        if isinstance(getattr(registry, name, None), type)
    )
    try:
        return registry.load_model(name)
    except known_errors as error:
        raise CLIError("model", str(error).splitlines()[0]) from None


# -- the prompt's escapes ---------------------------------------------------------------------------------

PROMPT_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def prompt_escapes(text: str) -> str:
    """``text`` with ``\\n`` -> newline, ``\\t`` -> tab and ``\\\\`` -> one backslash; every other
    backslash (``\\[MASK``, ``\\x``, a trailing one) is kept, so shells need no $'...' quoting for
    multi-line prompts."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in PROMPT_ESCAPES:
            out.append(PROMPT_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


# -- argument parsing --------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see --help)\n")


def _convert(kind: str, optional: bool, raw: str) -> Any:
    """CLI text -> field value. Unparsable text is passed on unchanged, so SamplerConfig's
    ConfigError reports it with the field's allowed range (one message format for every error)."""
    if optional and raw.strip().lower() == "none":
        return None
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        return raw
    return raw


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dlm_core", description="Diffusion Canvas engine command line.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    generate = commands.add_parser("generate", help="denoise a prompt, show the canvas, write a trajectory")
    generate.add_argument(
        "--prompt",
        required=True,
        help=r"prompt text; [MASK] / [MASK:n] mark slots to fill; \n is a newline, \t a tab, \\ a backslash "
        r"(e.g. --prompt 'HAMLET:\nTo be')",
    )
    generate.add_argument(
        "--raw-prompt", action="store_true", help=r"take --prompt exactly as typed (no \n, \t, \\ escapes)"
    )
    generate.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    generate.add_argument("--out", help="write the trajectory JSON here")
    _add_display_options(generate)
    for field in fields(SamplerConfig):  # one flag per setting, its help from the settings table
        option, spec = "--" + field.name.replace("_", "-"), SETTINGS[field.name]
        if spec.kind == "bool":
            generate.add_argument(option, dest=field.name, action="store_true", default=argparse.SUPPRESS, help=spec.help)
            continue
        generate.add_argument(
            option,
            dest=field.name,
            default=argparse.SUPPRESS,
            metavar="STR" if spec.kind == "choice" else spec.kind.upper(),
            help=f"{spec.help} (default {field.default})",
        )

    replay = commands.add_parser("replay", help="print the final text and stats of a trajectory JSON file")
    replay.add_argument("path", help="trajectory JSON written by generate --out")
    replay.add_argument("--animate", action="store_true", help="redraw every step of the run first")
    replay.add_argument("--delay", type=float, default=0.05, help="seconds between animated frames")
    _add_display_options(replay)
    return parser


def _add_display_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--display", choices=("auto", "canvas", "progress", "none"), default="auto")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")


def config_from_args(args: argparse.Namespace) -> SamplerConfig:
    values = {}
    for field in fields(SamplerConfig):
        if not hasattr(args, field.name):
            continue
        raw = getattr(args, field.name)
        if isinstance(raw, str):
            spec = SETTINGS[field.name]
            raw = _convert(spec.kind, spec.optional, raw)
        values[field.name] = raw
    return SamplerConfig.from_dict(values)


# -- display -----------------------------------------------------------------------------------------


def _visible(text: str) -> str:
    """Token text safe for a terminal: C0 controls (ESC included) and DEL become their Control
    Pictures glyphs, C1 controls U+FFFD, so model output can never inject escape sequences."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\n" or (0x20 <= code < 0x7F) or code > 0x9F:
            out.append(ch)
        elif code < 0x20:
            out.append(chr(0x2400 + code))
        elif code == 0x7F:
            out.append("\u2421")
        else:
            out.append("\ufffd")
    return "".join(out)


class CanvasView:
    """Renders states to a stream: animated canvas on a terminal, plain frames or progress lines otherwise."""

    def __init__(self, token_text: Callable[[int], str], stream: TextIO, display: str, color: str, total: str):
        self.token_text = token_text
        self.stream = stream
        tty = stream.isatty()
        self.color = color == "always" or (color == "auto" and tty and "NO_COLOR" not in os.environ)
        self.mode = {"auto": "canvas" if tty else "progress"}.get(display, display)
        self.animate = self.mode == "canvas" and tty
        self.total = total
        self.lines_drawn = 0
        self.steps_hint = 1

    def render(self, state: StepState) -> str:
        committed, remasked = set(state.committed.tolist()), set(state.remasked.tolist())
        runs: list[tuple[str, list[str]]] = []  # (style, texts): one escape sequence per run, not per token
        for position, (token, masked) in enumerate(zip(state.tokens.tolist(), state.masked.tolist(), strict=True)):
            if masked:
                style, text = (RED if position in remasked else DIM), MASK_GLYPH
            else:
                text = _visible(self.token_text(token))
                style = GREEN if position in committed else DIM if position >= state.answer_end else ""
            if runs and runs[-1][0] == style:
                runs[-1][1].append(text)
            else:
                runs.append((style, [text]))
        return "".join(self._style("".join(texts), style) for style, texts in runs)

    def _style(self, text: str, style: str) -> str:
        return f"{style}{text}{RESET}" if self.color and style and text else text

    def progress_line(self, state: StepState) -> str:
        masked = int(state.masked.sum())
        return (
            f"step {state.step}/{self.total} | block {state.block} | nfe {state.nfe} | "
            f"+{len(state.committed)} -{len(state.remasked)} | masked {masked} | {state.elapsed:.2f} s"
        )

    def show(self, state: StepState, steps_hint: int) -> None:
        if self.mode == "none":
            return
        if self.mode == "progress":
            # At most ~20 lines for long runs, plus the first and the final one.
            every = max(1, steps_hint // 20)
            if state.step % every == 0 or state.done:
                print(self.progress_line(state), file=self.stream, flush=True)
            return
        frame = self.render(state) + "\n" + self._style(self.progress_line(state), BOLD)
        if not self.animate:
            print(f"--- step {state.step} ---\n{frame}", file=self.stream, flush=True)
            return
        if self.lines_drawn:
            self.stream.write(f"\x1b[{self.lines_drawn}F\x1b[J")  # back to the frame's top, clear below
        self.stream.write(frame + "\n")
        self.stream.flush()
        self.lines_drawn = _screen_lines(frame)


def _screen_lines(frame: str) -> int:
    columns = max(20, shutil.get_terminal_size((80, 24)).columns)
    plain = frame
    for code in (GREEN, RED, DIM, BOLD, RESET):
        plain = plain.replace(code, "")
    return sum(max(1, -(-len(line) // columns)) for line in plain.split("\n"))


def print_summary(trajectory: Trajectory, stream: TextIO) -> None:
    stats = trajectory.stats()
    config = trajectory.config
    print("--- final text ---", file=stream)
    print(_visible(trajectory.final_text), file=stream)
    print("--- stats ---", file=stream)
    uniform = getattr(trajectory, "noise", "mask") == "uniform" and config.get("noise") == "uniform"
    if uniform:  # our uniform-state sampler: no strategy, an entropy bound and a temperature schedule
        final = config.get("final_temperature")
        how = (f"noise uniform | entropy bound {config['gamma']:g} | temperature {config['temperature']:g}"
               f" -> {config['temperature'] if final is None else final:g}")
    else:
        how = (f"strategy {config['strategy']} | remask {config['remask']} | cfg {config['cfg_scale']:g} | "
               f"temperature {config['temperature']:g}")
    print(f"model {trajectory.model} | {how}", file=stream)
    print(
        f"steps {stats['steps']} | NFE {stats['nfe']} | generated {stats['generated']} | "
        f"tokens/forward {stats['tokens_per_forward']:.2f} | wall {stats['elapsed']:.3f} s | "
        f"{'renoised' if uniform else 're-masked'} {stats['remasked']}" + ("" if stats["complete"] else " | INCOMPLETE"),
        file=stream,
    )


# -- commands ----------------------------------------------------------------------------------------


def cmd_generate(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    prompt = args.prompt if args.raw_prompt else prompt_escapes(args.prompt)
    model = load_model(args.model)
    states = denoise(model, prompt, config)  # validates before any forward pass
    builder = TrajectoryBuilder(model, prompt, config)
    view = CanvasView(model.token_text, sys.stdout, args.display, args.color, "?")
    for state in states:
        state = builder.add(state)
        if state.step == 0:
            slots = int((~state.fixed).sum())
            budget = config.steps if config.steps is not None else slots
            view.total = str(budget) if STRATEGIES[config.strategy].exact_steps else f"<={budget}"
            view.steps_hint = budget
        view.show(state, view.steps_hint)
    trajectory = builder.build()
    print_summary(trajectory, sys.stdout)
    if args.out:
        try:
            trajectory.save(args.out)
        except OSError as error:
            print(f"error: --out: cannot write {args.out!r}: {error.strerror or error}", file=sys.stderr)
            return 1
        print(f"trajectory written to {args.out}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    trajectory = Trajectory.load(args.path)
    if args.animate:
        def token_text(token_id: int) -> str:  # replay needs no tokenizer: the file carries its token texts
            return trajectory.vocab[int(token_id)]

        view = CanvasView(token_text, sys.stdout, args.display, args.color, str(trajectory.num_steps))
        if view.mode == "progress" and args.display == "auto":
            view.mode = "none"
        for state in trajectory.states:
            view.show(state, trajectory.num_steps)
            if view.animate and args.delay > 0:
                time.sleep(min(args.delay, 2.0))
    print_summary(trajectory, sys.stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = {"generate": cmd_generate, "replay": cmd_replay}[args.command]
    try:
        return handler(args)
    except (ConfigError, PromptError, CLIError) as error:
        option = "--" + error.field.replace("_", "-")
        print(f"error: {option}: {error.message}", file=sys.stderr)
        return 2
    except TrajectoryError as error:
        print(f"error: trajectory file {args.path!r}: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. replay of a directory or of a file that cannot be read
        name = error.filename or getattr(args, "path", None) or "a file"
        print(f"error: cannot read {str(name)!r}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
