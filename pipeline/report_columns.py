"""The columns of the run's report: the printed table (pipeline/report.py) and the page
(pipeline/report_page.py) show the same figures."""

# Each row's task figures (models/metrics.py task_metrics) and their short headers
METRIC_COLUMNS = ("auc", "gauc", "ndcg@10", "mrr@4", "precision@4", "log_loss", "calibration", "calibration@1",
                  "positives@1", "truth_calibration@1", "oracle_auc", "efficiency", "relevance_efficiency")
METRIC_HEADERS = {"relevance_efficiency": "rel_eff", "calibration@1": "cal@pos1", "positives@1": "events@pos1",
                  "truth_calibration@1": "tcal@pos1"}

# The ranking of the eval requests judged on the simulator's truth (report.ranking_quality)
RANKING_COLUMNS = ("purchase_ndcg@10", "click_ndcg@10", "click_expected_auc", "click_efficiency")

# The Evaluator's own figures (TFMA; pipeline/pipeline.py's eval_config)
EVALUATOR_COLUMNS = ("auc", "gauc", "auc_precision_recall", "binary_crossentropy", "calibration", "ndcg@4", "ndcg@10",
                     "min_label_position")
