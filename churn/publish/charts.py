"""The analyst report's charts: matplotlib (Agg, headless) figures returned as base64 PNG."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn.model import explain

THEME_COLOURS = {"drift": "#d1495b", "service": "#8e44ad", "price": "#edae49", "variety": "#00798c",
                 "profile": "#7f8c8d"}
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


def kpi_panel(kpis: pd.DataFrame) -> str:
    """Stages (stacked bars), churn / retention / repurchase / coupon rates, and ARPU per month."""
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
    axes[2].set_title("ARPU: net spend per buyer")
    axes[2].set_ylim(0, None)
    step = max(1, len(x) // 8)
    for ax in axes:
        ax.set_xticks(x[::step], months[::step], rotation=45, ha="right", fontsize=8)
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
        pred, obs, _ = zip(*c["calibration"]) if c["calibration"] else ((), (), ())
        axes[3].plot(pred, obs, marker="o", ms=3, color=colour, label=name)
    for ax in (axes[0], axes[1], axes[3]):
        ax.plot([0, 1], [0, 1], ls="--", color="#999", lw=1)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    axes[2].axhline(1, ls="--", color="#999", lw=1)
    labels = [("ROC", "false positive rate", "true positive rate"),
              ("Cumulative gains", "share of customers contacted (by score)", "share of churners reached"),
              ("Lift per decile", "score decile (1 = highest)", "churn rate / average"),
              ("Calibration", "predicted churn probability", "observed churn rate")]
    for ax, (title, xl, yl) in zip(axes, labels):
        ax.set_title(title), ax.set_xlabel(xl), ax.set_ylabel(yl)
        ax.legend(fontsize=8)
    axes[2].set_xticks(range(1, 11))
    fig.tight_layout()
    return _png(fig)


def global_bar(drivers: pd.DataFrame) -> str:
    """Mean |SHAP| per feature, coloured by theme, largest on top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(drivers) + 1.2))
    d = drivers.iloc[::-1]
    ax.barh(d["feature"], d["mean_abs_shap"], color=[THEME_COLOURS[t] for t in d["theme"]])
    ax.set_xlabel("mean |SHAP| (log-odds)")
    ax.set_title("Global drivers")
    handles = [plt.matplotlib.patches.Patch(color=c, label=explain.THEME_LABELS[t]) for t, c in THEME_COLOURS.items()
               if t in set(drivers["theme"])]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def beeswarm(contributions: pd.DataFrame, features: pd.DataFrame, max_points: int = 3000,
             random_state: int = 0) -> str:
    """One row per feature: each dot a customer's contribution, coloured by the feature's value rank."""
    plt = _pyplot()
    rng = np.random.default_rng(random_state)
    take = np.sort(rng.choice(len(contributions), min(max_points, len(contributions)), replace=False))
    fig, ax = plt.subplots(figsize=(7, 0.32 * contributions.shape[1] + 1.2))
    n = contributions.shape[1]
    for row, feat in enumerate(contributions.columns):
        x = contributions[feat].to_numpy()[take]
        value = features[feat].iloc[take].rank(pct=True).to_numpy()
        # Spread dots vertically by local density, as a beeswarm does.
        bins = np.digitize(x, np.linspace(x.min(), x.max() + 1e-12, 60))
        counts = pd.Series(bins).map(pd.Series(bins).value_counts()).to_numpy()
        y = n - 1 - row + (rng.random(len(x)) - 0.5) * 0.8 * np.minimum(counts / max(counts.max(), 1), 1)
        ax.scatter(x, y, c=np.nan_to_num(value, nan=0.5), cmap="coolwarm", s=4, alpha=0.7, vmin=0, vmax=1,
                   linewidths=0)
    ax.set_yticks(range(n), contributions.columns[::-1])
    ax.axvline(0, color="#999", lw=1)
    ax.set_xlabel("SHAP contribution (log-odds; right raises churn risk)")
    ax.set_title("Beeswarm (colour: feature value, blue low, red high)")
    fig.tight_layout()
    return _png(fig)


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
    ax.set_title(f"Mean contribution per reason family, by {name.lower()}")
    ax.spines[:].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def dependence(contributions: pd.DataFrame, features: pd.DataFrame, max_points: int = 4000) -> str:
    """Feature value against its contribution for each given feature (the central 98% of values)."""
    plt = _pyplot()
    n = contributions.shape[1]
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    take = np.linspace(0, len(features) - 1, min(max_points, len(features))).astype(int)
    for ax, feat in zip(axes[0], contributions.columns):
        x, y = features[feat].to_numpy()[take], contributions[feat].to_numpy()[take]
        lo, hi = np.nanquantile(x, [0.01, 0.99]) if np.isfinite(x).any() else (0, 1)
        keep = (x >= lo) & (x <= hi)
        ax.scatter(x[keep], y[keep], s=5, alpha=0.5, color="#1f5fa8", linewidths=0)
        ax.axhline(0, color="#999", lw=1)
        ax.set_xlabel(feat)
        ax.set_ylabel("SHAP (log-odds)")
        ax.set_title(feat)
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


def psi_bars(drift: pd.Series, threshold: float) -> str:
    """PSI per feature, bars above the threshold in red."""
    plt = _pyplot()
    d = drift.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(d) + 1.2))
    ax.barh(d.index, d.to_numpy(), color=np.where(d.to_numpy() > threshold, "#d1495b", "#1f5fa8"))
    ax.axvline(threshold, ls="--", color="#d1495b", lw=1)
    ax.set_xlabel(f"PSI against the training data (flag above {threshold})")
    ax.set_title("Feature drift")
    fig.tight_layout()
    return _png(fig)
