"""The analyst report's charts: matplotlib (Agg, headless) figures returned as base64 PNG.

The driver charts are shap's own plots (bar, beeswarm, scatter, waterfall) of a `shap.Explanation`
built from XGBoost's exact contributions: the pictures analysts already know how to read.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


MODEL_COLOURS = ["#1f5fa8", "#e07b39", "#4a9c5d", "#9b59b6", "#7f8c8d"]
DPI = 110


def _pyplot():
    """pyplot on the Agg backend, its cache inside the project (never the user's home)."""
    home = Path(os.environ.get("CHURN_HOME", Path.cwd())).resolve()
    os.environ.setdefault("MPLCONFIGDIR", str(home / ".mplconfig"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "churn", "figure.dpi": DPI})
    return plt


def _png(fig: Any) -> str:
    """The figure as base64 PNG, without metadata (the same figure gives the same bytes)."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def kpi_panel(kpis: pd.DataFrame, partial: np.ndarray | None = None, currency: str = "") -> str:
    """Stages (stacked bars), churn / retention / repurchase / coupon rates, and ARPU per month.

    `partial` marks the months whose population the data cannot fully know yet (the first
    lookback after the data starts): they are shaded grey.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    months = kpis.index.strftime("%Y-%m")
    x = np.arange(len(kpis))
    bottom = np.zeros(len(kpis))
    for stage, colour in zip(("new", "active", "dormant", "lapsed"), ("#4a9c5d", "#1f5fa8", "#edae49", "#d1495b")):
        axes[0].bar(x, kpis[stage], bottom=bottom, color=colour, label=stage)
        bottom += kpis[stage].to_numpy()
    axes[0].set_title("Customers by lifecycle stage (month end)")
    axes[0].legend(fontsize=8, ncols=4, loc="upper left", bbox_to_anchor=(0, -0.22))
    for col, label in (("churn_rate", "churn rate"), ("retention_rate", "retention"),
                       ("repurchase_rate", "repurchase"), ("coupon_redemption_rate", "coupon redemption")):
        if col in kpis and kpis[col].notna().any():
            axes[1].plot(x, kpis[col], marker="o", ms=3, label=label)
    axes[1].set_ylim(0, 1)
    axes[1].yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    axes[1].set_title("Rates per month")
    axes[1].legend(fontsize=8, ncols=2, loc="upper left", bbox_to_anchor=(0, -0.22))
    axes[2].plot(x, kpis["arpu"], marker="o", ms=3, color="#1d2733")
    axes[2].set_title(f"ARPU: net spend per buyer{f' ({currency})' if currency else ''}")
    axes[2].set_ylim(0, None)
    step = max(1, len(x) // 8)
    for ax in axes:
        ax.set_xticks(x[::step], months[::step], rotation=45, ha="right", fontsize=8)
        if partial is not None and partial.any():
            last = int(np.flatnonzero(partial).max())
            ax.axvspan(-0.5, last + 0.5, color="#999", alpha=0.15, lw=0)
    if partial is not None and partial.any():
        axes[0].set_title("Customers by lifecycle stage (month end; grey: data start)")
    fig.tight_layout()
    return _png(fig)


def quality_panel(found: dict[str, dict[str, Any]]) -> str:
    """ROC, cumulative gains, lift per decile and reliability curves, one line per model."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.3))
    width = 0.8 / max(len(found), 1)
    for i, (name, c) in enumerate(found.items()):
        colour = MODEL_COLOURS[i % len(MODEL_COLOURS)]
        axes[0].plot(*c["roc"], color=colour, label=name)
        axes[1].plot(*c["gains"], color=colour, label=name)
        axes[2].bar(np.arange(1, len(c["lift"]) + 1) + (i - (len(found) - 1) / 2) * width, c["lift"], width,
                    color=colour, label=name)
        pred, obs, counts = zip(*c["calibration"]) if c["calibration"] else ((), (), ())
        axes[3].plot(pred, obs, marker="o", ms=3, color=colour, label=name)
        if i == 0:  # customers per bin, for our model: a point on 12 customers is not a point on 1,365
            for x, y, n in zip(pred, obs, counts):
                axes[3].annotate(f"{n:,}", (x, y), textcoords="offset points", xytext=(4, -9), fontsize=7,
                                 color=colour)
    for ax in (axes[0], axes[1], axes[3]):
        ax.plot([0, 1], [0, 1], ls="--", color="#999", lw=1)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    axes[2].axhline(1, ls="--", color="#999", lw=1)
    labels = [("ROC", "false positive rate", "true positive rate"),
              ("Cumulative gains", "share of customers contacted (by score)", "share of churners reached"),
              ("Lift per decile", "score decile (1 = highest)", "churn rate / average"),
              ("Calibration (numbers: customers per bin)", "predicted churn probability", "observed churn rate")]
    for ax, (title, xl, yl) in zip(axes, labels):
        ax.set_title(title), ax.set_xlabel(xl), ax.set_ylabel(yl)
        ax.legend(fontsize=8)
    axes[2].set_xticks(range(1, 11))
    fig.tight_layout()
    return _png(fig)


def explanation(contributions: pd.DataFrame, features: pd.DataFrame, base_values: np.ndarray | float,
                words: dict[str, str] | None = None):
    """A `shap.Explanation` of XGBoost's exact contributions (log-odds), features named in words."""
    import shap

    names = [(words or {}).get(c, c) for c in contributions.columns]
    base = np.broadcast_to(np.asarray(base_values, dtype=float), (len(contributions),)).copy()
    return shap.Explanation(values=contributions.to_numpy(dtype=float), base_values=base,
                            data=features[list(contributions.columns)].to_numpy(dtype=float), feature_names=names)


def global_bar(explained, max_display: int = 15) -> str:
    """shap's bar plot: mean |SHAP| per feature, largest on top."""
    import shap

    plt = _pyplot()
    shap.plots.bar(explained, max_display=max_display, show=False)
    fig = plt.gcf()
    fig.axes[0].set_xlabel("mean |SHAP value| (log-odds of churning)")
    fig.axes[0].set_title("Global drivers")
    return _png(fig)


def beeswarm(explained, max_display: int = 15, max_points: int = 3000, random_state: int = 0) -> str:
    """shap's beeswarm: one dot per customer and feature, right raises the risk, colour = feature value."""
    import shap

    plt = _pyplot()
    if len(explained.values) > max_points:
        rng = np.random.default_rng(random_state)
        explained = explained[np.sort(rng.choice(len(explained.values), max_points, replace=False))]
    shap.plots.beeswarm(explained, max_display=max_display, show=False)
    fig = plt.gcf()
    fig.axes[0].set_xlabel("SHAP value (log-odds; right raises churn risk)")
    fig.axes[0].set_title("How each feature moves the risk")
    return _png(fig)


def waterfall(explained_one, max_display: int = 10) -> str:
    """shap's waterfall for one customer: from the average log-odds to theirs, feature by feature."""
    import shap

    plt = _pyplot()
    shap.plots.waterfall(explained_one, max_display=max_display, show=False)
    return _png(plt.gcf())


def segment_heatmap(by_family: pd.DataFrame, name: str) -> str:
    """Families (columns) by segments (rows): mean contribution, diverging colours, numbers in cells."""
    plt = _pyplot()
    values = by_family.drop(columns="n")
    order = values.abs().max().sort_values(ascending=False).index[:12]
    values = values[order]
    fig, ax = plt.subplots(figsize=(1.0 * len(order) + 3, 0.5 * len(values) + 1.6))
    limit = max(float(np.nanmax(np.abs(values.to_numpy()))), 1e-6)
    ax.imshow(values.to_numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(order)), [f.removeprefix("event_") for f in order], rotation=35, ha="right")
    ax.set_yticks(range(len(values)), [f"{s} (n={int(n):,})" for s, n in zip(values.index, by_family["n"])])
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values.iat[i, j]
            ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(v) > 0.6 * limit else "black")
    ax.set_title(f"Mean SHAP value per feature family, by {name.lower()}")
    ax.spines[:].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def dependence(explained, columns: list[str], max_points: int = 4000) -> str:
    """shap's scatter (dependence) plot of each given feature: its value against its contribution."""
    import shap

    plt = _pyplot()
    n = len(columns)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.8), squeeze=False)
    take = np.linspace(0, len(explained.values) - 1, min(max_points, len(explained.values))).astype(int)
    for ax, name in zip(axes[0], columns):
        shap.plots.scatter(explained[take, name], ax=ax, show=False, color="#1f5fa8", dot_size=6, alpha=0.5)
        ax.set_ylabel("SHAP value (log-odds)")
    fig.tight_layout()
    return _png(fig)


