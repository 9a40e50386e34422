"""The churn model, its baselines, out-of-time backtests, training, the registry and SHAP reasons."""
