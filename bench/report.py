"""Turning a run's results into the printed table, the JSON file and the bar chart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness import STACKS_BY_NAME, WORKLOADS_BY_NAME

if TYPE_CHECKING:
    from pathlib import Path


def format_value(value: float, unit: str) -> str:
    """A figure with a sensible number of digits for its size."""
    if value >= 1000:
        text = f"{value:,.0f}"
    elif value >= 100:
        text = f"{value:.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}"


def table(results: list[dict[str, Any]], header: str) -> str:
    """The results as a plain-text table, one block per workload."""
    rows: list[tuple[str, ...]] = [("stack", "median", "p99", "ratio", "runs / notes")]
    blocks: list[int] = []  # the row index where each workload's block starts
    for workload_name in dict.fromkeys(result["workload"] for result in results):
        workload = WORKLOADS_BY_NAME[workload_name]
        better = "higher" if workload.higher_is_better else "lower"
        blocks.append(len(rows))
        baseline = STACKS_BY_NAME[workload.baseline].label
        rows.append(
            (f"{workload.title} ({workload.unit}, {better} is better; ratio to {baseline})",)
        )
        for result in results:
            if result["workload"] != workload_name:
                continue
            label = "  " + STACKS_BY_NAME[result["stack"]].label
            if result["figure"] is None:
                rows.append((label, "-", "-", "-", f"{result['status']}: {result['reason']}"))
                continue
            p99 = result.get("p99")
            ratio = result.get("ratio")
            runs = len(result["runs"])
            notes = f"{runs} run{'s' if runs != 1 else ''}"
            if result.get("send_receive") is not None:
                echo = format_value(result["send_receive"], workload.unit)
                echo_p99 = format_value(result["send_receive_p99"], workload.unit)
                notes += f"; its send-then-receive: {echo} (p99 {echo_p99})"
            for extra in (result["note"], result["reason"]):
                if extra:
                    notes += f"; {extra}"
            rows.append(
                (
                    label,
                    format_value(result["figure"], workload.unit),
                    "-" if p99 is None else format_value(p99, workload.unit),
                    "n/a" if ratio is None else f"{ratio:.2f}x",
                    notes,
                )
            )
    widths = [max(len(row[i]) for row in rows if len(row) > i and len(row) > 1) for i in range(5)]
    lines = [header, ""]
    for index, row in enumerate(rows):
        if len(row) == 1:
            lines.append(("" if index == blocks[0] else "\n") + row[0])
            continue
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:4], widths[1:4], strict=True)]
        cells.append(row[4])
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    lines.append(
        "ratio = the stack's median / the median of the stack named in the block's title, for "
        "the same workload in this run"
    )
    return "\n".join(lines)


# The request workloads' targets: (what, workload, the stack compared with, limit, at least?).
# A limit is met when alvaro's figure divided by the other's is at most (or at least) the limit.
# "send-then-receive" compares a request with the echo timed after it on the same connection.
_TARGETS = (
    ("request latency / its send-then-receive round trip", "request", "", 1.1, False),
    ("request latency / the roundtrip workload's figure", "request", "roundtrip", 1.1, False),
    ("100 in flight: throughput / grpcio's", "request-100", "grpcio", 3.0, True),
    ("100 in flight: throughput / pyzmq DEALER/ROUTER's", "request-100", "pyzmq-dealer", 1.0, True),
)


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request workloads' targets, for each alvaro stack whose figures this run has."""
    figure = {(r["workload"], r["stack"]): r["figure"] for r in results if r["figure"] is not None}
    found = []
    for what, workload, other, limit, at_least in _TARGETS:
        for result in results:
            stack = STACKS_BY_NAME[result["stack"]]
            if result["workload"] != workload or not stack.alvaro or result["figure"] is None:
                continue
            if other == "":
                against = result.get("send_receive")
            elif other == "roundtrip":
                against = figure.get(("roundtrip", stack.name))
            else:
                against = figure.get((workload, other))
            if not against:
                continue
            ratio = result["figure"] / against
            found.append(
                {
                    "target": what,
                    "stack": stack.name,
                    "ratio": ratio,
                    "limit": limit,
                    "at_least": at_least,
                    "met": ratio >= limit if at_least else ratio <= limit,
                }
            )
    return found


def format_targets(found: list[dict[str, Any]]) -> str:
    """The targets as lines of text: the ratio, the limit, and whether it was met."""
    lines = ["targets of the request workloads (ratios of medians in this run)"]
    width = max(len(t["target"]) for t in found)
    label_width = max(len(STACKS_BY_NAME[t["stack"]].label) for t in found)
    for target in found:
        sign = ">=" if target["at_least"] else "<="
        lines.append(
            f"  {target['target']:<{width}}  {STACKS_BY_NAME[target['stack']].label:<{label_width}}"
            f"  {target['ratio']:5.2f}x  (target {sign} {target['limit']:g}x: "
            f"{'met' if target['met'] else 'MISSED'})"
        )
    return "\n".join(lines)


def chart(results: list[dict[str, Any]], subtitle: str, path: Path) -> None:
    """A bar chart of the medians, one panel per workload, alvaro's stacks in their own colour.

    Stacks without a figure (failed, unavailable) get an empty row that says why.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    names = list(dict.fromkeys(result["workload"] for result in results))
    if not names:
        return
    rows = [[r for r in results if r["workload"] == name] for name in names]
    figure, axes = plt.subplots(
        len(names),
        1,
        figsize=(9, 1.2 + 0.3 * sum(map(len, rows)) + 0.75 * len(names)),
        gridspec_kw={"height_ratios": [len(shown) for shown in rows]},
        squeeze=False,
        layout="constrained",
    )
    for axis, name, shown in zip(axes[:, 0], names, rows, strict=True):
        workload = WORKLOADS_BY_NAME[name]
        labels = [STACKS_BY_NAME[r["stack"]].label for r in shown]
        values = [r["figure"] or 0 for r in shown]
        colours = [
            ALVARO_COLOUR if STACKS_BY_NAME[r["stack"]].alvaro else PEER_COLOUR for r in shown
        ]
        bars = axis.barh(labels, values, color=colours, height=0.7)
        axis.invert_yaxis()
        better = "higher" if workload.higher_is_better else "lower"
        axis.set_title(f"{workload.title} ({workload.unit}, {better} is better)", fontsize=9)
        axis.tick_params(labelsize=7.5)
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        axis.set_xlim(0, max([*values, 1]) * 1.4)
        for bar, result in zip(bars, shown, strict=True):
            if result["figure"] is None:
                text, colour = f" {result['status']}: {result['reason']}", "grey"
            else:
                text, colour = " " + format_value(result["figure"], workload.unit), "black"
                if result.get("ratio") is not None:
                    text += f"  ({result['ratio']:.2f}x)"
            axis.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                text,
                va="center",
                fontsize=7,
                color=colour,
            )
    figure.legend(
        handles=[
            Patch(color=ALVARO_COLOUR, label="alvaro (this project)"),
            Patch(color=PEER_COLOUR, label="baselines and peers"),
        ],
        loc="outside upper right",
        fontsize=7.5,
        ncols=2,
        frameon=False,
    )
    figure.suptitle(
        "alvaro and its peers: medians; in brackets, the ratio to each panel's baseline "
        "(asyncio streams; grpcio for requests)\n" + subtitle,
        fontsize=9,
        x=0.02,
        ha="left",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


ALVARO_COLOUR = "#d95f02"
PEER_COLOUR = "#7570b3"