def outcome_rates(summary: pd.DataFrame, min_per_arm: int) -> str:
    """Win-back rate of the treated and of the held out per action (all risk bands), with 95% intervals;
    actions with too few customers in an arm are drawn hatched."""
    plt = _pyplot()
    rows = summary[summary["risk_band"] == "all"].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    x = np.arange(len(rows))
    for k, (arm, colour) in enumerate((("treated", "#1f5fa8"), ("holdout", "#999999"))):
        n = rows[f"n_{arm}"].to_numpy(dtype=float)
        rate = rows[f"rate_{arm}"].to_numpy(dtype=float)
        err = 1.96 * np.sqrt(np.nan_to_num(rate * (1 - rate)) / np.maximum(n, 1))
        few = np.minimum(rows["n_treated"], rows["n_holdout"]).to_numpy() < min_per_arm
        bars = ax.bar(x + (k - 0.5) * 0.38, np.nan_to_num(rate), 0.36, yerr=err, color=colour, capsize=3)
        for bar, f, count in zip(bars, few, n):
            bar.set_hatch("//" if f else "")
            ax.annotate(f"n={int(count):,}", (bar.get_x() + bar.get_width() / 2, 0), xytext=(0, 3),
                        textcoords="offset points", ha="center", fontsize=7, color="white" if count else "#555")
    ax.set_xticks(x, [str(a).replace("_", " ") + (" (too few)" if f else "") for a, f in
                      zip(rows["action"], np.minimum(rows["n_treated"], rows["n_holdout"]) < min_per_arm)])
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    ax.set_ylabel("came back within the horizon")
    ax.set_title("Win-back rate, treated against held out (95% intervals)")
    patches = plt.matplotlib.patches
    ax.legend(handles=[patches.Patch(color="#1f5fa8", label="treated"),
                       patches.Patch(color="#999999", label="held out (not contacted)"),
                       patches.Patch(facecolor="white", edgecolor="#555", hatch="//", label="too few to tell")],
              fontsize=8)
    fig.tight_layout()
    return _png(fig)


