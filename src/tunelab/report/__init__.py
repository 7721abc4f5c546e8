"""Run report: one self-contained report.html (figures inlined as SVG, every bar and CI named by its
gid so that a test can check it against the JSON) and a report.md (figures as PNG files).

    from tunelab.report import write_report
    write_report("runs/sst2-lora")   # -> [runs/sst2-lora/report.html, runs/sst2-lora/report.md]

Reads what the run folder holds (each part is optional): summary.json (cost), metrics.jsonl
(loss curves), eval/results.json (metrics with CIs), retention/forgetting.json or
forgetting/forgetting.json (forgetting), and the per-example files behind them (predictions
before vs after).
"""

from tunelab.report.build import collect, write_report

__all__ = ["collect", "write_report"]