def realised_panel(realised: pd.DataFrame, backtest_ci: list[float] | None) -> str:
    """Left: realised ROC-AUC per run with its interval, the backtest's interval shaded. Right: realised
    calibration of the latest measured run, customers per bin written beside each point."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    ax = axes[0]
    x = np.arange(len(realised))
    auc = realised["roc_auc"].to_numpy(dtype=float)
    err = np.vstack([auc - realised["roc_auc_low"].to_numpy(dtype=float),
                     realised["roc_auc_high"].to_numpy(dtype=float) - auc])
    colours = np.where(realised["alert"] != "", "#d1495b", np.where(realised["in_sample"], "#999999", "#1f5fa8"))
    if backtest_ci:
        ax.axhspan(backtest_ci[0], backtest_ci[1], color="#4a9c5d", alpha=0.2, lw=0, label="backtest interval")
    ax.errorbar(x, auc, yerr=np.nan_to_num(err), fmt="none", ecolor="#555", capsize=3)
    ax.scatter(x, auc, c=colours, zorder=3)
    ax.set_xticks(x, realised["run_date"].dt.strftime("%Y-%m-%d"), rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("realised ROC-AUC")
    ax.set_title("Ranking, run by run (grey: in sample, red: alert)")
    ax.legend(fontsize=8, loc="lower left")
    latest = realised.iloc[-1]
    ax = axes[1]
    bins = latest["calibration"]
    pred = [b["mean_predicted"] for b in bins]
    obs = [b["observed"] for b in bins]
    ax.plot([0, 1], [0, 1], ls="--", color="#999", lw=1)
    ax.plot(pred, obs, marker="o", ms=4, color="#1f5fa8")
    for b in bins:
        ax.annotate(f"{b['n']:,}", (b["mean_predicted"], b["observed"]), textcoords="offset points", xytext=(4, -9),
                    fontsize=7)
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.set_xlabel("predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_title(f"Calibration of the run {latest['run_date'].date()} (numbers: customers per bin)")
    fig.tight_layout()
    return _png(fig)


def score_hist(scores: dict[str, np.ndarray]) -> str:
    """Distributions of p_churn (density), one outline per source."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bins = np.linspace(0, 1, 41)
    for i, (name, p) in enumerate(scores.items()):
        ax.hist(p, bins=bins, density=True, histtype="step", lw=2, color=MODEL_COLOURS[i], label=f"{name} (n={len(p):,})")
    ax.set_xlabel("p_churn")
    ax.set_ylabel("density")
    ax.set_title("Score distribution")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def psi_bars(drift: pd.Series, threshold: float, words: dict[str, str] | None = None) -> str:
    """PSI per feature (named in words), bars above the threshold in red."""
    plt = _pyplot()
    d = drift.iloc[::-1].rename(index=lambda f: (words or {}).get(f, f))
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(d) + 1.2))
    ax.barh(d.index, d.to_numpy(), color=np.where(d.to_numpy() > threshold, "#d1495b", "#1f5fa8"))
    ax.axvline(threshold, ls="--", color="#d1495b", lw=1)
    ax.set_xlabel(f"PSI against the training data (flag above {threshold})")
    ax.set_title("Feature drift")
    fig.tight_layout()
    return _png(fig)
